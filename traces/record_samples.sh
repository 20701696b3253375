#!/usr/bin/env bash
# Re-records every shipped sample trace (about 9 minutes on a 2-core CPU).
# Each trace is 500 new tokens of the bundled SmolLM2-135M-Instruct, greedy, with the
# default DART parameters; --min-new-tokens 500 keeps the answer going past its end-of-
# sequence so that every trace reaches the same length (recorded in the trace).
set -euo pipefail
cd "$(dirname "$0")"
DARTSIM=${DARTSIM:-../.venv/bin/dartsim}
common=(--max-new-tokens 500 --min-new-tokens 500 --quiet)
for sparsity in 50 70; do
  rho="0.$sparsity"
  $DARTSIM record "${common[@]}" --sparsity "$rho" --out "two-topic-$sparsity.pt"
  for name in explain-and-contrast compare-and-assess-impact apply-to-sector-with-policy trace-development-and-ethics; do
    $DARTSIM record "${common[@]}" --sparsity "$rho" --prompt-file "prompts/$name.txt" --out "$name-$sparsity.pt"
  done
done
# Figure 5 companions of two-topic-70.pt: the same prompt dense, and with the first mask only.
$DARTSIM record "${common[@]}" --sparsity 0.70 --mode dense --out two-topic-dense.pt
$DARTSIM record "${common[@]}" --sparsity 0.70 --mode static --out two-topic-static-70.pt
