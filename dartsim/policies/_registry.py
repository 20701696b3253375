"""The policy registry: every sparsity system dartsim records and replays is one module of
this package (or, for DART, one subpackage) that defines a `Policy` subclass and
registers an instance of it.

A policy says, in one place, both how it records (a `Controller` driven by the one token
loop, record/loop.py) and how replay charges its traces (the traits and `costs` below,
read by replay/). Nothing outside this package switches on a policy's name. Modules are
found by listing the package: adding a policy is adding a module (README, "Adding a
policy"). Importing a policy module does not import torch; its recording code does, when
it runs.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from dartsim.errors import UserError
from dartsim.workload.policy_costs import PolicyCosts
from dartsim.workload.sparse_storage import TWO_FOUR_DENSITY, WeightStorage

if TYPE_CHECKING:
    from dartsim.policies._calibration import CalibrationStats
    from dartsim.record.loop import Controller
    from dartsim.record.model import LoadedModel
    from dartsim.specs.model import ModelSpec
    from dartsim.trace.types import PolicySection, Trace

PRUNES = ("nothing", "ffn-neurons", "weights", "heads+ffn-neurons")
"""What a policy removes."""
DEFAULT_SPARSITY = 0.5
"""`record --policy` default for every policy but DART (which has its own)."""
DEFAULT_HEAD_SPARSITY = 0.25
DEFAULT_RANK = 64
"""Predictor rank; Deja Vu's MLP predictors have a hidden width of about 1000 for OPT-175B
(d = 12288), i.e. d/12; 64 is d/9 for SmolLM2 (d = 576)."""
DEFAULT_CORE_FRACTION = 0.5
"""KG-DS: share of each layer's kept neurons reserved for the knowledge core (the proposal
gives no value)."""
UNSTRUCTURED_FORMATS = ("bitmap", "csr")


@dataclass(frozen=True)
class PolicySettings:
    """The options a policy may take (each policy reads the ones that apply to it).
    `sparsity` is the fraction pruned of what the policy prunes (FFN neurons, or weights
    for wanda)."""

    sparsity: float = DEFAULT_SPARSITY
    head_sparsity: float = DEFAULT_HEAD_SPARSITY
    """dsgp: fraction of attention heads pruned per layer."""
    oracle: bool = False
    """dejavu: choose each token's neurons from its true activations (an upper bound)."""
    rank: int = DEFAULT_RANK
    core_fraction: float = DEFAULT_CORE_FRACTION
    weight_format: str = "bitmap"
    """wanda: how the pruned weights are stored (bitmap or csr)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0 or math.isnan(self.sparsity):
            raise UserError(f"--sparsity must lie in [0, 1), got {self.sparsity}")
        if not 0.0 <= self.head_sparsity < 1.0 or math.isnan(self.head_sparsity):
            raise UserError(f"--head-sparsity must lie in [0, 1), got {self.head_sparsity}")
        if self.rank < 1:
            raise UserError(f"--predictor-rank must be positive, got {self.rank}")
        if not 0.0 <= self.core_fraction <= 1.0:
            raise UserError(f"--core-fraction must lie in [0, 1], got {self.core_fraction}")
        if self.weight_format not in UNSTRUCTURED_FORMATS:
            raise UserError(f"--weight-format must be one of {', '.join(UNSTRUCTURED_FORMATS)}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Policy(ABC):
    """One sparsity system. Subclasses set the class attributes and implement `recorder`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    """One line for `--help` and reports."""
    prunes: ClassVar[str]
    """What it removes (one of PRUNES)."""
    per_input: ClassVar[bool]
    """Whether part of its choice depends on the input (then it is recorded per prompt)."""
    order: ClassVar[int]
    """Where it stands in listings."""

    # -- how replay charges its traces ------------------------------------------------------
    per_token: ClassVar[bool] = False
    """Its mask changes every token by design: a predictor runs before every FFN, the kept
    rows are gathered, and no mask is ever built or installed."""
    scores_prompt: ClassVar[bool] = False
    """Its prefill scores the prompt's activations (a dense, observed forward)."""
    offline_masks: ClassVar[bool] = False
    """Its masks were computed offline: a mask switch installs one, without a top-k."""

    # -- how it records ---------------------------------------------------------------------
    needs_calibration: ClassVar[bool] = False
    """It learns offline from the shipped calibration text (policies/_calibration.py)."""
    options: ClassVar[frozenset[str]] = frozenset({"sparsity"})
    """The `record` options (by their destination names) this policy takes; giving it
    another policy's option is an error."""

    def observes(self, trace: Trace, epoch: int, phase: str) -> bool:
        """Whether a step of `trace` in `phase` under mask `epoch` runs observation work
        (scoring activations) besides the forward."""
        return self.scores_prompt and phase == "prefill"

    def costs(self, section: PolicySection, source_hidden: int, target: ModelSpec) -> PolicyCosts:
        """What a trace recorded under this policy costs at replay beyond its kept FFN
        neurons, on `target` (recorded on a model of width `source_hidden`): weight
        storage, a per-token predictor (its rank kept relative to the width), a prompt
        classifier, and how a mask switch is built."""
        fmt = section.weight_format
        density = float(section.weight_density.mean()) if fmt != "dense" else 1.0
        if fmt == "2:4":
            density = TWO_FOUR_DENSITY
        params = section.params
        rank = int(params.get("predictor_rank", 0))
        if rank:
            rank = max(1, math.ceil(rank * target.hidden_size / source_hidden))
        return PolicyCosts(
            weights=WeightStorage(fmt, density),
            predictor_rank=rank,
            build_topk=not self.offline_masks,
            classifier_classes=int(params.get("classifier_classes", 0)),
            per_token=self.per_token,
        )

    def settings(self, options: Mapping[str, Any]) -> Any:
        """The policy's settings from option values (None: not given, the default)."""
        return PolicySettings(**{k: v for k, v in options.items() if k in self.options and v is not None})

    def effective_sparsity(self, settings: Any) -> float:
        """The fraction it prunes with `settings` (what reports and labels print)."""
        return float(settings.sparsity)

    def params(self, settings: Any) -> dict[str, Any]:
        """What the trace records under policy.params: the settings that apply."""
        return {"sparsity": self.effective_sparsity(settings)}

    def label(self, settings: Any) -> str:
        return f"{self.name} {self.effective_sparsity(settings):.0%}"

    @abstractmethod
    def recorder(self, loaded: LoadedModel, settings: Any, stats: CalibrationStats | None) -> PolicyRecorder:
        """The policy prepared on a loaded model (offline state built once: pruned weights,
        fitted predictors, category masks), ready to record any number of prompts."""


