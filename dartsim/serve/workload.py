"""The requests a server sees: when each arrives, its prompt and its output length.

Arrivals come from a process (Poisson at a rate, gamma with a burstiness coefficient of
variation, or a closed loop of a fixed number of users) or from a request-trace file.
Lengths come from fixed values, from a request-trace file's columns, or are drawn from the
shipped Azure conversation trace. Everything is seeded: the same arguments give the same
requests, bit for bit.

A request-trace file is CSV or JSON lines, one request per row, with an arrival column
(seconds, or timestamps as the Azure LLM inference traces give them: times are taken
relative to the first row), a prompt-token column and an output-token column, under any of
the names in `ARRIVAL_COLUMNS`, `PROMPT_COLUMNS` and `OUTPUT_COLUMNS` (the Azure traces'
`TIMESTAMP,ContextTokens,GeneratedTokens` and ShareGPT-derived length lists'
`input_len,output_len` load as they are). A file without an arrival column is a length
list: arrivals then come from the process.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

import numpy as np

from dartsim.errors import UserError
from dartsim.fileio import json_lines, read_text

ARRIVALS = ("poisson", "gamma", "closed")
"""Arrival processes: Poisson at `rate`; gamma inter-arrivals at `rate` with coefficient
of variation `cv` (1 is Poisson, above 1 bursty); a closed loop of `concurrency` users,
each sending its next request when the last one finishes."""

ARRIVAL_COLUMNS = ("arrival_s", "arrival_time", "arrival", "timestamp", "TIMESTAMP", "time")
PROMPT_COLUMNS = (
    "prompt_tokens",
    "input_len",
    "input_tokens",
    "prompt_len",
    "num_prompt_tokens",
    "ContextTokens",
    "context_tokens",
)
OUTPUT_COLUMNS = (
    "output_tokens",
    "output_len",
    "generated_tokens",
    "num_output_tokens",
    "GeneratedTokens",
    "completion_tokens",
)

SHIPPED_TRACES = {"azure-conv-2023": "azure-conv-2023.csv"}
"""Request traces inside the package (dartsim/data/requests/README.md: source, licence)."""

MAX_REQUESTS = 10_000_000
"""Most requests one run takes: a file or `--requests` beyond it is refused before any work
(10^7 requests of 8-byte fields are under 0.3 GB of arrays)."""
MAX_TRACE_BYTES = 1 << 30
"""Largest request-trace file read (1 GiB, about 30 million CSV rows)."""


@dataclass(frozen=True)
class Requests:
    """Requests in arrival order: arrival time (s, from 0; NaN in a closed loop, where
    arrivals follow completions), prompt tokens and output tokens (both >= 1)."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.prompt_tokens.size)


