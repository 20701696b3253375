"""Recording real DART runs on the bundled SmolLM2-135M (slow: a real model on the CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dartsim.errors import UserError
from dartsim.policies.dart import DartParams, DartSettings, record_dart
from dartsim.record.hooks import wrap_ffn
from dartsim.record.loop import GenerationOptions
from dartsim.record.model import LoadedModel
from dartsim.trace import load_trace

pytestmark = pytest.mark.slow

SHORT = DartParams(sparsity=0.5, tau=5, reference_tokens=10, c0=1)
PROMPT = "Explain how a bicycle works, then describe the history of jazz."
QUICK = ("--max-new-tokens", "12", "--tau", "5", "--reference-tokens", "5", "--quiet")
"""CLI options for a 12-token recording that still builds a mask."""


def _short(loaded: LoadedModel, tmp: Path, name: str, mask_apply: str = "zero"):  # type: ignore[no-untyped-def]
    options = GenerationOptions(max_new_tokens=40, min_new_tokens=40)
    return record_dart(loaded, PROMPT, DartSettings(SHORT, mask_apply=mask_apply), options, tmp / name)


def test_recording_is_deterministic(smollm2: LoadedModel, tmp_path: Path) -> None:
    first = load_trace(tmp_path / "a.pt") if _short(smollm2, tmp_path, "a.pt") else None
    second = load_trace(tmp_path / "b.pt") if _short(smollm2, tmp_path, "b.pt") else None
    assert first is not None and second is not None
    assert first.epochs.kept.shape[0] >= 1, "the run must build at least one mask"
    assert np.array_equal(first.epochs.masks, second.epochs.masks)
    assert np.array_equal(first.retriggers.step, second.retriggers.step)
    assert np.array_equal(first.generation.generated_ids, second.generation.generated_ids)
    assert np.array_equal(first.drift_checks.similarity, second.drift_checks.similarity)


def test_trace_records_steps_epochs_and_checks_consistently(smollm2: LoadedModel, tmp_path: Path) -> None:
    result = _short(smollm2, tmp_path, "t.pt")
    trace = load_trace(tmp_path / "t.pt")
    assert result.status == "complete" and trace.complete
    steps = trace.steps
    prompt_len = trace.generation.prompt_len
    assert steps.phase[0] == 0 and steps.tokens[0] == prompt_len
    # one decode step per generated token but the last
    assert steps.phase.size == 1 + trace.generation.generated_len - 1
    assert np.array_equal(steps.context_len[1:], np.arange(prompt_len + 1, prompt_len + steps.phase.size))
    assert bool((steps.time_s > 0).all())
    # the first T decode steps run dense, then the first mask is in force
    assert bool((steps.epoch[: 1 + SHORT.reference_tokens] == -1).all())
    assert int(steps.epoch[1 + SHORT.reference_tokens]) == 0
    epochs = trace.epochs
    masks = np.stack([trace.mask(e) for e in range(epochs.count)])
    assert np.array_equal(masks.sum(-1), epochs.kept)
    # DART's allocation: total pruning rho * L (up to rounding to whole neurons)
    layers = trace.model.num_layers
    assert epochs.pruning[0].sum().item() == pytest.approx(SHORT.sparsity * layers, abs=1e-6)
    assert float(epochs.build_time_s.min()) > 0
    # every re-trigger is a fired check, and the next epoch starts T - tau steps later
    fired_steps = trace.drift_checks.step[trace.drift_checks.fired]
    assert set(trace.retriggers.step.tolist()) <= set(fired_steps.tolist())
    for step, epoch in zip(trace.retriggers.step.tolist(), trace.retriggers.epoch.tolist(), strict=True):
        if epoch >= 0:
            assert int(epochs.first_step[epoch]) == step + SHORT.reference_tokens - SHORT.tau + 1


def test_zeroing_and_compact_masks_give_the_same_logits(smollm2: LoadedModel) -> None:
    """Tolerance: fp32 with a different summation order, |diff| <= 1e-4 * max |logit|."""
    model = smollm2.model
    ffn = wrap_ffn(model)
    gen = torch.Generator().manual_seed(0)
    width = smollm2.spec.intermediate_size
    kept = [torch.sort(torch.randperm(width, generator=gen)[: width * 3 // 10]).values for _ in ffn]
    ids = torch.tensor([smollm2.tokenizer("The quick brown fox jumps over the lazy dog.")["input_ids"]])
    zero_masks = []
    for idx in kept:
        mask = torch.zeros(width)
        mask[idx] = 1
        zero_masks.append(mask)
    for (_, _, down), mask in zip(ffn, zero_masks, strict=True):
        down.observer = lambda u, mask=mask: u * mask
    with torch.no_grad():
        zeroed = model(ids).logits
    for _, _, down in ffn:
        down.observer = None
    for (gate, up, down), idx in zip(ffn, kept, strict=True):
        for module in (gate, up, down):
            module.set_kept(idx)
    with torch.no_grad():
        compact = model(ids).logits
        counter = FlopCounterMode(display=False)
        with counter:
            model(ids)
    masked_flops = counter.get_total_flops()
    for gate, up, down in ffn:
        for module in (gate, up, down):
            module.set_kept(None)
    with torch.no_grad():
        dense = model(ids).logits
        counter = FlopCounterMode(display=False)
        with counter:
            model(ids)
    dense_flops = counter.get_total_flops()
    scale = float(zeroed.abs().max())
    assert float((zeroed - compact).abs().max()) <= 1e-4 * scale
    assert float((zeroed - dense).abs().max()) > 1e-2 * scale  # the mask matters
    # The compact path really skips the pruned neurons' arithmetic.
    tokens = ids.shape[1]
    d, layers = smollm2.spec.hidden_size, smollm2.spec.num_layers
    saved = sum(2 * 3 * tokens * d * (width - idx.numel()) for idx in kept)
    assert dense_flops - masked_flops == saved
    assert layers == len(kept)


def test_compact_recording_matches_zeroing(smollm2: LoadedModel, tmp_path: Path) -> None:
    zero = _short(smollm2, tmp_path, "z.pt").trace
    compact = _short(smollm2, tmp_path, "c.pt", mask_apply="compact").trace
    assert np.array_equal(zero.epochs.masks, compact.epochs.masks)
    assert np.array_equal(zero.generation.generated_ids, compact.generation.generated_ids)


def test_an_interrupt_leaves_a_valid_incomplete_trace(
    smollm2: LoadedModel, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from dartsim.record import loop as loop_module

    original = loop_module.timed_forward
    calls = {"n": 0}

    def interrupt_later(loaded, ids, cache, position):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return original(loaded, ids, cache, position)

    monkeypatch.setattr(loop_module, "timed_forward", interrupt_later)
    target = tmp_path / "cut.pt"
    with pytest.raises(KeyboardInterrupt):
        _short(smollm2, tmp_path, "cut.pt")
    trace = load_trace(target)
    assert not trace.complete and trace.status == "interrupted"
    assert trace.steps.phase.size == 14
    assert [p.name for p in tmp_path.iterdir()] == ["cut.pt"]


def test_sigterm_during_record_keeps_what_was_recorded(  # type: ignore[no-untyped-def]
    smollm2: LoadedModel, tmp_path: Path, monkeypatch, run_cli
) -> None:
    """A scheduler's SIGTERM stops `dartsim record` the way Ctrl-C does: the steps so far are
    saved as an incomplete trace, exit status 143, and the old handler is back afterwards."""
    import os
    import signal

    from dartsim.record import loop as loop_module
    from dartsim.record import model as hf

    monkeypatch.setattr(hf, "load_for_recording", lambda *_args, **_kw: smollm2)
    original = loop_module.timed_forward
    calls = {"n": 0}

    def terminate_later(loaded, ids, cache, position):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 15:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(loaded, ids, cache, position)

    monkeypatch.setattr(loop_module, "timed_forward", terminate_later)
    before = signal.getsignal(signal.SIGTERM)
    target = tmp_path / "cut.pt"
    result = run_cli("record", "--max-new-tokens", "40", "--quiet", "--out", str(target))
    assert result.code == 143 and "terminated" in result.err, result.err
    trace = load_trace(target)
    assert not trace.complete and trace.status == "interrupted"
    assert 14 <= trace.steps.phase.size <= 15
    assert signal.getsignal(signal.SIGTERM) == before
    assert [p.name for p in tmp_path.iterdir()] == ["cut.pt"]


def test_an_exception_is_recorded_then_raised(smollm2: LoadedModel, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from dartsim.record import loop as loop_module

    original = loop_module.timed_forward
    calls = {"n": 0}

    def fail_later(loaded, ids, cache, position):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("simulated device failure")
        return original(loaded, ids, cache, position)

    monkeypatch.setattr(loop_module, "timed_forward", fail_later)
    with pytest.raises(RuntimeError, match="simulated"):
        _short(smollm2, tmp_path, "err.pt")
    trace = load_trace(tmp_path / "err.pt")
    assert trace.status == "error: RuntimeError: simulated device failure"
    assert trace.steps.phase.size == 4


def test_record_cli_and_trace_info(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "cli.pt"
    result = run_cli(
        "record",
        "--prompt",
        PROMPT,
        "--max-new-tokens",
        "30",
        "--min-new-tokens",
        "30",
        "--sparsity",
        "0.5",
        "--tau",
        "5",
        "--reference-tokens",
        "10",
        "--quiet",
        "--out",
        str(out),
    )
    assert result.code == 0, result.err
    assert "wrote" in result.err
    info = json.loads(run_cli("trace", "info", str(out), "--format", "json").out)
    assert info["generated_tokens"] == 30 and info["mask_epochs"] >= 1
    assert info["model"] == "smollm2-135m-instruct" and not info["random_weights"]
    assert len(info["mean_keep_ratio_per_layer"]) == 30


def test_random_weight_preset_is_marked(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "random.pt"
    result = run_cli(
        "record",
        "--model",
        "smollm2-135m",
        "--prompt",
        PROMPT,
        *QUICK,
        "--out",
        str(out),
    )
    assert result.code == 0, result.err
    trace = load_trace(out)
    assert trace.model.random_weights and trace.model.source == "models_cfg/smollm2-135m.json"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--sparsity", "1.0"], "sparsity must lie in [0, 1), got 1.0"),
        (["--sparsity", "-0.2"], "sparsity must lie in [0, 1), got -0.2"),
        (["--tau", "60", "--reference-tokens", "50"], "tau=60 is larger than the reference length T=50"),
        (["--max-new-tokens", "9000"], "exceeds the model's context of 8192 positions"),
        (["--prompt-file", "/nonexistent/prompts.txt"], "no such prompt file"),
        (["--model", "not-a-model"], "is neither a local model folder nor a preset"),
    ],
)
def test_bad_record_input_is_one_line_and_writes_nothing(
    run_cli, tmp_path: Path, args: list[str], fragment: str
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "x.pt"
    result = run_cli("record", "--quiet", "--out", str(out), *args)
    assert result.code == 2, result.err
    assert result.err.count("\n") == 1 and fragment in result.err
    assert not out.exists()


def test_prompt_longer_than_context_is_rejected(smollm2: LoadedModel, tmp_path: Path) -> None:
    long_prompt = "word " * 9000
    with pytest.raises(UserError, match="exceeds the model's context"):
        record_dart(smollm2, long_prompt, SHORT, GenerationOptions(max_new_tokens=10), tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


@pytest.fixture(scope="module")
def tiny_random(smollm2: LoadedModel) -> LoadedModel:
    """A 2-layer random Llama with SmolLM2's vocabulary (so its tokenizer fits)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from dartsim.specs.model import model_spec_from_config

    raw = {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 49152,
        "max_position_embeddings": 512,
        "hidden_act": "silu",
    }
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**raw)).eval()
    spec = model_spec_from_config(raw, "tiny", "tests")
    return LoadedModel(model, smollm2.tokenizer, spec, "tests", True, "fp32")