class PolicyRecorder(ABC):
    """A policy prepared on one loaded model; `controller` makes one recording's Controller."""

    policy: Policy
    settings: Any

    @abstractmethod
    def controller(self, builder: Any) -> Controller:
        """A fresh controller for one recording into `builder` (a record/builder.py TraceBuilder)."""

    def label(self) -> str:
        return self.policy.label(self.settings)

    def close(self) -> None:
        """Undo everything done to the model (hooks, pruned weights). Default: nothing."""
        return None


_REGISTRY: dict[str, Policy] = {}
_DISCOVERED = False


def register(policy: Policy) -> Policy:
    """Add `policy` to the registry (each policy module calls this once)."""
    name = getattr(policy, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{type(policy).__name__} has no name")
    if policy.prunes not in PRUNES:
        raise ValueError(f"policy {name}: prunes must be one of {PRUNES}, got {policy.prunes!r}")
    if name in _REGISTRY and type(_REGISTRY[name]) is not type(policy):
        raise ValueError(f"two policies are named {name!r}")
    _REGISTRY[name] = policy
    return policy


def _discover() -> None:
    """Import every policy module of this package once (those not starting with `_`)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    package = importlib.import_module("dartsim.policies")
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"dartsim.policies.{info.name}")
    _DISCOVERED = True


def policies() -> Mapping[str, Policy]:
    """Every registered policy by name, in listing order."""
    _discover()
    return {p.name: p for p in sorted(_REGISTRY.values(), key=lambda p: (p.order, p.name))}


def policy_names() -> list[str]:
    """Every registered policy's name, in listing order."""
    return list(policies())


def get_policy(name: str) -> Policy:
    """The policy called `name`; a miss lists the valid names."""
    known = policies()
    try:
        return known[name]
    except KeyError:
        raise UserError(f"unknown policy {name!r}; choose one of {', '.join(known)}") from None


def policies_help() -> str:
    """One line per policy, for `--help`."""
    known = policies()
    width = max(len(n) for n in known)
    return "\n".join(f"  {p.name:<{width}}  {p.summary}" for p in known.values())
