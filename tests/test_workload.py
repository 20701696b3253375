"""The workload cost model's accounting rules, checked from first principles."""

from __future__ import annotations

import pytest

from dartsim.errors import UserError
from dartsim.specs.dtypes import FP8, FP16, INT4, INT8
from dartsim.specs.model import ModelSpec, load_model_spec
from dartsim.workload import (
    Component,
    KernelFusion,
    Precision,
    StepShape,
    TensorKind,
    kept_count,
    layer_kernels,
    step_kernels,
    totals_by_component,
)
from dartsim.workload.summary import total


def test_a_decode_gemm_moves_its_weight_input_and_output_by_hand(llama8b: ModelSpec) -> None:
    """o_proj of Llama-3.1-8B at batch 8, FP8 weights and FP16 activations, counted by hand:
    it reads x [8, 4096] (2 B each) and W_o [4096, 4096] (1 B each) and writes [8, 4096]."""
    o_proj = next(k for k in layer_kernels(llama8b, StepShape.decode(8, 300), 3) if k.name == "o_proj")
    assert o_proj.bytes_of_kind(TensorKind.WEIGHT) == 4096 * 4096
    assert o_proj.bytes_of_kind(TensorKind.ACTIVATION) == 8 * 4096 * 2 + 8 * 4096 * 2
    assert o_proj.bytes_of_kind(TensorKind.KV_CACHE) == 0
    assert o_proj.bytes == 4096 * 4096 + 2 * 8 * 4096 * 2
    assert o_proj.flops_matmul == 2 * 8 * 4096 * 4096 and o_proj.layer == 3


def test_weight_bytes_of_a_step_equal_all_parameters_once(llama8b: ModelSpec) -> None:
    """A decode step at batch 1 reads every weight once (embedding: only the rows it needs)."""
    prec = Precision(weight=FP8, activation=FP16)
    kernels = step_kernels(llama8b, StepShape.decode(1, 10), precision=prec)
    weight_bytes = total(kernels).weight_bytes
    L, d, V = llama8b.num_layers, llama8b.hidden_size, llama8b.vocab_size
    fp8_params = L * (llama8b.attention_params_per_layer() + llama8b.mlp_params_per_layer())
    fp16_params = L * llama8b.norm_params_per_layer() + d + V * d + 1 * d  # norms, head, 1 row
    assert weight_bytes == fp8_params * 1 + fp16_params * 2


def test_mlp_cost_is_affine_in_kept_neurons(llama8b: ModelSpec) -> None:
    shape = StepShape.decode(16, 64)

    def mlp(k: int) -> tuple[int, int]:
        t = totals_by_component(layer_kernels(llama8b, shape, 0, kept_neurons=k))[Component.MLP]
        return t.bytes, t.flops_matmul

    b0, f0 = mlp(0)
    b1, f1 = mlp(1)
    for k in (7, 1000, llama8b.intermediate_size):
        bk, fk = mlp(k)
        assert bk == b0 + k * (b1 - b0)
        assert fk == f0 + k * (f1 - f0)
    # With no neuron kept only the d-wide input and output remain.
    assert f0 == 0
    assert b0 == 2 * shape.tokens * llama8b.hidden_size * 2


def test_sparsity_leaves_attention_untouched(llama8b: ModelSpec) -> None:
    shape = StepShape.decode(4, 512)
    dense = totals_by_component(layer_kernels(llama8b, shape, 0))
    sparse = totals_by_component(layer_kernels(llama8b, shape, 0, kept_neurons=100))
    assert dense[Component.ATTENTION] == sparse[Component.ATTENTION]
    assert dense[Component.MLP].bytes > sparse[Component.MLP].bytes


@pytest.mark.parametrize(("new", "context"), [(1, 1), (1, 50), (7, 7), (5, 40), (64, 64)])
def test_attention_pairs_match_a_brute_force_causal_count(new: int, context: int) -> None:
    shape = StepShape("prefill", 3, new, context)
    cached = context - new
    brute = sum(1 for j in range(new) for key in range(context) if key <= cached + j)
    assert shape.attention_pairs == 3 * brute


def test_decode_reads_the_cache_and_appends_one_row(llama8b: ModelSpec) -> None:
    shape = StepShape.decode(2, 100)
    attn = next(k for k in layer_kernels(llama8b, shape, 0) if k.name == "attention")
    kvw = llama8b.kv_width
    assert attn.bytes_of_kind(TensorKind.KV_CACHE) == 2 * 2 * 100 * kvw  # 99 read + 1 written
    assert attn.flops_matmul == 2 * 2 * llama8b.num_heads * 2 * 100 * llama8b.head_dim


def test_fusing_qkv_saves_two_reads_of_the_input_and_no_flops(llama8b: ModelSpec) -> None:
    shape = StepShape.decode(32, 128)
    apart = totals_by_component(layer_kernels(llama8b, shape, 0))[Component.ATTENTION]
    fused = totals_by_component(layer_kernels(llama8b, shape, 0, fusion=KernelFusion(qkv_fused=True)))[
        Component.ATTENTION
    ]
    assert apart.flops == fused.flops
    assert apart.bytes - fused.bytes == 2 * shape.tokens * llama8b.hidden_size * 2


