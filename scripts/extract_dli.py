"""Write dartsim/validate/dli-trt090.csv: the lines of NVIDIA's TensorRT-LLM 0.9.0 DLI
datasheet that dartsim validates against, verbatim, each with its line number.

The datasheet is `code/ch10_inference/inference_gpu_cluster_sizing/dataset/trt_llm_0_9_0_dli.csv`
at commit 0e25b2e236211ad01ed2221bd2c1cfa5b3f47b55 of github.com/wbing520/ai-performance-engineering
(`git show 0e25b2e:<path> > trt_llm_0_9_0_dli.csv`). A line is kept when its device and model
have dartsim presets (dartsim/validate/dli.py: DEVICES, MODELS), pipeline parallelism is 1 and
it has a result; dli.py turns each kept line into its ttft and tpot rows.

    python scripts/extract_dli.py trt_llm_0_9_0_dli.csv > dartsim/validate/dli-trt090.csv
"""

from __future__ import annotations

import csv
import sys

from dartsim.validate.dli import DEVICES, MODELS, PRECISIONS


def main(path: str) -> int:
    with open(path, newline="") as handle:
        lines = handle.read().split("\n")
    lines = [line.removesuffix("\r") for line in lines if line]
    header = next(csv.reader([lines[0]]))
    out = ["source_line," + lines[0]]
    for number, line in enumerate(lines[1:], start=2):
        r = dict(zip(header, next(csv.reader([line])), strict=True))
        keep = (
            r["GPU"] in DEVICES
            and r["Model"] in MODELS
            and r["Precision"] in PRECISIONS
            and r["Pipeline Model Parallel Size"] == "1"
            and (r["1st Token Latency (ms)"] or r["Token-to-token Latency (ms)"])
        )
        if keep:
            out.append(f"{number},{line}")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
