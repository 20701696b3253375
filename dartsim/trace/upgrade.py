"""The one place that knows older trace versions: a validated mapping of any readable
version becomes a mapping of the current one, so that no reader branches on versions.

v1 -> v2: v1 traces were all recorded by DART; they gain the `policy` section a v2
trace carries (policy `dart`, or `dense` for DART's dense mode), with every head and
every weight kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dartsim.trace.schema import SCHEMA_VERSION


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    m = raw["model"]
    mode = raw.get("dart", {}).get("mode", "dart")
    return {
        **raw,
        "schema_version": 2,
        "policy": {
            "name": "dense" if mode == "dense" else "dart",
            "params": {},
            "head_masks": np.ones((m["num_layers"], m["num_heads"]), dtype=bool),
            "weight_format": "dense",
            "weight_density": np.ones(m["num_layers"], dtype=np.float64),
        },
    }


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _v1_to_v2}
"""From each older version to the next one."""


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` (validated) at the current schema version; the input is not modified."""
    version = raw["schema_version"]
    while version < SCHEMA_VERSION:
        raw = UPGRADES[version](raw)
        version = raw["schema_version"]
    return raw
