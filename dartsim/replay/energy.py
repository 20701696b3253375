"""A run's energy: each layer part, each component and the totals, from the counts replay
already has (engine/energy.py charges them).

Every figure is for one device, as bytes and FLOPs are (a TP group's devices each do
their shard); `energy_per_token_j` is for all `tp` devices together, what a generated token
costs. The parts add up: attention and MLP are their layers' sums, `other` is charged the
rest of the bytes, FLOPs and time plus every link and host byte (the all-reduces and the
mask uploads are not split per layer), and the totals are the three components' sum.
Every FLOP is charged at the tensor rate of the run's GEMM format (attention scores in
another format, and vector work, are charged at it too: docs/energy.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dartsim.engine.energy import ZERO, Counts, Energy, energy
from dartsim.replay.result import COMPONENTS, PARTS, Layer, RunResult
from dartsim.specs.hardware import HardwareSpec


def with_energy(
    run: RunResult,
    hw: HardwareSpec,
    flop_format: str,
    tp: int,
    prefill: tuple[int, int, float, int] = (0, 0, 0.0, 0),
) -> RunResult:
    """`run` with energy in every layer part, component and the totals, and its top-level
    energy fields (None where the hardware file has no energy section). `prefill`: the
    prefill steps' (bytes, FLOPs, seconds, link bytes), whose energy is given apart; the
    decode steps, the requests' handling and the mask builds make the rest."""
    spec = hw.energy
    if spec is None:
        return replace(run, power=energy_summary(run, hw, tp) | dict.fromkeys(PHASE_KEYS))
    layers = []
    for row in run.layers:
        parts = {
            name: replace(p, energy=energy(spec, Counts(p.bytes, p.flops, p.time_s), flop_format))
            for name, p in (("attention", row.attention), ("mlp", row.mlp))
        }
        layers.append(Layer(row.layer, parts["attention"], parts["mlp"]))
    host = sum(b.host_bytes for b in run.mask_builds)
    comps = {}
    for name, c in run.components.items():
        if name in PARTS:
            e = ZERO
            for row in layers:
                layer_part = row.part(name).energy
                assert layer_part is not None  # set just above
                e = e + layer_part
        else:
            e = energy(spec, Counts(c.bytes, c.flops, c.time_s, run.totals.link_bytes, host), flop_format)
        comps[name] = replace(c, energy=e)
    total = ZERO
    for name in COMPONENTS:
        part = comps[name].energy
        assert part is not None  # set just above
        total = total + part
    done = replace(run, layers=tuple(layers), components=comps, totals=replace(run.totals, energy=total))
    first = energy(spec, Counts(prefill[0], prefill[1], prefill[2], prefill[3]), flop_format)
    phases = {"energy_prefill_j": first.j, "energy_decode_j": total.j - first.j}
    return replace(done, power=energy_summary(done, hw, tp) | phases)


PHASE_KEYS = ("energy_prefill_j", "energy_decode_j")
"""One device's joules in the prefill steps and in the rest (decode steps, request handling,
mask builds): prefill and generation apart, as MLCommons asks (mlcommons/inference#2558)."""


def energy_summary(run: RunResult, hw: HardwareSpec, tp: int) -> dict[str, Any]:
    """The run's top-level energy fields (None without an energy section): joules per
    generated token for all `tp` devices, the average power of one device and whether it
    exceeds the board's power limit (the device would then clock down, which the time
    model does not do)."""
    e: Energy | None = run.totals.energy
    spec = hw.energy
    if e is None or spec is None or not run.tokens or run.totals.time_s <= 0:
        return {
            "energy_per_token_j": None,
            "energy_per_token_j_low": None,
            "energy_per_token_j_high": None,
            "avg_power_w": None,
            "board_power_w": None if spec is None else spec.board_power_w,
            "over_board_power": None,
        }
    per_token = Energy(e.j * tp / run.tokens, e.low_j * tp / run.tokens, e.high_j * tp / run.tokens)
    power = e.j / run.totals.time_s
    return {
        **per_token.fields("energy_per_token_j"),
        "avg_power_w": power,
        "board_power_w": spec.board_power_w,
        "over_board_power": power > spec.board_power_w,
    }
