#!/usr/bin/env bash
# SUPERSEDED (see README.md here): as it ran at commit 05892ef, from where its paths and world are valid.
# The real-model results under docs/results/smollm2 (SmolLM2-135M-Instruct, world lmworld-0b4cf880d41a, shipped in
# the package). First the gate (does plain DPO improve on the untrained model at all?), then the six grids, then
# families.md (every grid side by side against the untrained model); each sweep
# skips the runs already in its results.jsonl, so this resumes after an interruption and, when everything is there,
# only rewrites the reports. Extra arguments go to every `adadpo sweep`.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export HF_HUB_OFFLINE=1
adadpo sweep --config examples/smollm2/gate_dpo.yaml --output_dir docs/results/smollm2/gate \
  --title "The gate: DPO against the untrained SmolLM2-135M-Instruct" "$@"
adadpo sweep --config examples/smollm2/sweep_dpo.yaml --output_dir docs/results/smollm2/dpo \
  --title "DPO vs AdaDPO on SmolLM2-135M-Instruct" "$@"
adadpo sweep --config examples/smollm2/sweep_simpo.yaml --output_dir docs/results/smollm2/simpo \
  --title "SimPO vs AdaSimPO on SmolLM2-135M-Instruct" "$@"
for family_title in "ipo:IPO vs AdaIPO" "rdpo:R-DPO vs AdaR-DPO" "cpo:CPO vs AdaCPO" "orpo:ORPO vs AdaORPO"; do
  family=${family_title%%:*}
  adadpo sweep --config "examples/smollm2/$family.yaml" --output_dir "docs/results/smollm2/$family" \
    --title "${family_title#*:} on SmolLM2-135M-Instruct" "$@"
done
# every family side by side, against the untrained model: families.md and families.png
(cd docs/results/smollm2 && python -m adadpo.bench.families . dpo simpo ipo rdpo cpo orpo)
