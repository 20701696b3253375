"""A first, untuned look at `dartsim serve` against TensorRT-LLM's published online-serving
table (dartsim/validate/published_serving/rows.csv, source trtllm_perf_overview_v017_online: TRT-LLM
0.14.0, BF16, 500 requests at QPS 2-32, fixed lengths, 8B TP 1 and 70B TP 4 on H100/H200).

Not a validation: no calibration/held-out split, nothing fitted, the arrival process is
assumed Poisson (the source does not say), and dartsim's closest stack preset is
trtllm-0.9. It prints the error of mean TTFT, mean ITL (against dartsim's mean TPOT) and
output tokens/s per row, as the starting point for `dartsim validate --serving`.

Usage: python scripts/serving_first_look.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dartsim.serve.result import Slo, summary
from dartsim.serve.sim import ServeJob, simulate
from dartsim.serve.workload import ArrivalProcess, WorkloadSpec
from dartsim.specs.dtypes import get_dtype
from dartsim.specs.hardware import load_hardware_spec
from dartsim.specs.model import load_model_spec
from dartsim.specs.stack import stack_for
from dartsim.workload import Precision


def main() -> None:

    d = pd.read_csv(
        Path(__file__).resolve().parents[1] / "dartsim" / "validate" / "published_serving" / "rows.csv"
    )
    o = d[(d.source_id == "trtllm_perf_overview_v017_online") & np.isfinite(d.rate_req_s)]
    prec = Precision(weight=get_dtype("bf16"), activation=get_dtype("bf16"), kv_cache=get_dtype("bf16"))
    hwmap = {"H100 80GB HBM3": "h100-sxm", "H200 131GB HBM3": "h200"}
    out = []
    for (dev, model, tp, i, oo, rate), g in o.groupby(
        ["device", "model", "tp", "input_len", "output_len", "rate_req_s"]
    ):
        spec = load_model_spec("llama-3.1-70b" if "70B" in model else "llama-3.1-8b")
        hw = load_hardware_spec(hwmap[dev])
        w = WorkloadSpec(
            ArrivalProcess("poisson", rate), requests=500, prompt_tokens=int(i), output_tokens=int(oo), seed=0
        )
        job = ServeJob(
            spec,
            hw,
            w.build(spec.max_position_embeddings),
            tp=int(tp),
            stack=stack_for("trtllm-0.9", hw),
            precision=prec,
        )
        s = summary(simulate(job), Slo())
        m = {r.metric: r.value for r in g.itertuples()}
        pred = {
            "ttft_mean_s": s["ttft_s"]["mean"],
            "itl_mean_s": s["tpot_s"]["mean"],
            "output_tokens_per_s": s["throughput_tokens_per_s"],
        }
        for k, v in pred.items():
            if k in m:
                out.append((dev[:4], model[-3:], int(i), int(oo), rate, k, m[k], v, v / m[k] - 1))
    r = pd.DataFrame(out, columns=["dev", "model", "in", "out", "rate", "metric", "measured", "pred", "err"])
    pd.set_option("display.width", 200)
    print(
        r.groupby("metric").err.apply(
            lambda e: f"median |err| {np.median(np.abs(e)):.1%} max {np.max(np.abs(e)):.1%} n={len(e)}"
        )
    )
    print(r[r.metric != "output_tokens_per_s"].sort_values("err").to_string(max_rows=40))


if __name__ == "__main__":
    main()
