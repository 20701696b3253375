"""Observing and masking a Hugging Face model for DART, one forward at a time.

The recorder installs the hooks that collect what DART needs (neuron scores, layer
sensitivities, the last layer's attention outputs), and builds, applies and times masks.
When to collect, mask, check and re-trigger is a variant's timeline
(paper_timeline.py, published_timeline.py), driven by the controller (controller.py)
inside the one token loop of record/loop.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dartsim.policies.dart import rules as policy
from dartsim.policies.dart.params import PUBLISHED_ROUNDS, DartSettings
from dartsim.record.hooks import MaskableLinear, decoder_layers, wrap_ffn
from dartsim.record.loop import sync
from dartsim.record.model import LoadedModel

VOCAB_PROXY_CHUNK = 4096
"""Vocabulary rows per block when computing the published code's vocabulary proxy."""
VOCAB_PROXY_CACHE = "vocab-proxies-v1.safetensors"


@dataclass
class Accumulator:
    """What a collection gathers per layer: neuron scores, sensitivity sums, attention outputs."""

    layers: int
    width: int
    scores: torch.Tensor = field(init=False)
    sens_sum: torch.Tensor = field(init=False)
    cos_sum: torch.Tensor = field(init=False)
    ratio_sum: torch.Tensor = field(init=False)
    tokens: int = 0
    attention: list[torch.Tensor] = field(default_factory=list)
    layer_tokens: torch.Tensor = field(init=False)
    """Tokens whose sensitivity each layer saw (the published code's last layer joins a
    collection one forward earlier than the others)."""
    captured: list[dict[str, list[torch.Tensor]]] | None = None
    """With capture on: per layer, the float64 rows of u (as scored, m wide), y and the FFN
    output F of every collected token (for dart/reference.py)."""

    def __post_init__(self) -> None:
        self.scores = torch.zeros(self.layers, self.width, dtype=torch.float64)
        self.sens_sum = torch.zeros(self.layers, dtype=torch.float64)
        self.cos_sum = torch.zeros(self.layers, dtype=torch.float64)
        self.ratio_sum = torch.zeros(self.layers, dtype=torch.float64)
        self.layer_tokens = torch.zeros(self.layers, dtype=torch.float64)


