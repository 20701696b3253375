"""Reading YAML documents strictly: plain data only, duplicate keys refused, numbers as
a user means them, and a bounded size.

`yaml.safe_load` already refuses tags that construct Python objects. On top of it:
- a key given twice in one mapping is an error (YAML would silently keep the last);
- `1e-9` and `2E+3` are numbers (YAML 1.1 reads an exponent without a dot as a string);
- a file larger than `MAX_YAML_BYTES` is refused before it is parsed, a document of more
  than `MAX_YAML_NODES` nodes while it is built, and aliases (`*name`) are refused: a
  configuration never needs them, and nested aliases expand exponentially in whatever
  walks the document later.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dartsim.errors import UserError
from dartsim.fileio import read_text

MAX_YAML_BYTES = 1_000_000
"""A hardware file or study is a few kilobytes; a megabyte leaves a wide margin."""
MAX_YAML_NODES = 100_000
"""Nodes a document may build."""

_FLOAT = re.compile(r"^[-+]?(\d[\d_]*)?(\.\d*)?[eE][-+]?\d+$")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader with duplicate-key detection, exponent floats, a node budget and no
    aliases."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed in dartsim files", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        self._nodes += 1
        if self._nodes > MAX_YAML_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"the document expands to more than {MAX_YAML_NODES} nodes", node.start_mark
            )
        return super().construct_object(node, deep=deep)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_yaml(text: str, where: str) -> Any:
    """Parse one YAML document; syntax problems become one-line user errors."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise UserError(f"{where}: malformed YAML{line}: {problem}") from None
    except RecursionError:
        raise UserError(f"{where}: malformed YAML: nested too deeply") from None
    except ValueError as exc:  # int() of a number with thousands of digits
        digits = "digits" in str(exc)
        problem = "an integer with thousands of digits" if digits else str(exc)
        raise UserError(f"{where}: malformed YAML: {problem}") from None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file of at most `MAX_YAML_BYTES`."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    if not path.is_file():
        raise UserError(f"{path}: not a regular file")
    if size > MAX_YAML_BYTES:
        raise UserError(f"{path}: {size} bytes is too large for a YAML file (limit {MAX_YAML_BYTES})")
    return parse_yaml(read_text(path, "YAML file", MAX_YAML_BYTES), str(path))