@dataclass(frozen=True)
class ArrivalProcess:
    kind: str = "poisson"
    rate_per_s: float | None = None
    cv: float = 1.0
    concurrency: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in ARRIVALS:
            raise UserError(f"arrival process must be one of {', '.join(ARRIVALS)}, got {self.kind!r}")
        if self.kind == "closed":
            if self.concurrency is None or self.concurrency < 1:
                raise UserError(f"a closed loop needs --concurrency >= 1, got {self.concurrency!r}")
            return
        rate = self.rate_per_s
        if rate is not None and (not math.isfinite(rate) or rate <= 0):
            raise UserError(f"--rate must be a positive number of requests per second, got {rate!r}")
        if not math.isfinite(self.cv) or self.cv <= 0:
            raise UserError(f"--cv must be a positive number, got {self.cv!r}")

    def times(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` arrival times from 0 (the first request arrives at 0)."""
        if self.kind == "closed":
            return np.full(count, np.nan)
        if self.rate_per_s is None:
            raise UserError(
                "arrivals need --rate (requests/s), --concurrency, or a --workload file with arrival times"
            )
        mean = 1.0 / self.rate_per_s
        if self.kind == "poisson":
            gaps = rng.exponential(mean, size=count)
        else:  # gamma with shape 1/cv^2 has mean `mean` and coefficient of variation cv
            shape = 1.0 / (self.cv * self.cv)
            gaps = rng.gamma(shape, mean / shape, size=count)
        gaps[0] = 0.0
        return np.cumsum(gaps)


def _column(header: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {h.strip().lower(): h for h in header}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _rows(text: str, where: str) -> tuple[list[str], list[dict[str, object]]]:
    """The file's header and rows (CSV, or JSON lines when it starts with '{')."""
    stripped = text.lstrip()
    if not stripped:
        raise UserError(f"{where}: the request trace is empty")
    if stripped.startswith("{"):
        rows = []
        for number, row in json_lines(text, where):
            if not isinstance(row, dict):
                raise UserError(f"{where}: line {number} is not a JSON object")
            rows.append(row)
        header = list(rows[0]) if rows else []
        return header, rows
    reader = csv.DictReader(io.StringIO(text))
    header = list(reader.fieldnames or [])
    return header, list(reader)


def _tokens(value: object, where: str, number: int, what: str) -> int:
    try:
        number_value = float(str(value))
    except ValueError:
        raise UserError(
            f"{where}: row {number}: {what} must be a whole number of tokens, got {value!r}"
        ) from None
    if not number_value.is_integer() or number_value < 1:
        raise UserError(f"{where}: row {number}: {what} must be a whole number >= 1, got {value!r}")
    return int(number_value)


def _seconds(values: list[object], where: str) -> np.ndarray:
    """Arrival times in seconds from the first: numbers, or ISO timestamps."""
    try:
        return np.array([float(str(v)) for v in values], dtype=np.float64) - float(str(values[0]))
    except ValueError:
        pass
    stamps = []
    for number, value in enumerate(values, 1):
        text = str(value).strip()
        head, _, frac = text.partition(".")
        try:  # the Azure traces give 7 fractional digits, beyond what fromisoformat takes
            stamp = datetime.fromisoformat(head).timestamp() + (float("0." + frac) if frac else 0.0)
        except ValueError:
            raise UserError(
                f"{where}: row {number}: arrival {value!r} is neither seconds nor a timestamp"
            ) from None
        stamps.append(stamp)
    out = np.array(stamps, dtype=np.float64)
    return out - out[0]


def read_request_file(path: str) -> Requests:
    """A request trace from `path` (or a shipped one by name): checked row by row."""
    if path in SHIPPED_TRACES:
        where = path
        text = resources.files("dartsim.data.requests").joinpath(SHIPPED_TRACES[path]).read_text("utf-8")
    else:
        where = path
        text = read_text(Path(path), "request trace", MAX_TRACE_BYTES)
    header, rows = _rows(text, where)
    if not rows:
        raise UserError(f"{where}: the request trace has no requests")
    if len(rows) > MAX_REQUESTS:
        raise UserError(f"{where}: {len(rows)} requests, more than the {MAX_REQUESTS} one run takes")
    prompt = _column(header, PROMPT_COLUMNS)
    output = _column(header, OUTPUT_COLUMNS)
    if prompt is None or output is None:
        raise UserError(
            f"{where}: needs a prompt-token column (one of {', '.join(PROMPT_COLUMNS)}) and an "
            f"output-token column (one of {', '.join(OUTPUT_COLUMNS)}); it has {', '.join(header)}"
        )
    prompts = np.array(
        [_tokens(r.get(prompt), where, i, prompt) for i, r in enumerate(rows, 1)], dtype=np.int64
    )
    outputs = np.array(
        [_tokens(r.get(output), where, i, output) for i, r in enumerate(rows, 1)], dtype=np.int64
    )
    arrival = _column(header, ARRIVAL_COLUMNS)
    if arrival is None:
        times = np.full(len(rows), np.nan)
    else:
        times = _seconds([r.get(arrival) for r in rows], where)
        if not np.all(np.isfinite(times)):
            raise UserError(f"{where}: arrival times must be finite numbers")
        backwards = np.nonzero(np.diff(times) < 0)[0]
        if backwards.size:
            row = int(backwards[0]) + 2
            raise UserError(
                f"{where}: row {row}: arrival times must not decrease (requests in arrival order)"
            )
    return Requests(times, prompts, outputs, where)


@dataclass(frozen=True)
class WorkloadSpec:
    """How to make the run's requests. `file` (a path or a shipped trace's name) gives
    lengths, and arrivals unless `use_file_arrivals` is off or it has none; otherwise
    `prompt_tokens`/`output_tokens` fix the lengths; with neither, lengths are drawn from
    the shipped Azure conversation trace."""

    arrival: ArrivalProcess
    requests: int | None = None
    file: str | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    use_file_arrivals: bool = True
    seed: int = 0

    def build(self, max_context: int) -> Requests:
        """The requests, checked against the model's context (`max_context` positions)."""
        if self.requests is not None and not 1 <= self.requests <= MAX_REQUESTS:
            raise UserError(f"--requests must lie in [1, {MAX_REQUESTS}], got {self.requests}")
        rng = np.random.default_rng(self.seed)
        fixed = self.prompt_tokens is not None or self.output_tokens is not None
        if fixed and (self.prompt_tokens is None or self.output_tokens is None):
            raise UserError("fixed lengths need both --prompt-len and --gen-len")
        if fixed:
            count = self.requests or 1000
            assert self.prompt_tokens is not None and self.output_tokens is not None
            prompts = np.full(count, self.prompt_tokens, dtype=np.int64)
            outputs = np.full(count, self.output_tokens, dtype=np.int64)
            times = self.arrival.times(count, rng)
            source = f"fixed {self.prompt_tokens} + {self.output_tokens} tokens"
        else:
            table = read_request_file(self.file or "azure-conv-2023")
            file_times = self.file is not None and self.use_file_arrivals and not np.isnan(table.arrival_s[0])
            if file_times and self.arrival.kind != "closed":
                count = min(self.requests or len(table), len(table))
                prompts, outputs = table.prompt_tokens[:count], table.output_tokens[:count]
                times = table.arrival_s[:count]
                source = f"{table.source} (its arrivals)"
            else:
                count = self.requests or len(table)
                pick = (
                    rng.integers(0, len(table), size=count)
                    if self.file is None
                    else np.arange(count) % len(table)
                )
                prompts, outputs = table.prompt_tokens[pick], table.output_tokens[pick]
                times = self.arrival.times(count, rng)
                how = "lengths drawn from" if self.file is None else "lengths from"
                source = f"{how} {table.source}"
        longest = prompts + outputs
        over = np.nonzero(longest > max_context)[0]
        if over.size:
            i = int(over[0])
            raise UserError(
                f"request {i + 1}: {int(prompts[i])} prompt + {int(outputs[i])} output tokens exceed "
                f"the model's context of {max_context} positions"
            )
        return Requests(np.asarray(times, dtype=np.float64), prompts, outputs, source)
