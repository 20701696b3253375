"""Start-up time of commands that need no weights or traces, as a ratio to `python -c
"import torch"` measured in the same run (target: at most 0.35).

Usage: python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = (
    ["--help"],
    ["--version"],
    ["hw", "list"],
    ["models"],
    ["table7"],
    ["simulate", "--model", "llama-3.1-8b", "--hw", "l40s", "--gen-len", "2", "--quiet"],
)
TARGET_RATIO = 0.35


def seconds(argv: list[str], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch_s = seconds([sys.executable, "-c", "import torch"], args.repeats)
    print(f"python -c 'import torch': {torch_s:.3f} s (median of {args.repeats})")
    for command in COMMANDS:
        took = seconds([sys.executable, "-m", "dartsim", *command], args.repeats)
        ratio = took / torch_s
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER"
        label = " ".join(command[:1] if command[0] == "simulate" else command)
        print(f"dartsim {label:12s} {took:.3f} s = {ratio:.2f} x import torch ({verdict})")


if __name__ == "__main__":
    main()