def test_published_code_variant_records(tiny_random: LoadedModel, tmp_path: Path) -> None:
    params = DartParams.preset("published-code", masking_step=10)
    assert (params.tau, params.c0, params.sparsity, params.ranking) == (5, 1, 0.5, "max")
    result = record_dart(
        tiny_random,
        PROMPT,
        params,
        GenerationOptions(max_new_tokens=60, min_new_tokens=60),
        tmp_path / "pc.pt",
    )
    trace = load_trace(tmp_path / "pc.pt")
    assert trace.dart["variant"] == "published-code" and result.status == "complete"
    checks = trace.drift_checks
    # threshold mu - max(0.1 sigma, 0.1)
    expected = checks.mu - np.maximum(0.1 * checks.sigma, 0.1)
    assert np.allclose(checks.threshold, expected)
    # published-code importance is min-max normalised with eps 1e-6 in the denominator:
    # 1 for the least sensitive layer, eps / (range + eps) for the most sensitive one
    importance, s_bar = trace.epochs.importance[0], trace.epochs.s_bar[0]
    spread = float(s_bar.max() - s_bar.min())
    assert float(importance.max()) == 1.0
    assert float(importance.min()) == pytest.approx(1e-6 / (spread + 1e-6), rel=1e-9)
    # the first mask is in force from forward masking_step, its reference spans P + M positions
    epochs = trace.epochs
    prompt_len = trace.generation.prompt_len
    assert int(epochs.first_step[0]) == params.masking_step
    assert int(epochs.reference_tokens[0]) == prompt_len + params.masking_step
    # after a trigger at forward f the masks are back at forward f + masking_step
    for step, epoch in zip(trace.retriggers.step.tolist(), trace.retriggers.epoch.tolist(), strict=True):
        if epoch >= 0:
            assert int(epochs.first_step[epoch]) == step + params.masking_step
            assert int(epochs.reference_tokens[epoch]) == params.masking_step


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_device_is_a_clear_error(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("record", "--device", "cuda", "--quiet", "--out", str(tmp_path / "x.pt"))
    assert result.code == 2 and "no CUDA device is available" in result.err


def test_a_jsonl_prompt_file_records_one_trace_per_prompt(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('"Explain tides."\n{"prompt": "Explain jazz."}\n')
    out = tmp_path / "traces"
    result = run_cli(
        "record",
        "--prompt-file",
        str(prompts),
        *QUICK,
        "--out",
        str(out),
    )
    assert result.code == 0, result.err
    assert sorted(p.name for p in out.iterdir()) == ["prompt-000.pt", "prompt-001.pt"]
    assert load_trace(out / "prompt-001.pt").generation.prompt == "Explain jazz."


def test_the_prompt_can_be_the_first_reference(smollm2: LoadedModel, tmp_path: Path) -> None:
    params = DartParams(sparsity=0.5, tau=5, reference_tokens=20, c0=2, prompt_in_reference=True)
    record_dart(
        smollm2, PROMPT, params, GenerationOptions(max_new_tokens=15, min_new_tokens=15), tmp_path / "p.pt"
    )
    trace = load_trace(tmp_path / "p.pt")
    # the first mask is built from the prompt, so the first decode step is already masked
    assert int(trace.epochs.first_step[0]) == 1 and int(trace.steps.epoch[1]) == 0
    assert int(trace.epochs.reference_tokens[0]) == 20


def test_replaying_an_incomplete_trace_says_so(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch as _torch
    from tracefactory import tiny_trace

    from dartsim.trace import save_trace
    from dartsim.trace.schema import new_policy_section

    trace = tiny_trace()
    trace.update(complete=False, status="interrupted")
    trace["model"].update(
        name="smollm2-135m",
        num_layers=30,
        hidden_size=576,
        intermediate_size=1536,
        num_heads=9,
        num_kv_heads=3,
        head_dim=64,
        vocab_size=49152,
        max_position_embeddings=8192,
    )
    trace["policy"] = new_policy_section("dart", 30, 9)
    trace["epochs"]["masks"] = _torch.zeros(0, 30, 192, dtype=_torch.uint8)
    for key in ("kept",):
        trace["epochs"][key] = _torch.zeros(0, 30, dtype=_torch.int32)
    for key in ("keep_ratio", "s_bar", "importance", "depth", "pruning"):
        trace["epochs"][key] = _torch.zeros(0, 30, dtype=_torch.float64)
    for key in ("first_step", "last_step", "trigger_step", "reference_tokens"):
        trace["epochs"][key] = _torch.zeros(0, dtype=_torch.int32)
    trace["epochs"]["build_time_s"] = _torch.zeros(0, dtype=_torch.float64)
    trace["steps"]["epoch"] = _torch.full((7,), -1, dtype=_torch.int32)
    path = tmp_path / "cut.pt"
    save_trace(trace, path)
    result = run_cli("replay", str(path), "--hw", "l40s", "--format", "json", "--quiet")
    assert result.code == 0, result.err
    assert "incomplete" in result.err and json.loads(result.out)["complete"] is False


def test_an_interrupt_before_any_step_says_no_trace_was_written(  # type: ignore[no-untyped-def]
    smollm2: LoadedModel, tmp_path: Path, monkeypatch, run_cli
) -> None:
    """The message used to name a trace that was never written."""
    from dartsim.record import loop as loop_module
    from dartsim.record import model as hf

    monkeypatch.setattr(hf, "load_for_recording", lambda *_args, **_kw: smollm2)

    def interrupt_at_once(loaded, ids, cache, position):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(loop_module, "timed_forward", interrupt_at_once)
    target = tmp_path / "never.pt"
    result = run_cli("record", "--max-new-tokens", "40", "--quiet", "--out", str(target))
    assert result.code == 130
    assert "no trace was written" in result.err and "holds the steps" not in result.err
    assert not target.exists()


def test_a_prompt_too_long_for_any_tokenisation_is_refused_before_tokenising(smollm2: LoadedModel) -> None:
    """A 50 MB prompt was tokenised whole (gigabytes, minutes) before the context check."""
    import time
    from dataclasses import replace as dc_replace

    from dartsim.errors import UserError
    from dartsim.record.session import encode_prompt

    class NoTokenising:
        def __init__(self, vocab: dict[str, int]) -> None:
            self.vocab = vocab

        def get_vocab(self) -> dict[str, int]:
            return self.vocab

        def __call__(self, *_args, **_kw):  # type: ignore[no-untyped-def]
            raise AssertionError("tokenised a prompt that cannot fit")

    loaded = dc_replace(smollm2, tokenizer=NoTokenising(smollm2.tokenizer.get_vocab()))
    start = time.monotonic()
    with pytest.raises(UserError, match="more than the model's context"):
        encode_prompt(loaded, "word " * 10_000_000, chat_template=False)  # 50 MB
    assert time.monotonic() - start < 10
    # a prompt that may fit is tokenised as before
    assert encode_prompt(smollm2, "Explain GPUs.", chat_template=False)
