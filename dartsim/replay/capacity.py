"""Which tensor-parallel degree a model needs on a device: per-device bytes of weights
and KV cache from the workload model, against the device memory the software stack
leaves to them (its `memory.reserve_fraction` is kept for the framework), among the
degrees one node connects (`link.max_devices`: no TP 16 over one node's PCIe)."""

from __future__ import annotations

from dartsim.errors import UserError
from dartsim.specs.hardware import HardwareSpec
from dartsim.specs.model import ModelSpec
from dartsim.units import GB
from dartsim.workload import Execution, Precision, StepShape, device_spec, step_kernels
from dartsim.workload.execution import check_tensor_parallel
from dartsim.workload.kernels import TensorKind

TP_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)
"""Degrees `--tp auto` tries, smallest first."""


def memory_needed_bytes(spec: ModelSpec, precision: Precision, tp: int, kv_positions: int) -> int:
    """Per-device bytes of all weights and of the KV cache for `kv_positions` cached
    positions summed over the batch, from the workload model: a batch-1 decode step reads
    every weight once, except the embedding table (one row). The table is split by
    vocabulary like the lm_head; with tied embeddings it is the lm_head's weight and is
    not counted twice."""
    execution = Execution(tp=tp)
    kernels = step_kernels(spec, StepShape.decode(1, 2), precision=precision, execution=execution)
    embed = next(k for k in kernels if k.name == "embed_tokens")
    weights = sum(k.bytes_of_kind(TensorKind.WEIGHT) for k in kernels if k is not embed)
    if not spec.tie_word_embeddings:
        weights += embed.bytes_of_kind(TensorKind.WEIGHT) * device_spec(spec, tp).vocab_size
    kv_per_position = sum(
        t.bytes for k in kernels if k.name == "attention" for t in k.writes if t.kind is TensorKind.KV_CACHE
    )
    return weights + kv_per_position * kv_positions


def parse_tp(requested: str) -> int:
    """A --tp value other than 'auto' as a positive integer, or a one-line user error."""
    try:
        tp = int(requested)
    except ValueError:
        raise UserError(f"--tp must be a positive integer or 'auto', got {requested!r}") from None
    if tp <= 0:
        raise UserError(f"--tp must be a positive integer or 'auto', got {requested!r}")
    return tp


def usable_bytes(hw: HardwareSpec, reserve_fraction: float) -> float:
    """Device memory left to weights and KV cache once the framework keeps its share."""
    return hw.memory.capacity_bytes * (1.0 - reserve_fraction)


def choose_tp(
    spec: ModelSpec,
    hw: HardwareSpec,
    precision: Precision,
    requested: str,
    kv_positions: int,
    reserve_fraction: float = 0.0,
) -> int:
    """`--tp auto` picks the smallest degree up to `link.max_devices` whose shard fits in
    the memory the stack leaves (`reserve_fraction` kept); an explicit degree that does
    not fit is an error saying which would (an explicit degree beyond one node is the
    user's to ask for)."""
    capacity = usable_bytes(hw, reserve_fraction)
    fits = []
    for tp in TP_CANDIDATES:
        try:
            check_tensor_parallel(spec, tp)
        except UserError:
            continue
        if memory_needed_bytes(spec, precision, tp, kv_positions) <= capacity:
            fits.append(tp)
    kept = f"{capacity / GB:.1f} GB usable of {hw.memory.capacity_bytes / GB:.1f} GB"
    if requested == "auto":
        local = [tp for tp in fits if tp <= hw.link.max_devices]
        if not local:
            beyond = f"; --tp {fits[0]} would fit across nodes" if fits else ""
            raise UserError(
                f"{spec.name} does not fit {hw.name} ({kept}) at any tensor-parallel degree up to "
                f"{hw.link.max_devices}, the devices its links connect{beyond}"
            )
        return local[0]
    tp = parse_tp(requested)
    check_tensor_parallel(spec, tp)
    need = memory_needed_bytes(spec, precision, tp, kv_positions)
    if need > capacity:
        hint = f"--tp {fits[0]} would fit" if fits else "no degree up to 64 fits"
        raise UserError(
            f"{spec.name} needs {need / GB:.1f} GB per device at --tp {tp} (weights and KV cache), "
            f"{hw.name} has {kept}: {hint}"
        )
    return tp
