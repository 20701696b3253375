"""Quality of a policy against the dense model, teacher-forced on the shipped evaluation
text: every policy sees the same prompt (the start of a passage) and is fed the same
continuation (the passage's next tokens), so each position's next-token distribution can
be compared with the dense model's at the same position.

- perplexity: exp of the mean negative log-likelihood of the true next tokens;
- top-1 agreement: the share of positions where the policy's and the dense model's most
  likely tokens agree;
- mean KL: KL(dense || policy) in nats, averaged over positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dartsim.record.corpus import passages
from dartsim.record.model import LoadedModel

PROMPT_TOKENS = 64
CONTINUATION_TOKENS = 128


@dataclass(frozen=True)
class EvalItem:
    category: str
    topic: str
    prompt_ids: list[int]
    continuation_ids: list[int]


def eval_items(
    loaded: LoadedModel,
    per_category: int,
    prompt_tokens: int = PROMPT_TOKENS,
    continuation_tokens: int = CONTINUATION_TOKENS,
) -> list[EvalItem]:
    """The first `per_category` evaluation passages of each category that are long enough,
    split into prompt and continuation (raw text, no chat template)."""
    taken: dict[str, int] = {}
    items = []
    for p in passages("evaluation"):
        if taken.get(p.category, 0) >= per_category:
            continue
        ids = [int(i) for i in loaded.tokenizer(p.text)["input_ids"]]
        if len(ids) < prompt_tokens + continuation_tokens:
            continue
        taken[p.category] = taken.get(p.category, 0) + 1
        cut = prompt_tokens + continuation_tokens
        items.append(EvalItem(p.category, p.topic, ids[:prompt_tokens], ids[prompt_tokens:cut]))
    return items


@dataclass(frozen=True)
class Quality:
    perplexity: float
    top1_agreement: float
    mean_kl: float
    positions: int


def token_stats(dense: torch.Tensor, policy: torch.Tensor, targets: torch.Tensor) -> tuple[float, int, float]:
    """dense, policy logits [N, V]; targets [N] -> (summed NLL of the targets under the
    policy, top-1 agreements, summed KL(dense || policy))."""
    logp = torch.log_softmax(policy.double(), dim=-1)
    logq = torch.log_softmax(dense.double(), dim=-1)
    nll = float(-logp.gather(1, targets.long().unsqueeze(1)).sum())
    agree = int((dense.argmax(dim=-1) == policy.argmax(dim=-1)).sum())
    kl = float((logq.exp() * (logq - logp)).sum())
    return nll, agree, kl


def quality(dense: list[torch.Tensor], policy: list[torch.Tensor], targets: list[torch.Tensor]) -> Quality:
    """Pooled over every item's positions."""
    nll = kl = 0.0
    agree = n = 0
    for d, p, t in zip(dense, policy, targets, strict=True):
        a, b, c = token_stats(d, p, t)
        nll, agree, kl, n = nll + a, agree + b, kl + c, n + t.numel()
    if n == 0:
        raise ValueError("no position to measure")
    return Quality(math.exp(nll / n), agree / n, kl / n, n)
