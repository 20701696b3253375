"""Every policy recorded on the real model (short runs, a small calibration), the trace
it writes, and what replay charges for it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dartsim.engine.replay_config import ReplayConfig
from dartsim.policies import PolicySettings, get_policy
from dartsim.policies._calibration import CalibrationStats, calibrate
from dartsim.record.corpus import categories
from dartsim.record.loop import GenerationOptions
from dartsim.record.model import LoadedModel
from dartsim.record.session import record
from dartsim.replay.run import densified, run_steps
from dartsim.replay.steps import build_steps
from dartsim.specs.hardware import load_hardware_spec
from dartsim.study.quality import quality, token_stats
from dartsim.trace import Trace
from dartsim.trace.io import load_trace

PROMPT = "Explain how a GPU works."
TOKENS = 6


@pytest.fixture(scope="module")
def stats(smollm2: LoadedModel) -> CalibrationStats:
    """One 48-token passage per category: enough to exercise every offline rule."""
    return calibrate(smollm2, per_category=1, tokens=48)


def _record(loaded: LoadedModel, stats: CalibrationStats, tmp_path: Path, **config: Any) -> Trace:
    name = config.pop("name")
    recorder = _prepared(loaded, name, stats, **config)
    try:
        path = tmp_path / f"{name.replace(':', '-')}.pt"
        record(loaded, recorder, PROMPT, GenerationOptions(max_new_tokens=TOKENS), path)
    finally:
        recorder.close()
    return load_trace(path)


def _prepared(loaded: LoadedModel, name: str, stats: CalibrationStats | None, **settings: Any) -> Any:
    """The policy `name` prepared on the model with `settings` (PolicySettings fields)."""
    return get_policy(name).recorder(loaded, PolicySettings(**settings), stats)


def _decode_bytes(trace: Trace) -> int:
    """DRAM bytes of one decode step (the last) replayed on the trace's own model."""
    spec = trace.model.spec()
    steps = build_steps([trace], spec, False)
    result = run_steps(steps[-1:], spec, load_hardware_spec("l40s"), ReplayConfig())
    return result.totals.bytes // steps[-1].count


