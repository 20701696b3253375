"""DART hyper-parameters, with the paper's values as defaults.

Sources: the DART paper (sections 3.1-3.3 and "Implementation Details") and, for the
published-code variant, shared/reference/dart-algorithm.md section 4.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dartsim.errors import UserError
from dartsim.trace.schema import DART_MODES

RECORD_MODES = DART_MODES
"""What `dartsim record --mode` records: DART; its first mask kept for the whole run (drift
is still checked and recorded, never acted on); or no mask at all (the reference is still
built, for Figure 5). The trace format names them (trace/schema.py)."""
MASK_APPLY = ("zero", "compact")
"""How a recorded mask is applied to the model: zeroing u, or slicing the kept weights."""

VARIANTS = ("paper", "published-code")
PRESETS = VARIANTS
"""Named sets of DART values (`dartsim record --preset`)."""
RANKINGS = ("sum-of-squares", "magnitude", "max", "mean", "combined", "product")
"""How neurons are scored: the paper's sum of u^2, or a ranking method of the published
code (dart/policy.py rank_scores)."""

PAPER_ALPHA_E = 0.25  # Eq. 5, paper section 4 "Implementation Details"
PAPER_ALPHA_L = 0.35
PAPER_BETA_E = 0.3
PAPER_BETA_L = 0.15
PAPER_DELTA = 0.5  # Eq. 7
PAPER_SPARSITY = 0.7  # Table 1's FFN sparsity
PUBLISHED_SPARSITY = 0.5  # the published code's default target
PUBLISHED_P_MIN = 0.1  # the published code's clip bounds (the paper gives none)
PUBLISHED_P_MAX = 0.9
PUBLISHED_TAU = 5
PUBLISHED_C0 = 1
PUBLISHED_ROUNDS = 10  # redistribution rounds of the published allocation
PUBLISHED_THRESHOLD_FLOOR = 0.1  # threshold mu - max(0.1 sigma, 0.1)
PUBLISHED_MASKING_STEP = 50  # run_knowledge_drift_multi_prompt.sh (run_knowledge_drift.sh: 30)
PUBLISHED_RANKING = "max"  # what the authors' drift scripts run; argparse's default is combined


@dataclass(frozen=True)
class DartParams:
    """Every knob of DART. `tau`, `reference_tokens`, `c0` and `prompt_in_reference` are
    left open by the paper; their defaults are dartsim's, chosen and documented in
    traces/README.md."""

    variant: str = "paper"
    sparsity: float = PAPER_SPARSITY
    tau: int = 10
    reference_tokens: int = 100
    delta: float = PAPER_DELTA
    c0: int = 8
    alpha_e: float = PAPER_ALPHA_E
    alpha_l: float = PAPER_ALPHA_L
    beta_e: float = PAPER_BETA_E
    beta_l: float = PAPER_BETA_L
    p_min: float = PUBLISHED_P_MIN
    p_max: float = PUBLISHED_P_MAX
    prompt_in_reference: bool = False
    masking_step: int = PUBLISHED_MASKING_STEP
    ranking: str = "sum-of-squares"
    retrigger: bool = True
    reproduce_published_defects: bool = True
    """published-code: reproduce the authors' two allocation defects (a shadowed loop
    variable gives layer 0 another layer's count; after a re-trigger the sensitivities are
    rotated by one layer); False corrects them."""

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise UserError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.ranking not in RANKINGS:
            raise UserError(f"ranking must be one of {', '.join(RANKINGS)}, got {self.ranking!r}")
        if self.variant == "paper" and self.ranking != "sum-of-squares":
            raise UserError(f"ranking {self.ranking!r} belongs to the published-code preset")
        if self.variant == "published-code" and not self.prompt_in_reference:
            raise UserError("the published code always scores the prompt; drop --no-prompt-in-reference")
        if not (0.0 <= self.sparsity < 1.0) or math.isnan(self.sparsity):
            raise UserError(f"sparsity must lie in [0, 1), got {self.sparsity}")
        for name in ("tau", "reference_tokens", "c0", "masking_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UserError(f"{name} must be a positive integer, got {value!r}")
        if self.tau > self.reference_tokens:
            raise UserError(f"tau={self.tau} is larger than the reference length T={self.reference_tokens}")
        if self.reference_tokens % self.tau:
            raise UserError(
                f"the reference length T={self.reference_tokens} must be a multiple of "
                f"tau={self.tau} (T = K tau windows)"
            )
        if self.delta < 0:
            raise UserError(f"delta must be zero or positive, got {self.delta}")
        for name in ("alpha_e", "alpha_l"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise UserError(f"{name} must lie in (0, 1), got {value}")
        if self.beta_e <= 0 or self.beta_l <= 0 or self.beta_e + self.beta_l > 1:
            raise UserError(
                f"beta_e and beta_l must be positive with beta_e + beta_l <= 1, got "
                f"{self.beta_e} and {self.beta_l}"
            )
        if not 0.0 <= self.p_min <= self.p_max < 1.0:
            raise UserError(f"need 0 <= p_min <= p_max < 1, got p_min={self.p_min}, p_max={self.p_max}")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def published_code(cls, **overrides: object) -> DartParams:
        """The published code's values (seeder-research/DART at 19c4a57): tau 5, fire at the
        first detection (c0 1), 50% sparsity, the first mask at forward masking_step from
        the prompt and the tokens generated before it, ranking `max`."""
        base: dict[str, object] = {
            "variant": "published-code",
            "sparsity": PUBLISHED_SPARSITY,
            "tau": PUBLISHED_TAU,
            "c0": PUBLISHED_C0,
            "ranking": PUBLISHED_RANKING,
            "prompt_in_reference": True,
            "masking_step": PUBLISHED_MASKING_STEP,
        }
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]

    @classmethod
    def preset(cls, name: str, **overrides: object) -> DartParams:
        """A named set of values: `paper` (the paper's where it gives them, dartsim's
        documented choices where it does not) or `published-code`."""
        if name == "published-code":
            return cls.published_code(**overrides)
        if name == "paper":
            return cls(**overrides)  # type: ignore[arg-type]
        raise UserError(f"unknown DART preset {name!r}; valid names: {', '.join(PRESETS)}")


@dataclass(frozen=True)
class DartSettings:
    """One DART recording's settings: the algorithm's parameters, how DART runs (`mode`:
    dart, static or dense) and how masks are applied to the model (`mask_apply`: zeroing u,
    or compact sliced weights; the same tokens either way)."""

    params: DartParams = DartParams()
    mode: str = "dart"
    mask_apply: str = "zero"

    def __post_init__(self) -> None:
        if self.mask_apply not in MASK_APPLY:
            raise UserError(f"--mask-apply must be one of {', '.join(MASK_APPLY)}, got {self.mask_apply!r}")
        if self.mode not in RECORD_MODES:
            raise UserError(f"mode must be one of {', '.join(RECORD_MODES)}, got {self.mode!r}")

    def dart_section(self) -> dict[str, object]:
        """The trace's `dart` section: every parameter, the mode and the mask application."""
        return {**self.params.as_dict(), "mode": self.mode, "mask_apply": self.mask_apply}
