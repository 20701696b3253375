"""Model specifications, read from Hugging Face `config.json` files.

dartsim models Llama-family decoders: GQA attention with RoPE, a SwiGLU FFN and RMSNorm.
That covers the model types llama, mistral, qwen2 and qwen3; any other architecture is
rejected by name rather than costed wrongly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dartsim.errors import UserError, unknown_name
from dartsim.fileio import read_text
from dartsim.text import brief

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
"""Decoders whose blocks are RMSNorm -> GQA attention -> RMSNorm -> SwiGLU FFN."""

MODELS_CFG_ENV = "DARTSIM_MODELS_CFG"
"""Environment variable that points at another folder of preset config.json files."""


def models_cfg_dir() -> Path:
    """The folder holding the preset config.json files (`models_cfg/` in the repository)."""
    override = os.environ.get(MODELS_CFG_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "models_cfg"


@dataclass(frozen=True)
class ModelSpec:
    """The shapes of a decoder that the cost model needs, with HF's field meanings.

    Attributes:
        name: preset name or the config file's stem.
        model_type: HF `model_type` (llama, mistral, qwen2, qwen3).
        num_layers: decoder blocks L.
        hidden_size: residual width d.
        intermediate_size: FFN width m (neurons per layer that DART can mask).
        num_heads: query heads H.
        num_kv_heads: key/value heads (GQA groups).
        head_dim: width of one head; H * head_dim may differ from d (Qwen3).
        vocab_size: embedding rows V.
        tie_word_embeddings: lm_head shares the embedding matrix.
        attention_bias: q/k/v projections carry a bias (Qwen2).
        mlp_bias: gate/up/down carry a bias.
        qk_norm: per-head RMSNorm on q and k before RoPE (Qwen3).
        max_position_embeddings: longest context the model was built for.
        source: where the spec was read from.
    """

    name: str
    model_type: str
    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    attention_bias: bool
    mlp_bias: bool
    qk_norm: bool
    max_position_embeddings: int
    source: str

    @property
    def q_width(self) -> int:
        """Output width of q_proj: H * head_dim."""
        return self.num_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Output width of k_proj and of v_proj: KV heads * head_dim."""
        return self.num_kv_heads * self.head_dim

    def attention_params_per_layer(self) -> int:
        """Parameters of one attention block: q, k, v, o projections (+ biases, qk-norms)."""
        d = self.hidden_size
        params = d * self.q_width + 2 * d * self.kv_width + self.q_width * d
        if self.attention_bias:
            params += self.q_width + 2 * self.kv_width
        if self.qk_norm:
            params += 2 * self.head_dim
        return params

    def mlp_params_per_layer(self, kept_neurons: int | None = None) -> int:
        """Parameters of one SwiGLU FFN with `kept_neurons` of its m neurons (all by default)."""
        k = self.intermediate_size if kept_neurons is None else kept_neurons
        params = 3 * self.hidden_size * k
        if self.mlp_bias:
            params += 2 * k + self.hidden_size
        return params

    def norm_params_per_layer(self) -> int:
        """The two RMSNorm weight vectors of a block."""
        return 2 * self.hidden_size

    def embedding_params(self) -> int:
        """Input embedding, plus the lm_head when it is not tied to it."""
        table = self.vocab_size * self.hidden_size
        return table if self.tie_word_embeddings else 2 * table

    def total_params(self) -> int:
        """All parameters, the final norm included."""
        per_layer = (
            self.attention_params_per_layer() + self.mlp_params_per_layer() + self.norm_params_per_layer()
        )
        return self.num_layers * per_layer + self.embedding_params() + self.hidden_size


DEFAULT_MAX_POSITIONS = 2048
"""Context length assumed when a config does not give max_position_embeddings (Llama 1)."""

_INT_FIELDS = (
    "num_hidden_layers",
    "hidden_size",
    "intermediate_size",
    "num_attention_heads",
    "vocab_size",
)


