"""Zeroing u vs compact sliced weights for one Llama-3.1-8B-shaped SwiGLU FFN on this CPU
(d = 4096, m = 14336, fp32), at several kept fractions. Prints milliseconds per call and
the speedup of the compact path, and checks both give the same output.

Usage: python benchmarks/mask_apply.py [--tokens 1] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as functional

D, M = 4096, 14336  # Llama-3.1-8B hidden size and FFN width (models_cfg/llama-3.1-8b.json)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    gate = torch.randn(M, D, generator=gen) / D**0.5
    up = torch.randn(M, D, generator=gen) / D**0.5
    down = torch.randn(D, M, generator=gen) / M**0.5
    x = torch.randn(args.tokens, D, generator=gen)

    def zeroed(mask: torch.Tensor) -> torch.Tensor:
        u = functional.silu(x @ gate.T) * (x @ up.T)
        return (u * mask) @ down.T

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        fn()
        start = time.perf_counter()
        for _ in range(args.repeats):
            fn()
        return (time.perf_counter() - start) / args.repeats

    print(f"8B-shaped FFN, {args.tokens} token(s), fp32, {torch.get_num_threads()} threads")
    for keep in (0.5, 0.3, 0.1):
        idx = torch.sort(torch.randperm(M, generator=gen)[: int(keep * M)]).values
        mask = torch.zeros(M)
        mask[idx] = 1
        g, u_, dn = gate[idx].contiguous(), up[idx].contiguous(), down[:, idx].contiguous()

        def compact(g=g, u_=u_, dn=dn) -> torch.Tensor:  # type: ignore[no-untyped-def]
            return (functional.silu(x @ g.T) * (x @ u_.T)) @ dn.T

        diff = float((zeroed(mask) - compact()).abs().max())
        tz, tc = timed(lambda mask=mask: zeroed(mask)), timed(compact)
        print(
            f"keep {keep:.1f}: zeroing u {tz * 1e3:7.2f} ms, compact {tc * 1e3:7.2f} ms, "
            f"speedup {tz / tc:5.2f}x, max |diff| {diff:.1e}"
        )


if __name__ == "__main__":
    main()
