"""The TensorRT-LLM 0.9.0 rows of the published set, read from the datasheet's own lines.

`dli-trt090.csv` beside this module holds, verbatim, the lines of NVIDIA's DLI course
datasheet `trt_llm_0_9_0_dli.csv` (github.com/wbing520/ai-performance-engineering, commit
0e25b2e2, code/ch10_inference/inference_gpu_cluster_sizing/dataset/) whose device and
model have presets, each prefixed by its line number in that file (scripts/extract_dli.py
wrote it). Every line gives up to two rows:
- ttft: '1st Token Latency (ms)' as printed: gptSessionBenchmark's context phase of the
  whole static batch, measured in a separate run with one output token;
- tpot: 'Token-to-token Latency (ms)' = (Latency - 1st Token Latency) / (output - 1), the
  mean decode step of the batch, rounded to 4 decimals.
The rows carry the same fields as the curated YAML rows; their quote is the line itself.
"""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path
from typing import Any

DATA_FILE = "dli-trt090.csv"
SOURCE = "trtllm-0.9.0"
STACK = "trtllm-0.9"
REPO_PATH = "code/ch10_inference/inference_gpu_cluster_sizing/dataset/trt_llm_0_9_0_dli.csv"
DEVICES = {
    "H100 80GB HBM3": (
        "h100-sxm",
        "h100sxm",
        "H100 80GB HBM3 (as listed; the HBM3 80GB part is the SXM form factor)",
    ),
    "A100-SXM4-80GB": ("a100-sxm-80gb", "a100sxm80", "A100-SXM4-80GB (as listed)"),
    "H200 141GB HBM3": ("h200", "h200", "H200 141GB HBM3 (as listed)"),
    "L40S": ("l40s", "l40s", "L40S (as listed; PCIe 48GB card)"),
}
"""Datasheet GPU -> (preset, id token, as stated). GH200, L40 and H100 NVL have no preset."""
MODELS = {
    "LLaMA v2 7B": ("llama-2-7b", "llama2-7b", "Llama-2-7B"),
    "LLaMA v2 13B": ("llama-2-13b", "llama2-13b", "Llama-2-13B"),
    "LLaMA v2 70B": ("llama-2-70b", "llama2-70b", "Llama-2-70B"),
    "Mistral 7B": ("mistral-7b", "mistral-7b", "Mistral-7B"),
}
PRECISIONS = {
    "FP8": ({"weight": "fp8", "activation": "fp16", "kv_cache": "fp8"}, "fp8", "FP8"),
    "Mixed": (
        {"weight": "fp16", "activation": "fp16", "kv_cache": "fp16"},
        "mixed",
        "Mixed (as listed; the course's preprocessing relabels 'Mixed' as FP16)",
    ),
}
"""FP8 engines are built with --enable_fp8 --fp8_kv_cache (TensorRT-LLM 0.9 performance.md)."""
TPOT_DECIMALS = 4


def _path() -> Path:
    return Path(str(resources.files("dartsim.validate").joinpath(DATA_FILE)))


def dli_rows(split_of: Any) -> list[dict[str, Any]]:
    """Every row of the shipped datasheet lines; `split_of(id, source, device)` gives each
    row's split (the data file's stated rule)."""
    with open(_path(), newline="") as handle:
        lines = [line for line in handle.read().split("\n") if line]
    header = next(csv.reader([lines[0]]))
    out: list[dict[str, Any]] = []
    for text in lines[1:]:
        fields = next(csv.reader([text]))
        r = dict(zip(header, fields, strict=True))
        raw = text.split(",", 1)[1]
        device, dev_tok, dev_stated = DEVICES[r["GPU"]]
        model, model_tok, model_stated = MODELS[r["Model"]]
        prec, prec_tok, prec_stated = PRECISIONS[r["Precision"]]
        tp, batch = int(r["Tensor Model Parallel Size"]), int(r["Batch Size"])
        inp, outl = (int(x) for x in r["Input/Output Lengths"].split(","))
        base = f"dli-trt090-{model_tok}-{dev_tok}-tp{tp}-{prec_tok}-bs{batch}-{inp}in-{outl}out"
        common = {
            "source": SOURCE,
            "stack": STACK,
            "device": device,
            "device_as_stated": dev_stated,
            "model": model,
            "model_as_stated": model_stated,
            "precision": dict(prec),
            "precision_as_stated": prec_stated,
            "tp": tp,
            "batch": batch,
            "input_tokens": inp,
            "output_tokens": outl,
            "unit": "ms",
            "quote": f"[{REPO_PATH} line {r['source_line']}] {raw}",
        }
        note = (
            f"gptSessionBenchmark static batch of {batch}, pipeline parallel 1, fake weights; "
            f"custom all-reduce {r['Enable Custom All Reduce']}, XQA {r['Enable XQA']}."
        )
        if r["1st Token Latency (ms)"]:
            row = {
                **common,
                "id": base + "-ttft",
                "metric": "ttft",
                "value": float(r["1st Token Latency (ms)"]),
            }
            row["notes"] = (
                note + " First-token latency: the context phase of the whole batch (one output token)."
            )
            out.append(row)
        if r["Token-to-token Latency (ms)"]:
            value = round(float(r["Token-to-token Latency (ms)"]), TPOT_DECIMALS)
            row = {**common, "id": base + "-tpot", "metric": "tpot", "value": value}
            row["notes"] = note + " Token-to-token latency = (Latency - 1st token latency) / (output - 1)."
            out.append(row)
    for row in out:
        row["split"] = split_of(row["id"], row["source"], row["device"])
    return out
