"""Observing and masking the FFN of Llama-family Hugging Face models, without patching
transformers: forward hooks read the tensors DART needs, and the three FFN projections are
wrapped in `MaskableLinear` modules that can run sliced (compact) weights.

Which tensors are observed (shared/reference/dart-algorithm.md, notation):
- u, the input of down_proj, for neuron scores;
- y, the input of post_attention_layernorm, and F, the FFN block's output, for Eq. 4;
- the last layer's self_attn output (after o_proj, before the residual add), for drift.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as functional
from torch import nn

"""zero: multiply u by the 0/1 mask (the reference); compact: slice the kept rows of
W_gate and W_up and columns of W_down into smaller contiguous matrices."""


class MaskableLinear(nn.Module):
    """A Linear layer that can run a compact copy keeping only some output rows (gate, up)
    or input columns (down) of its weight."""

    def __init__(self, base: nn.Linear, axis: str) -> None:
        super().__init__()
        if axis not in ("out", "in"):
            raise ValueError(f"axis must be 'out' or 'in', got {axis!r}")
        self.axis = axis
        self.weight = base.weight
        self.bias = base.bias
        self.compact_weight: torch.Tensor | None = None
        self.compact_bias: torch.Tensor | None = None
        self.observer: Callable[[torch.Tensor], torch.Tensor] | None = None

    def set_kept(self, kept: torch.Tensor | None) -> None:
        """Keep the neurons at indices `kept` (compact copies), or run dense when None."""
        if kept is None:
            self.compact_weight = self.compact_bias = None
            return
        with torch.no_grad():
            dim = 0 if self.axis == "out" else 1
            self.compact_weight = self.weight.index_select(dim, kept).contiguous()
            has_bias = self.axis == "out" and self.bias is not None
            self.compact_bias = self.bias.index_select(0, kept).contiguous() if has_bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observer is not None:
            x = self.observer(x)
        if self.compact_weight is None:
            return functional.linear(x, self.weight, self.bias)
        bias = self.compact_bias if self.axis == "out" else self.bias
        return functional.linear(x, self.compact_weight, bias)


def decoder_layers(model: Any) -> list[Any]:
    """The decoder blocks of a llama/mistral/qwen2/qwen3 causal LM."""
    try:
        return list(model.model.layers)
    except AttributeError:
        raise ValueError("model has no model.layers: not a Llama-family causal LM") from None


def wrap_ffn(model: Any) -> list[tuple[MaskableLinear, MaskableLinear, MaskableLinear]]:
    """Replace each layer's gate/up/down projections by MaskableLinear wrappers (same
    parameters, so dense outputs are unchanged); returns them per layer."""
    wrapped = []
    for layer in decoder_layers(model):
        mlp = layer.mlp
        for name in ("gate_proj", "up_proj", "down_proj"):
            if not isinstance(getattr(mlp, name), (nn.Linear, MaskableLinear)):
                raise ValueError(f"mlp.{name} is not a Linear layer")
        if not isinstance(mlp.gate_proj, MaskableLinear):
            mlp.gate_proj = MaskableLinear(mlp.gate_proj, "out")
            mlp.up_proj = MaskableLinear(mlp.up_proj, "out")
            mlp.down_proj = MaskableLinear(mlp.down_proj, "in")
        wrapped.append((mlp.gate_proj, mlp.up_proj, mlp.down_proj))
    return wrapped