def test_unfused_swiglu_adds_the_round_trip_of_gate_and_up(llama8b: ModelSpec) -> None:
    shape, k = StepShape.decode(32, 128), 4000
    fused = totals_by_component(layer_kernels(llama8b, shape, 0, kept_neurons=k))
    apart = totals_by_component(
        layer_kernels(llama8b, shape, 0, kept_neurons=k, fusion=KernelFusion(swiglu_fused=False))
    )
    # gate_proj and up_proj each read x and write [T, k]; swiglu reads both and writes u.
    T, d = shape.tokens, llama8b.hidden_size
    extra = (T * d + 2 * T * k + 2 * T * k) * 2
    assert apart[Component.MLP].bytes - fused[Component.MLP].bytes == extra
    assert apart[Component.MLP].flops == fused[Component.MLP].flops


def test_sub_byte_and_byte_formats_scale_weight_bytes(llama8b: ModelSpec) -> None:
    shape = StepShape.decode(1, 16)

    def weights(dtype, scales=False):  # type: ignore[no-untyped-def]
        kernels = layer_kernels(llama8b, shape, 0, precision=Precision(weight=dtype))
        return sum(
            t.bytes
            for k in kernels
            for t in k.reads
            if t.kind is TensorKind.WEIGHT
            and t.name.startswith("W_")
            and t.name.endswith(".scales") == scales
        )

    assert weights(INT8) == 2 * weights(INT4)
    assert weights(FP16) == 2 * weights(FP8)
    # int4 carries one fp16 scale per 128 weights (group-wise quantisation); 8-bit formats none
    assert weights(INT4, scales=True) == weights(INT8) // 128 * 2
    assert weights(INT8, scales=True) == 0


def test_int4_weights_pay_dequantisation_work(llama8b: ModelSpec) -> None:
    shape = StepShape.decode(1, 16)
    flops = {
        dtype: sum(
            k.flops_vector for k in layer_kernels(llama8b, shape, 0, precision=Precision(weight=dtype))
        )
        for dtype in (INT8, INT4)
    }
    d, m = llama8b.hidden_size, llama8b.intermediate_size
    linear = d * (llama8b.q_width + 2 * llama8b.kv_width) + llama8b.q_width * d + 3 * d * m
    assert flops[INT4] - flops[INT8] == 2 * linear  # convert and scale every weight once


def test_qwen2_biases_and_qwen3_qk_norms_are_counted() -> None:
    qwen3 = load_model_spec("qwen3-4b")
    attn = next(k for k in layer_kernels(qwen3, StepShape.decode(1, 8), 0) if k.name == "attention")
    assert {t.name for t in attn.reads} >= {"q_norm.weight", "k_norm.weight"}
    qwen2 = ModelSpec(**{**qwen3.__dict__, "model_type": "qwen2", "qk_norm": False, "attention_bias": True})
    q_proj = next(k for k in layer_kernels(qwen2, StepShape.decode(1, 8), 0) if k.name == "q_proj")
    assert any(t.name == "W_q.bias" for t in q_proj.reads)


def test_lm_head_computes_logits_for_the_last_token_of_each_sequence(llama8b: ModelSpec) -> None:
    shape = StepShape.prefill(batch=3, prompt_len=50)
    head = next(k for k in step_kernels(llama8b, shape) if k.name == "lm_head")
    assert head.flops_matmul == 2 * 3 * llama8b.hidden_size * llama8b.vocab_size


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"phase": "warmup", "batch": 1, "new_tokens": 1, "context_len": 1},
            "phase must be one of",
        ),
        (
            {"phase": "decode", "batch": 0, "new_tokens": 1, "context_len": 1},
            "batch must be a positive integer, got 0",
        ),
        (
            {"phase": "prefill", "batch": 1, "new_tokens": 9, "context_len": 8},
            "new_tokens=9 exceeds context_len=8",
        ),
    ],
)
def test_impossible_step_shapes_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        StepShape(**kwargs)  # type: ignore[arg-type]


def test_kept_neurons_are_validated(llama8b: ModelSpec) -> None:
    shape = StepShape.decode(1, 4)
    with pytest.raises(UserError, match=r"kept neurons must be an integer in \[0, 14336\], got 14337"):
        layer_kernels(llama8b, shape, 0, kept_neurons=14337)
    with pytest.raises(UserError, match="kept neurons given for 2 layers, model has 32"):
        step_kernels(llama8b, shape, kept_neurons=[1, 2])


def test_kept_count_rounds_halves_up_and_checks_range() -> None:
    assert kept_count(0.3, 14336) == 4301  # 4300.8
    assert kept_count(0.5, 3) == 2  # 1.5 rounds up
    assert kept_count(1.0, 10) == 10
    with pytest.raises(UserError, match="must lie in"):
        kept_count(1.5, 10)