class DartRecorder:
    """DART on one sequence of a loaded model: prefill, then greedy (or sampled) decoding."""

    def __init__(self, loaded: LoadedModel, settings: DartSettings, capture: bool = False) -> None:
        self.capture = capture
        """Keep every collected activation (short recordings only: tokens x layers x (m + 2d))."""
        self.captures: list[dict[str, Any]] = []
        """With capture on: per mask built, its epoch index, activations and the masks."""
        self.loaded = loaded
        self.model = loaded.model
        self.settings = settings
        params = self.params = settings.params
        self.device = next(self.model.parameters()).device.type
        spec = loaded.spec
        self.layers = spec.num_layers
        self.width = spec.intermediate_size
        self.ffn = wrap_ffn(self.model)
        self.depth = policy.depth_factor(
            self.layers, params.alpha_e, params.alpha_l, params.beta_e, params.beta_l
        )
        needs_proxy = params.ranking not in ("sum-of-squares", "magnitude")
        self.proxy_max: torch.Tensor | None = None
        self.proxy_mean: torch.Tensor | None = None
        if needs_proxy:
            self.proxy_max, self.proxy_mean = self._vocab_proxies()
        self.acc: Accumulator | None = None
        self.masks: list[torch.Tensor | None] | None = None  # float 0/1 [m] per layer (zero mode)
        self.on_last_attention: Callable[[torch.Tensor], None] | None = None
        """Called inside the last layer's attention hook, before its FFN runs (the published
        code checks drift there)."""
        self.kept_idx: list[torch.Tensor] | None = None
        self._y: dict[int, torch.Tensor] = {}
        self._attention: torch.Tensor | None = None
        self._handles: list[Any] = []
        self._install_hooks()

    # -- observation ----------------------------------------------------------------------

    def _install_hooks(self) -> None:
        layers = decoder_layers(self.model)
        for index, layer in enumerate(layers):
            self._handles.append(
                layer.post_attention_layernorm.register_forward_pre_hook(self._y_hook(index))
            )
            self._handles.append(layer.mlp.register_forward_hook(self._ffn_hook(index)))
            down: MaskableLinear = self.ffn[index][2]
            down.observer = self._u_observer(index)
        self._handles.append(layers[-1].self_attn.register_forward_hook(self._attention_hook))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        for _, _, down in self.ffn:
            down.observer = None
        self._set_kept(None)

    def _y_hook(self, index: int) -> Callable[..., None]:
        def hook(_module: Any, args: tuple[torch.Tensor, ...]) -> None:
            self._y[index] = args[0].detach()

        return hook

    def _ffn_hook(self, index: int) -> Callable[..., None]:
        def hook(_module: Any, _args: Any, output: torch.Tensor) -> None:
            acc = self.acc
            if acc is None:
                return
            y = self._y.pop(index)[0]
            f = output.detach()[0]
            acc.layer_tokens[index] += y.reshape(-1, y.shape[-1]).shape[0]
            if acc.captured is not None:
                acc.captured[index]["y"].extend(y.reshape(-1, y.shape[-1]).double().cpu().unbind(0))
                acc.captured[index]["f"].extend(f.reshape(-1, f.shape[-1]).double().cpu().unbind(0))
            if self.params.variant == "paper":
                acc.sens_sum[index] += policy.sensitivity_per_token(y, y + f).sum()
            else:
                cos, ratio = policy.published_terms(y, f)
                acc.cos_sum[index] += cos.sum()
                acc.ratio_sum[index] += ratio.sum()

        return hook

    def _u_observer(self, index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def observe(u: torch.Tensor) -> torch.Tensor:
            if self.masks is not None and self.settings.mask_apply == "zero":
                mask = self.masks[index]
                if mask is not None:
                    u = u * mask
            acc = self.acc
            if acc is not None:
                rows = u.detach().reshape(-1, u.shape[-1]).double()
                squares = policy.neuron_scores(rows)
                if squares.numel() == self.width:
                    acc.scores[index] += squares
                else:  # compact: k-wide u, scattered back to neuron indices
                    assert self.kept_idx is not None
                    acc.scores[index].index_add_(0, self.kept_idx[index].cpu(), squares.cpu())
                    wide = torch.zeros(rows.shape[0], self.width, dtype=torch.float64)
                    wide[:, self.kept_idx[index].cpu()] = rows.cpu()
                    rows = wide
                if acc.captured is not None:
                    acc.captured[index]["u"].extend(rows.cpu().unbind(0))
            return u

        return observe

    def _attention_hook(self, _module: Any, _args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        self._attention = out.detach()[0].double().cpu()
        if self.on_last_attention is not None:
            self.on_last_attention(self._attention)

    # -- masks ----------------------------------------------------------------------------

    def _vocab_proxies(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The published code's per-neuron vocabulary proxies: the max and the mean over the
        vocabulary of |E W_down| (E the input embedding): -> [L, m] each. About 35 s for
        SmolLM2 on two cores, so the bundled model's are cached beside its weights."""
        from safetensors import safe_open
        from safetensors.torch import save_file

        from dartsim.record.model import weights_digest

        folder = self.loaded.cache_folder
        cached = folder / VOCAB_PROXY_CACHE if folder is not None else None
        source = weights_digest(folder) if folder is not None else None
        if cached is not None and cached.is_file() and source is not None:
            try:
                with safe_open(str(cached), framework="pt") as handle:
                    meta = handle.metadata() or {}
                    stored = {key: handle.get_tensor(key) for key in ("max", "mean")}
            except Exception:  # a damaged derived cache is recomputed, never trusted
                meta, stored = {}, {}
            if (
                stored
                and meta.get("weights_sha256") == source
                and meta.get("content_sha256") == _tensor_digest(stored["max"], stored["mean"])
            ):
                return stored["max"], stored["mean"]
        emb = self.model.get_input_embeddings().weight.detach()
        maxes, means = [], []
        with torch.no_grad():
            for _, _, down in self.ffn:
                best = torch.zeros(self.width, dtype=emb.dtype, device=emb.device)
                total = torch.zeros(self.width, dtype=torch.float64, device=emb.device)
                for start in range(0, emb.shape[0], VOCAB_PROXY_CHUNK):
                    block = (emb[start : start + VOCAB_PROXY_CHUNK] @ down.weight).abs()
                    best = torch.maximum(best, block.amax(dim=0))
                    total += block.double().sum(dim=0)
                maxes.append(best.double().cpu())
                means.append((total / emb.shape[0]).cpu())
        proxy_max, proxy_mean = torch.stack(maxes), torch.stack(means)
        if cached is not None and source is not None:
            staging = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
            meta = {"weights_sha256": source, "content_sha256": _tensor_digest(proxy_max, proxy_mean)}
            save_file({"max": proxy_max, "mean": proxy_mean}, str(staging), metadata=meta)
            os.replace(staging, cached)
        return proxy_max, proxy_mean

    def layer_dense(self, index: int) -> None:
        """Run one layer's FFN dense from now on (the rest keep their masks)."""
        if self.masks is not None:
            self.masks[index] = None
        gate, up, down = self.ffn[index]
        for module in (gate, up, down):
            module.set_kept(None)

    def _set_kept(self, kept: list[torch.Tensor] | None) -> None:
        self.kept_idx = kept
        if kept is None:
            self.masks = None
            for gate, up, down in self.ffn:
                for module in (gate, up, down):
                    module.set_kept(None)
            return
        dtype = self.ffn[0][0].weight.dtype
        device = self.ffn[0][0].weight.device
        if self.settings.mask_apply == "zero":
            masks: list[torch.Tensor | None] = []
            for idx in kept:
                mask = torch.zeros(self.width, dtype=dtype, device=device)
                mask[idx.to(device)] = 1
                masks.append(mask)
            self.masks = masks
        else:
            self.masks = None
            for (gate, up, down), idx in zip(self.ffn, kept, strict=True):
                on_device = idx.to(device)
                gate.set_kept(on_device)
                up.set_kept(on_device)
                down.set_kept(on_device)

    def _s_bar(self, acc: Accumulator) -> torch.Tensor:
        if self.params.variant == "paper":
            return acc.sens_sum / max(acc.tokens, 1)
        seen = acc.layer_tokens.clamp_min(1)
        return policy.sensitivity_published(acc.cos_sum / seen, acc.ratio_sum / seen)

    def mask_record(self, acc: Accumulator, epoch: int, apply: bool) -> dict[str, Any]:
        """Allocate budgets, score and pick the top-k neurons of every layer, and (when
        `apply`) put the masks in force; timed. `epoch` counts the masks built before."""
        p = self.params
        sync(self.device)
        start = time.perf_counter()
        s_bar = self._s_bar(acc)
        if p.variant == "paper":
            importance = policy.importance_paper(s_bar)
            pruning = policy.allocate_paper(importance, self.depth, p.sparsity, p.p_min, p.p_max)
            counts = policy.kept_neurons(pruning, self.width)
        else:
            importance, pruning, counts = policy.published_kept_counts(
                s_bar, self.depth, p.sparsity, p.p_min, p.p_max, PUBLISHED_ROUNDS, self.width, epoch,
                p.reproduce_published_defects,
            )  # fmt: skip
        scores = policy.rank_scores(acc.scores, self.proxy_max, self.proxy_mean, p.ranking)
        masks = torch.stack([policy.top_k_mask(scores[i], counts[i]) for i in range(self.layers)])
        if apply:
            self._set_kept([torch.nonzero(row).flatten() for row in masks])
        sync(self.device)
        if acc.captured is not None:
            self.captures.append({"epoch": epoch, "activations": acc.captured, "masks": masks.clone()})
        return {
            "kept": torch.tensor(counts, dtype=torch.int32),
            "keep_ratio": torch.tensor(counts, dtype=torch.float64) / self.width,
            "s_bar": s_bar.clone(),
            "importance": importance.clone(),
            "depth": self.depth.clone(),
            "pruning": pruning.clone(),
            "mask_bool": masks,
            "build_time_s": time.perf_counter() - start,
        }

    # -- the run --------------------------------------------------------------------------

    def new_accumulator(self) -> Accumulator:
        acc = Accumulator(self.layers, self.width)
        if self.capture:
            acc.captured = [{"u": [], "y": [], "f": []} for _ in range(self.layers)]
        return acc

    def clear_masks(self) -> None:
        """Every layer dense again."""
        self._set_kept(None)

    def last_attention(self) -> torch.Tensor:
        """The last layer's attention outputs of the latest forward: [tokens, d]."""
        if self._attention is None:
            raise RuntimeError("no forward has run")
        return self._attention


def _tensor_digest(*tensors: torch.Tensor) -> str:
    """SHA-256 of the tensors' bytes: what a derived cache checks its own content against."""
    import hashlib

    digest = hashlib.sha256()
    for t in tensors:
        digest.update(t.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
