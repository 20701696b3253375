"""What replay charges for pruned weights, pruned heads and 2:4 sparse tensor cores,
worked out by hand."""

from __future__ import annotations

import pytest

from dartsim.engine.machine import compute_time, device
from dartsim.errors import UserError
from dartsim.specs.dtypes import FP16
from dartsim.specs.hardware import load_hardware_spec
from dartsim.specs.model import ModelSpec
from dartsim.workload import Execution, Precision, StepShape, ops
from dartsim.workload.model import attention_block
from dartsim.workload.sparse_storage import WeightStorage, stored_weight


def _bytes(fmt: str, density: float) -> int:
    return sum(t.bytes for t in stored_weight("W", 4, 8, FP16, WeightStorage(fmt, density)))


def test_storage_formats_on_a_4_by_8_fp16_matrix_at_half_density() -> None:
    # 32 elements, 16 kept: values 16 * 2 B = 32 B
    assert _bytes("dense", 1.0) == 64
    assert _bytes("bitmap", 0.5) == 32 + 4  # + 32 bits of bitmap
    assert _bytes("csr", 0.5) == 32 + 16 * 2 + 5 * 4  # + uint16 column per value + int32 row pointers
    assert _bytes("2:4", 0.5) == 32 + 4  # + 2 bits per kept value
    assert _bytes("bitmap", 0.25) == 16 + 4  # 8 kept values


@pytest.mark.parametrize(
    ("fmt", "density", "message"),
    [("coo", 0.5, "one of dense"), ("dense", 0.5, "keeps every weight"), ("2:4", 0.4, "exactly half"),
     ("bitmap", 0.0, "lie in \\(0, 1\\]")],
)  # fmt: skip
def test_impossible_storage_is_refused(fmt: str, density: float, message: str) -> None:
    with pytest.raises(UserError, match=message):
        WeightStorage(fmt, density)


def test_two_four_matmul_runs_at_the_sparse_peak_only_where_listed(llama8b: ModelSpec) -> None:
    prec = Precision(weight=FP16)  # 4096 tokens through a 4096 x 14336 GEMM: compute-bound
    dense = ops.gemm("up_proj", 0, ops.Component.MLP, 4096, 4096, 14336, "x", "y", "W", prec)
    sparse = ops.gemm(
        "up_proj",
        0,
        ops.Component.MLP,
        4096,
        4096,
        14336,
        "x",
        "y",
        "W",
        prec,
        storage=WeightStorage("2:4", 0.5),
    )
    assert sparse.flops_matmul == dense.flops_matmul  # FLOPs are reported dense
    l40s = device(load_hardware_spec("l40s"))
    assert compute_time(sparse, l40s) == pytest.approx(
        compute_time(dense, l40s) * 362 / 733
    )  # L40S FP16: 362 dense, 733 2:4
    a100 = device(load_hardware_spec("a100-sxm-80gb"))  # lists no 2:4 peak: dense speed
    assert compute_time(sparse, a100) == compute_time(dense, a100)


def test_pruned_heads_shrink_every_attention_term(llama8b: ModelSpec) -> None:
    shape = StepShape.decode(1, 1000)
    full = attention_block(llama8b, shape, 0)
    half = attention_block(llama8b, shape, 0, heads=(16, 4))  # half the query and KV heads

    def weight_bytes(kernels: list, name: str) -> int:  # type: ignore[type-arg]
        return sum(t.bytes for k in kernels if k.name == name for t in k.reads if t.name.startswith("W_"))

    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert 2 * weight_bytes(half, name) == weight_bytes(full, name)
    core = {k.name: k for k in full}["attention"], {k.name: k for k in half}["attention"]
    assert core[0].flops_matmul == 2 * core[1].flops_matmul
    kv = [sum(t.bytes for t in c.reads if t.kind.value == "kv_cache") for c in core]
    assert kv[0] == 2 * kv[1]
    with pytest.raises(UserError, match="kept heads"):
        attention_block(llama8b, shape, 0, heads=(33, 8))
    tp2 = attention_block(llama8b, shape, 0, execution=Execution(tp=2), heads=(15, 4))
    # the busiest of two devices holds ceil(15 / 2) = 8 query heads
    assert weight_bytes(tp2, "q_proj") == 8 * 128 * 4096