MODEL_FIELD_LIMITS: dict[str, tuple[int, str]] = {
    "num_hidden_layers": (1024, "the deepest published decoders have about 130 layers"),
    "hidden_size": (1 << 17, "published decoders stay below 32k"),
    "intermediate_size": (1 << 20, "published FFNs stay below 64k neurons"),
    "num_attention_heads": (1 << 12, "published decoders have at most a few hundred heads"),
    "num_key_value_heads": (1 << 12, "published decoders have at most a few hundred heads"),
    "head_dim": (1 << 12, "published heads are 64 to 256 wide"),
    "vocab_size": (1 << 22, "published vocabularies stay below 300k tokens"),
    "max_position_embeddings": (1 << 24, "a 16M-token context is far beyond any published model"),
}
"""Upper bounds on config fields: generous enough for any real model, small enough that a
hostile or mistyped file cannot make dartsim allocate or loop without end."""


def _positive_int(raw: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    if key not in raw and default is None:
        raise UserError(f"{where}: missing field {key!r}")
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{where}: field {key!r} must be a positive integer, got {brief(value)}")
    limit, why = MODEL_FIELD_LIMITS[key]
    if value > limit:
        raise UserError(f"{where}: field {key!r} = {brief(value)} exceeds {limit} ({why})")
    return value


def model_spec_from_config(raw: dict[str, Any], name: str, where: str) -> ModelSpec:
    """Validate a parsed config.json and build the spec; errors name `where` and the field."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    model_type = raw.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UserError(
            f"{where}: model_type {model_type!r} is not a supported Llama-family decoder "
            f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise UserError(f"{where}: field 'hidden_act' must be 'silu' (SwiGLU), got {act!r}")
    values = {key: _positive_int(raw, key, where) for key in _INT_FIELDS}
    heads = values["num_attention_heads"]
    kv_heads = _positive_int(raw, "num_key_value_heads", where, default=heads)
    if heads % kv_heads:
        raise UserError(
            f"{where}: num_attention_heads={heads} is not divisible by num_key_value_heads={kv_heads}"
        )
    if raw.get("head_dim") is None:
        if values["hidden_size"] % heads:
            raise UserError(
                f"{where}: hidden_size={values['hidden_size']} is not divisible by "
                f"num_attention_heads={heads} and no head_dim is given"
            )
        head_dim = values["hidden_size"] // heads
    else:
        head_dim = _positive_int(raw, "head_dim", where)
    max_pos = _positive_int(raw, "max_position_embeddings", where, default=DEFAULT_MAX_POSITIONS)
    # Qwen2 projections carry q/k/v biases without saying so in the config.
    attention_bias = bool(raw.get("attention_bias", model_type == "qwen2"))
    return ModelSpec(
        name=name,
        model_type=model_type,
        num_layers=values["num_hidden_layers"],
        hidden_size=values["hidden_size"],
        intermediate_size=values["intermediate_size"],
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=values["vocab_size"],
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        attention_bias=attention_bias,
        mlp_bias=bool(raw.get("mlp_bias", False)),
        qk_norm=model_type == "qwen3",
        max_position_embeddings=max_pos,
        source=where,
    )


def preset_names() -> list[str]:
    """Names of the model presets (config files in `models_cfg/`), sorted."""
    folder = models_cfg_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json"))


MAX_CONFIG_BYTES = 1 << 20
"""A config.json is a few kilobytes; a megabyte leaves a wide margin."""


def read_config_json(path: Path) -> dict[str, Any]:
    """Parse a config.json, turning I/O and syntax problems into one-line user errors."""
    text = read_text(path, "model config", MAX_CONFIG_BYTES)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    except RecursionError:
        raise UserError(f"{path}: malformed JSON: nested too deeply") from None
    except ValueError as exc:  # an integer of thousands of digits
        raise UserError(f"{path}: malformed JSON: {exc}") from None


def load_model_spec(name_or_path: str) -> ModelSpec:
    """A preset name (`llama-3.1-8b`) or a path to any HF config.json of a supported decoder.

    A path may also be a model directory holding a config.json.
    """
    candidate = Path(name_or_path)
    looks_like_path = candidate.suffix == ".json" or os.sep in name_or_path or candidate.exists()
    if looks_like_path:
        if candidate.is_dir():
            candidate = candidate / "config.json"
        raw = read_config_json(candidate)
        stem = candidate.parent.name if candidate.name == "config.json" else candidate.stem
        return model_spec_from_config(raw, stem, str(candidate))
    key = name_or_path.lower()
    names = preset_names()
    if key not in names:
        raise unknown_name("model", name_or_path, names)
    path = models_cfg_dir() / f"{key}.json"
    return model_spec_from_config(read_config_json(path), key, str(path))
