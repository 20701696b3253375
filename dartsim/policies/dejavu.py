"""Deja Vu-style contextual sparsity: a different FFN mask for every token, chosen just
before the FFN runs by a small predictor of which neurons will matter.

Follows Deja Vu (Liu et al., "Deja Vu: Contextual Sparsity for Efficient LLMs at Inference
Time", ICML 2023, section 4): a low-rank predictor per layer, trained offline on
calibration text, maps the layer's input to neuron scores, and the top-k neurons run.
Deja Vu trains a two-layer MLP with a classification loss; dartsim fits a linear rank-r
predictor in closed form (reduced-rank ridge regression of |u| on the FFN input; Izenman
1975), so the fit is deterministic and needs no training loop. The oracle mode uses the
true |u| instead: the upper bound any predictor could reach.

Per token and layer the predictor costs 2 (d r + r m) FLOPs and reads its d r + r m
weights; replay charges both (workload/ops.py ffn_predictor).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from dartsim.policies._hooked import HookedPolicy
from dartsim.policies._registry import PolicySettings, register
from dartsim.policies._topk import keep_count, top_k_rows

if TYPE_CHECKING:
    import torch

    from dartsim.record.hooked import HookedRecorder
RIDGE = 1e-3
"""Ridge strength, as a fraction of the mean diagonal of X^T X (keeps the solve stable
when calibration tokens are fewer than input dimensions)."""


def fit_predictor(x: torch.Tensor, target: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit scores ~ x A B with A [d, r], B [r, m] from x [N, d] and target [N, m].

    The ridge solution W = (X^T X + lambda I)^-1 X^T Y, projected onto the top-r right
    singular vectors V_r of the fitted values X W (the best rank-r predictor of the
    fitted values): A = W V_r, B = V_r^T.
    """
    x64 = x.double()
    return fit_predictor_from_moments(x64.T @ x64, x64.T @ target.double(), rank)


def predicted_scores(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x [T, d] -> predicted neuron scores [T, m]."""
    return (x.double() @ a) @ b


def token_masks(scores: torch.Tensor, keep_fraction: float) -> torch.Tensor:
    """Bool [T, m]: each token's top round(keep * m) neurons."""
    return top_k_rows(scores, keep_count(keep_fraction, scores.shape[-1]))


def fit_predictor_from_moments(
    xtx: torch.Tensor, xty: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`fit_predictor` from accumulated moments X^T X [d, d] and X^T Y [d, m] (so the
    calibration pass never holds every token's activations). With X^T X = Q diag(l) Q^T,
    the fitted values X W have the right singular vectors of diag(sqrt(l)) Q^T W (a d x m
    matrix: cheaper than the m x m eigenproblem when d < m)."""
    import torch

    if rank < 1:
        raise ValueError(f"predictor rank must be at least 1, got {rank}")
    gram = xtx.double()
    scale = RIDGE * float(gram.diagonal().mean())
    w = torch.linalg.solve(gram + scale * torch.eye(gram.shape[0], dtype=torch.float64), xty.double())
    values, q = torch.linalg.eigh(gram)
    root = values.clamp_min(0).sqrt().unsqueeze(-1) * q.T  # [d, d]: root^T root = X^T X
    _, _, vh = torch.linalg.svd(root @ w, full_matrices=False)
    v = vh[: min(rank, vh.shape[0])].T  # [m, r]
    return w @ v, v.T.contiguous()


class DejaVu(HookedPolicy):
    name = "dejavu"
    summary = (
        "Deja Vu-style: a mask per token from a low-rank predictor fitted on calibration text "
        "(--oracle: top-k of the true activations)"
    )
    prunes = "ffn-neurons"
    per_input = True
    order = 3
    options: ClassVar[frozenset[str]] = frozenset({"sparsity", "oracle", "rank"})
    per_token = True
    needs_calibration = True

    def params(self, settings: PolicySettings) -> dict[str, Any]:
        return {
            **super().params(settings),
            "oracle": settings.oracle,
            "predictor_rank": 0 if settings.oracle else settings.rank,
        }

    def label(self, settings: PolicySettings) -> str:
        return f"{self.name}{' oracle' if settings.oracle else ''} {self.effective_sparsity(settings):.0%}"

    def prepare(self, runner: HookedRecorder, settings: PolicySettings) -> None:
        if not settings.oracle:
            stats = runner.stats
            runner.state["predictors"] = [
                fit_predictor_from_moments(stats.xtx[i], stats.xty[i], settings.rank) for i in range(runner.L)
            ]

    def token_mask(
        self, runner: HookedRecorder, settings: PolicySettings, layer: int, x: torch.Tensor, u: torch.Tensor
    ) -> torch.Tensor:
        scores = u.abs() if settings.oracle else predicted_scores(x.cpu(), *runner.state["predictors"][layer])
        return token_masks(scores.cpu(), 1.0 - settings.sparsity)


register(DejaVu())
