"""Reading one hardware or stack file's values: each YAML leaf checked against its schema field
(type, range, the formats a rate table may list) and converted to SI, and a mapping's
keys checked against those allowed; every error names the file and the dotted field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dartsim.errors import UserError
from dartsim.specs.hardware_schema import RETIRED_KEYS, TENSOR_DTYPES, Field
from dartsim.text import brief


class FieldReader:
    """Validates one parsed YAML document, naming the file and dotted field on errors."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, path: str, message: str) -> UserError:
        return UserError(f"{self.where}: field {path!r} {message}")

    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            label = path or "top level"
            raise UserError(f"{self.where}: {label} must be a mapping, got {brief(value)}")
        return value

    def check_keys(self, mapping: dict[str, Any], allowed: set[str], prefix: str) -> None:
        for key in mapping:
            if key not in allowed:
                hint = RETIRED_KEYS.get(str(key))
                extra = f": {hint}" if hint else f" (allowed: {', '.join(sorted(allowed))})"
                raise UserError(f"{self.where}: unknown key {prefix + str(key)!r}{extra}")

    def leaf(self, field: Field, raw: Any) -> Any:
        """The SI value of one field, or an error naming it."""
        path = field.path
        if field.kind == "text":
            if not isinstance(raw, str) or not raw.strip():
                raise self.fail(path, f"must be a non-empty string, got {brief(raw)}")
            return raw
        if field.kind == "flag":
            if not isinstance(raw, bool):
                raise self.fail(path, f"must be true or false, got {brief(raw)}")
            return raw
        if field.kind == "choice":
            if raw not in field.choices:
                raise self.fail(path, f"must be one of {', '.join(field.choices)}, got {brief(raw)}")
            return raw
        if field.kind == "rates":
            table = self.mapping(raw, path)
            self.check_keys(table, set(TENSOR_DTYPES), path + ".")
            if not table:
                raise self.fail(path, "must list at least one format")
            number = Field(path, path, "number", field.scale, field.low, field.high, field.why)
            return {
                name: self.number(number, table[name], f"{path}.{name}")
                for name in TENSOR_DTYPES
                if name in table
            }
        return self.number(field, raw, path)

    def number(self, field: Field, raw: Any, path: str) -> float | int:
        if field.kind == "integer":
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise self.fail(path, f"must be a positive integer, got {brief(raw)}")
        elif isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise self.fail(path, f"must be a number, got {brief(raw)}")
        try:
            value = float(raw)
        except OverflowError:
            raise self.fail(path, f"must be at most {field.high:g} ({field.why}), got {brief(raw)}") from None
        if not math.isfinite(value):
            raise self.fail(path, f"must be finite, got {brief(raw)}")
        assert field.low is not None and field.high is not None
        if field.kind == "fraction" and not 0 < value <= 1:
            raise self.fail(path, f"is an efficiency factor and must lie in (0, 1], got {brief(raw)}")
        if field.low_open and value <= field.low:
            raise self.fail(path, f"must be positive and finite, got {brief(raw)}")
        if not field.low_open and value < field.low:
            what = "a positive integer" if field.kind == "integer" else "zero or positive"
            raise self.fail(path, f"must be {what}, got {brief(raw)}")
        if value > field.high:
            raise self.fail(path, f"must be at most {field.high:g} ({field.why}), got {brief(raw)}")
        if field.kind == "integer":
            return int(raw)
        return value * field.scale

    def sections_and_sources(
        self, top: dict[str, Any], sections: Sequence[str], fields: Sequence[Any], required: Sequence[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Every section's mapping (dotted names for nested ones) and every source: each
        section needs its own `source`, the `required` fields a `<field>_source` too; keys
        other than the section's fields, subsections and their sources are refused."""
        docs: dict[str, dict[str, Any]] = {"": top}
        for section in sections:
            parent, _, key = section.rpartition(".")
            if key not in docs[parent]:
                raise UserError(f"{self.where}: missing key {section!r}")
            docs[section] = self.mapping(docs[parent][key], section)
        sources: dict[str, str] = {}
        for section in sections:
            doc = docs[section]
            leaves = {f.key for f in fields if f.section == section}
            children = {s.rpartition(".")[2] for s in sections if s.rpartition(".")[0] == section}
            self.check_keys(
                doc, leaves | children | {"source"} | {f"{k}_source" for k in leaves}, section + "."
            )
            if "source" not in doc:
                raise UserError(f"{self.where}: missing key {section + '.source'!r}")
            for key in sorted(k for k in doc if k == "source" or k.endswith("_source")):
                text = doc[key]
                if not isinstance(text, str) or not text.strip():
                    raise self.fail(f"{section}.{key}", f"must be a non-empty string, got {brief(text)}")
                sources[section if key == "source" else f"{section}.{key.removesuffix('_source')}"] = text
        for needed in required:
            if needed not in sources:
                raise UserError(f"{self.where}: missing key {needed + '_source'!r}")
        return docs, sources
