"""The knowledge-drift detector (Eq. 7) with its counter."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dartsim.policies.dart.params import PUBLISHED_THRESHOLD_FLOOR


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    denom = float(a.norm() * b.norm())
    return float(a @ b) / denom if denom > 0 else 0.0


@dataclass(frozen=True)
class Reference:
    """Statistics of the T reference tokens: their mean attention output and the mean and
    (population) standard deviation of the K window similarities to it."""

    mean: torch.Tensor
    mu: float
    sigma: float
    window_similarities: tuple[float, ...]


def build_reference(attention: torch.Tensor, tau: int) -> Reference:
    """From the reference tokens' last-layer attention outputs [T, d], T = K tau."""
    att = attention.double()
    tokens = att.shape[0]
    if tokens < tau or tokens % tau:
        raise ValueError(f"reference of {tokens} tokens is not a whole number of windows of {tau}")
    mean = att.mean(dim=0)
    sims = [window_similarity(att[i : i + tau], mean) for i in range(0, tokens, tau)]
    values = torch.tensor(sims, dtype=torch.float64)
    mu = float(values.mean())
    sigma = float(((values - mu) ** 2).mean().sqrt())  # the paper's 1/K form
    return Reference(mean=mean, mu=mu, sigma=sigma, window_similarities=tuple(sims))


def build_reference_published(attention: torch.Tensor, tau: int) -> Reference:
    """The published code's reference (neuronDefuser.py:754-866): consecutive windows of
    tau from the first position, the positions after the last whole window left out of the
    windows but kept in the mean, and the unbiased (K - 1) standard deviation (NaN for a
    single window, which makes the threshold NaN: such a reference never fires)."""
    att = attention.double()
    tokens = att.shape[0]
    size = tau if tokens >= tau else max(1, tokens)
    count = tokens // size
    mean = att.mean(dim=0)
    sims = [window_similarity(att[i * size : (i + 1) * size], mean) for i in range(count)]
    values = torch.tensor(sims, dtype=torch.float64)
    mu = float(values.mean())
    sigma = float(values.std()) if count > 1 else math.nan
    return Reference(mean=mean, mu=mu, sigma=sigma, window_similarities=tuple(sims))


def window_similarity(window: torch.Tensor, reference_mean: torch.Tensor) -> float:
    """a = cos(mean of the window's attention outputs, the reference mean)."""
    return _cos(window.double().mean(dim=0), reference_mean.double())


def threshold(reference: Reference, delta: float, variant: str) -> float:
    """The similarity at or below which a window counts as drift."""
    if variant == "published-code":
        # Python's max keeps a NaN first argument, as the published code's does.
        return reference.mu - max(PUBLISHED_THRESHOLD_FLOOR * reference.sigma, PUBLISHED_THRESHOLD_FLOOR)
    return reference.mu - delta * reference.sigma


def update_counter(counter: int, detected: bool) -> int:
    """c + 1 on a detection, otherwise max(0, c - 1)."""
    return counter + 1 if detected else max(0, counter - 1)


@dataclass(frozen=True)
class DriftCheck:
    """One window's check: the similarity, the threshold it was held to, and the result."""

    similarity: float
    mu: float
    sigma: float
    threshold: float
    detected: bool
    counter: int
    fired: bool


def check_window(
    window: torch.Tensor, reference: Reference, counter: int, delta: float, c0: int, variant: str
) -> DriftCheck:
    """Eq. 7 for one window of tau attention outputs, and the counter after it."""
    a = window_similarity(window, reference.mean)
    limit = threshold(reference, delta, variant)
    # The paper flags a - mu <= -delta sigma; the published code a strict cos < threshold.
    detected = a < limit if variant == "published-code" else a <= limit
    new_counter = update_counter(counter, detected)
    return DriftCheck(
        similarity=a,
        mu=reference.mu,
        sigma=reference.sigma,
        threshold=limit,
        detected=detected,
        counter=new_counter,
        fired=new_counter >= c0,
    )
