"""A small hand-made v1 trace for format tests (no model needed)."""

from __future__ import annotations

from typing import Any

import torch

from dartsim.trace.schema import FORMAT_NAME, SCHEMA_VERSION, new_policy_section, pack_mask


def tiny_trace(layers: int = 3, width: int = 20) -> dict[str, Any]:
    """Prefill of 6 tokens, 2 dense decode steps, then one mask epoch for 4 steps."""
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(1, layers, width, generator=gen) < 0.4
    kept = masks.sum(dim=-1).to(torch.int32)
    steps = 7
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "complete": True,
        "status": "complete",
        "synthetic": True,
        "created_by": "tests",
        "seed": 0,
        "versions": {"dartsim": "test"},
        "model": {
            "name": "tiny",
            "model_type": "llama",
            "num_layers": layers,
            "hidden_size": 8,
            "intermediate_size": width,
            "num_heads": 2,
            "num_kv_heads": 1,
            "head_dim": 4,
            "vocab_size": 32,
            "max_position_embeddings": 64,
            "source": "tests",
            "random_weights": True,
            "dtype": "fp32",
            "device": "cpu",
        },
        "generation": {
            "prompt": "p",
            "prompt_len": 6,
            "generated_len": 7,
            "stopped_at_eos": False,
            "prompt_ids": torch.arange(6),
            "generated_ids": torch.arange(7),
        },
        "dart": {"variant": "paper", "mode": "dart", "sparsity": 0.6},
        "policy": new_policy_section("dart", layers, 2),
        "steps": {
            "phase": torch.tensor([0, 1, 1, 1, 1, 1, 1], dtype=torch.uint8),
            "tokens": torch.tensor([6, 1, 1, 1, 1, 1, 1], dtype=torch.int32),
            "context_len": torch.arange(6, 6 + steps, dtype=torch.int32),
            "epoch": torch.tensor([-1, -1, -1, 0, 0, 0, 0], dtype=torch.int32),
            "time_s": torch.full((steps,), 0.01, dtype=torch.float64),
        },
        "epochs": {
            "first_step": torch.tensor([3], dtype=torch.int32),
            "last_step": torch.tensor([6], dtype=torch.int32),
            "trigger_step": torch.tensor([-1], dtype=torch.int32),
            "reference_tokens": torch.tensor([2], dtype=torch.int32),
            "build_time_s": torch.tensor([0.001], dtype=torch.float64),
            "kept": kept,
            "keep_ratio": kept.double() / width,
            "s_bar": torch.ones(1, layers, dtype=torch.float64),
            "importance": torch.ones(1, layers, dtype=torch.float64),
            "depth": torch.ones(1, layers, dtype=torch.float64),
            "pruning": 1 - kept.double() / width,
            "masks": pack_mask(masks),
        },
        "drift_checks": {
            "step": torch.tensor([5], dtype=torch.int32),
            "similarity": torch.tensor([0.9], dtype=torch.float64),
            "mu": torch.tensor([0.95], dtype=torch.float64),
            "sigma": torch.tensor([0.01], dtype=torch.float64),
            "threshold": torch.tensor([0.945], dtype=torch.float64),
            "counter": torch.tensor([1], dtype=torch.int32),
            "detected": torch.tensor([True]),
            "fired": torch.tensor([False]),
        },
        "retriggers": {"step": torch.zeros(0, dtype=torch.int32), "epoch": torch.zeros(0, dtype=torch.int32)},
        "figure5": {"window": 10, "similarity": torch.zeros(6, dtype=torch.float64)},
    }
