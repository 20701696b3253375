"""Reading a validation's mapping file: the YAML that says how published rows become runs."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from dartsim.errors import UserError
from dartsim.fileio import read_text


def read_mapping(
    path: str | None, default: str, fmt: str, what: str, required: Sequence[str]
) -> tuple[dict[str, Any], Path]:
    """(document, where) of the mapping at `path`, or of the shipped `default` beside this
    module; a file of another format or missing a `required` key is one line."""
    import yaml

    where = Path(path) if path else Path(str(resources.files("dartsim.validate").joinpath(default)))
    try:
        doc = yaml.safe_load(read_text(where))
    except yaml.YAMLError as exc:
        raise UserError(f"{where}: not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise UserError(f"{where}: not a dartsim {what} file (format: {fmt})")
    missing = [k for k in required if k not in doc]
    if missing:
        raise UserError(f"{where}: missing {', '.join(missing)}")
    return doc, where