def test_weight_pruning_is_recorded_and_the_weights_come_back(
    smollm2: LoadedModel, stats: CalibrationStats, tmp_path: Path
) -> None:
    down = smollm2.model.model.layers[3].mlp.down_proj.weight
    before = down.detach().clone()
    wanda = _record(smollm2, stats, tmp_path, name="wanda", sparsity=0.5)
    assert torch.equal(down.detach(), before)  # restored after the run
    policy = wanda.policy
    assert policy.name == "wanda" and policy.weight_format == "bitmap"
    # every row of every matrix drops exactly half (all input widths are even)
    assert np.array_equal(policy.weight_density, np.full(30, 0.5))
    assert int((wanda.steps.epoch >= 0).sum()) == 0  # no FFN neuron mask
    two_four = _record(smollm2, stats, tmp_path, name="2:4")
    assert two_four.policy.weight_format == "2:4"
    unpruned = replace(policy, weight_format="dense", weight_density=np.ones(30))
    dense_step = _decode_bytes(replace(wanda, policy=unpruned))
    # bitmap at 50%: half the fp8 values plus 1 bit per element = 9/16 of the dense weight bytes
    spec = wanda.model.spec()
    block_weights = spec.num_layers * (spec.attention_params_per_layer() + spec.mlp_params_per_layer())
    assert dense_step - _decode_bytes(wanda) == block_weights - (block_weights // 2 + block_weights // 8)


def test_dejavu_chooses_a_mask_per_token_and_replay_charges_its_predictor(
    smollm2: LoadedModel, stats: CalibrationStats, tmp_path: Path
) -> None:
    rank = 16
    trace = _record(smollm2, stats, tmp_path, name="dejavu", sparsity=0.5, rank=rank)
    oracle = _record(smollm2, stats, tmp_path, name="dejavu", sparsity=0.5, oracle=True)
    epochs = trace.steps.epoch
    assert epochs[0] == -1 and epochs[1:].tolist() == list(range(TOKENS - 1))
    assert bool((trace.epochs.kept == 768).all())  # round(0.5 * 1536) per layer, every token
    assert not np.array_equal(trace.mask(0), trace.mask(1))  # tokens choose different neurons
    assert trace.policy.params["predictor_rank"] == rank
    assert oracle.policy.params["predictor_rank"] == 0
    spec = trace.model.spec()
    d, m, k = spec.hidden_size, spec.intermediate_size, 768
    # per layer: predictor weights (fp8) + its input x (fp16) + the kept index it writes (int32)
    predictor = spec.num_layers * ((d * rank + rank * m) + 2 * d + 4 * k)
    assert _decode_bytes(trace) - _decode_bytes(oracle) == predictor
    assert build_steps([trace], spec, False)[-1].mask_builds == ()  # no mask build per token


def test_dsgp_prunes_heads_and_replay_shrinks_attention(
    smollm2: LoadedModel, stats: CalibrationStats, tmp_path: Path
) -> None:
    trace = _record(smollm2, stats, tmp_path, name="dsgp", sparsity=0.5, head_sparsity=0.25)
    heads = trace.policy.head_masks
    assert heads.shape == (30, 9) and bool((heads.sum(axis=-1) == 7).all())  # round(0.75 * 9)
    spec = trace.model.spec()
    steps = build_steps([trace], spec, False)
    assert steps[0].heads is None  # the prefill runs every head
    assert steps[-1].heads is not None and all(q == 7 for q, _ in steps[-1].heads)
    hw, config = load_hardware_spec("l40s"), ReplayConfig()
    pruned = run_steps(steps[-1:], spec, hw, config).components["attention"].bytes
    full = run_steps([densified(steps[-1:], 1536)[0]], spec, hw, config).components["attention"].bytes
    assert pruned < full


def test_kgds_classifies_the_prompt_and_keeps_its_core(
    smollm2: LoadedModel, stats: CalibrationStats, tmp_path: Path
) -> None:
    trace = _record(smollm2, stats, tmp_path, name="kgds", sparsity=0.5, core_fraction=0.5)
    params = trace.policy.params
    assert params["category"] in categories() and params["classifier_classes"] == 3
    from dartsim.policies import kgds

    core, masks = kgds.core_and_category_masks(stats.saliency, stats.category_saliency, 0.5, 0.5)
    recorded = torch.from_numpy(trace.mask(0))
    assert torch.equal(recorded, masks[categories().index(params["category"])])
    assert bool((recorded | ~core).all())  # the core is kept
    steps = build_steps([trace], trace.model.spec(), False)
    assert steps[1].mask_builds and not steps[1].policy.build_topk and steps[1].policy.classifier_classes == 3


def test_static_mask_follows_the_prompt_and_holds(smollm2: LoadedModel, tmp_path: Path) -> None:
    recorder = _prepared(smollm2, "static", None, sparsity=0.7)
    try:
        record(smollm2, recorder, PROMPT, GenerationOptions(max_new_tokens=TOKENS), tmp_path / "s.pt")
    finally:
        recorder.close()
    trace = load_trace(tmp_path / "s.pt")
    assert trace.steps.epoch.tolist() == [-1] + [0] * (TOKENS - 1)
    assert bool((trace.epochs.kept == 461).all())  # round(0.3 * 1536)


def test_teacher_forced_dense_agrees_with_itself_exactly(smollm2: LoadedModel) -> None:
    recorder = _prepared(smollm2, "dense", None)
    forced = [1, 2, 3, 4]
    logits: list[torch.Tensor] = []
    options = GenerationOptions(max_new_tokens=len(forced), forced_ids=tuple(forced))
    try:
        result = record(smollm2, recorder, "", options, None, prompt_ids=[5, 6, 7], on_logits=logits.append)
    finally:
        recorder.close()
    assert result.trace is not None and result.trace.generation.generated_ids.tolist() == forced
    stacked = torch.stack(logits)
    q = quality([stacked], [stacked], [torch.tensor(forced)])
    assert q.top1_agreement == 1.0 and q.mean_kl == 0.0 and q.positions == 4


def test_quality_metrics_on_a_hand_worked_example() -> None:
    # dense: uniform over 2 tokens; policy: log-probs log(0.8), log(0.2); target token 0.
    dense = torch.tensor([[0.0, 0.0]])
    policy = torch.log(torch.tensor([[0.8, 0.2]]))
    nll, agree, kl = token_stats(dense, policy, torch.tensor([0]))
    assert nll == pytest.approx(-torch.log(torch.tensor(0.8)).item())
    assert agree == 1  # both put token 0 first (a tie goes to the lower index)
    # KL(u || p) = 0.5 log(0.5/0.8) + 0.5 log(0.5/0.2)
    assert kl == pytest.approx(
        0.5 * torch.log(torch.tensor(0.625)).item() + 0.5 * torch.log(torch.tensor(2.5)).item()
    )


def test_an_interrupted_policy_run_keeps_its_steps(smollm2: LoadedModel, tmp_path: Path) -> None:
    recorder = _prepared(smollm2, "static", None, sparsity=0.5)
    seen: list[int] = []

    def interrupt(_logits: torch.Tensor) -> None:
        seen.append(1)
        if len(seen) == 4:
            raise KeyboardInterrupt

    path = tmp_path / "cut.pt"
    try:
        with pytest.raises(KeyboardInterrupt):
            record(smollm2, recorder, PROMPT, GenerationOptions(max_new_tokens=20), path, on_logits=interrupt)
    finally:
        recorder.close()
    trace = load_trace(path)
    assert trace.status == "interrupted" and not trace.complete
    assert trace.steps.count == 4  # the prefill and three decode steps
    assert trace.policy.name == "static"


def test_hook_masks_equal_physically_pruned_weights(smollm2: LoadedModel, stats: CalibrationStats) -> None:
    """The runner's masks (multiplying u and the heads' outputs) give the same logits as a
    model whose pruned neurons' gate rows and pruned heads' o_proj columns are zeroed."""
    recorder = _prepared(smollm2, "dsgp", stats, sparsity=0.5, head_sparsity=0.25)
    prompt, forced = [1, 504, 3214, 314, 253, 1052, 30], [3365, 2418, 314]
    got: list[torch.Tensor] = []
    options = GenerationOptions(max_new_tokens=len(forced), forced_ids=tuple(forced))
    try:
        result = record(smollm2, recorder, "", options, None, prompt_ids=prompt, on_logits=got.append)
    finally:
        recorder.close()
    assert result.trace is not None
    neurons = torch.from_numpy(result.trace.mask(0))  # [L, m]
    heads = torch.from_numpy(result.trace.policy.head_masks.copy())  # [L, H]
    model = smollm2.model
    from transformers.cache_utils import DynamicCache

    saved = []
    expected = []
    with torch.no_grad():
        cache = DynamicCache()
        model(input_ids=torch.tensor([prompt]), past_key_values=cache, use_cache=True)  # dense prefill
        try:
            for i, layer in enumerate(model.model.layers):
                gate, o_proj = layer.mlp.gate_proj.weight, layer.self_attn.o_proj.weight
                saved += [(gate, gate.clone()), (o_proj, o_proj.clone())]
                gate[~neurons[i]] = 0  # u = silu(0) * up = 0 for every pruned neuron
                o_proj[:, ~heads[i].repeat_interleave(64)] = 0  # pruned heads contribute nothing
            for j, token in enumerate(forced[:-1]):
                position = torch.tensor([[len(prompt) + j]])
                out = model(input_ids=torch.tensor([[token]]), past_key_values=cache, position_ids=position)
                expected.append(out.logits[0, -1])
        finally:
            for w, original in saved:
                w.copy_(original)
    for a, b in zip(got[1:], expected, strict=True):
        assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())


