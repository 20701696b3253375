"""Overhead of tracing in `dartsim record`: tokens/s of the same masked generation with and
without trace bookkeeping, on the bundled SmolLM2 on this CPU; and trace bytes per 1k
tokens. Target: tracing costs at most 10% of wall time.

Usage: python benchmarks/record_overhead.py [--tokens 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import statistics

import torch

from dartsim.policies.dart import DartParams, record_dart
from dartsim.record.loop import GenerationOptions
from dartsim.record.model import load_for_recording
from dartsim.record.prompts import TWO_TOPIC_PROMPT


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    loaded = load_for_recording(None, "cpu", 0)
    params = DartParams(sparsity=0.5)
    options = GenerationOptions(max_new_tokens=args.tokens, min_new_tokens=args.tokens)
    record_dart(loaded, TWO_TOPIC_PROMPT, params, options, None, trace_enabled=False)  # warm-up
    traced, untraced = [], []
    size = 0
    for _ in range(args.repeats):
        # Alternate so that drift in machine load hits both sides alike.
        plain = record_dart(loaded, TWO_TOPIC_PROMPT, params, options, None, trace_enabled=False)
        untraced.append(plain.generated / plain.seconds)
        result = record_dart(loaded, TWO_TOPIC_PROMPT, params, options, None, trace_enabled=True)
        traced.append(result.generated / result.seconds)
        buffer = io.BytesIO()
        torch.save(result.trace.to_dict(), buffer)
        size = len(buffer.getvalue())
    t, u = statistics.median(traced), statistics.median(untraced)
    overhead = (1 / t - 1 / u) / (1 / u)
    print(f"masked generation without tracing: {u:.2f} tokens/s (median of {args.repeats})")
    print(f"dartsim record with tracing:       {t:.2f} tokens/s")
    print(f"tracing overhead:                  {overhead:+.1%} of wall time (target <= 10%)")
    print(f"trace size:                        {size * 1000 / args.tokens / 1024:.1f} KiB per 1k tokens")


if __name__ == "__main__":
    main()