def test_the_readme_policy_example_registers_records_and_replays(
    smollm2: LoadedModel, tmp_path: Path
) -> None:
    """README "Adding a policy": the example class, as written there, becomes a policy that
    records on the bundled model and replays (its prefill observed, its mask in force)."""
    import re

    from dartsim.policies import _registry

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Adding a policy", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(  # the README's code, with the imports a module of dartsim/policies/ would have
        "from dartsim.policies._hooked import HookedPolicy\n"
        "from dartsim.policies._registry import register\n"
        "from dartsim.policies._topk import keep_count, top_k_rows\n" + code.group(1),
        namespace,
    )
    try:
        policy = get_policy("top-magnitude")
        recorder = policy.recorder(smollm2, policy.settings({"sparsity": 0.5}), None)
        try:
            record(smollm2, recorder, PROMPT, GenerationOptions(max_new_tokens=TOKENS), tmp_path / "m.pt")
        finally:
            recorder.close()
        trace = load_trace(tmp_path / "m.pt")
        assert trace.policy.name == "top-magnitude" and bool((trace.epochs.kept == 768).all())
        steps = build_steps([trace], trace.model.spec(), False)
        assert steps[0].observe and all(k == 768 for k in steps[-1].kept)
    finally:
        _registry._REGISTRY.pop("top-magnitude", None)
