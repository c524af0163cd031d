#!/usr/bin/env bash
# The planned real-model study (docs/results/smollm2/PLAN.md), in the plan's order: world A's DPO (3 x 3) and
# SimPO, world B's DPO and SimPO, then IPO, R-DPO, CPO and ORPO on world A; then families.md for each world.
# Each sweep builds its world on first use (from the shipped snapshot when there is one), skips the runs already in
# its results.jsonl, so this resumes after an interruption and, when everything is there, only rewrites the
# reports. Extra arguments go to every `adadpo sweep`.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export HF_HUB_OFFLINE=1
out=docs/results/smollm2
sweep() {  # sweep CONFIG OUT TITLE [ARGS...]
  local config=$1 dir=$2 title=$3; shift 3
  adadpo sweep --config "$config" --output_dir "$dir" --title "$title" "$@"
}
sweep examples/smollm2/dpo.yaml "$out/dpo" "DPO vs AdaDPO on SmolLM2-135M-Instruct (world A)" "$@"
sweep examples/smollm2/simpo.yaml "$out/simpo" "SimPO vs AdaSimPO on SmolLM2-135M-Instruct (world A)" "$@"
sweep examples/smollm2/world-b/dpo.yaml "$out/world-b/dpo" "DPO vs AdaDPO on SmolLM2-135M-Instruct (world B)" "$@"
sweep examples/smollm2/world-b/simpo.yaml "$out/world-b/simpo" "SimPO vs AdaSimPO on SmolLM2-135M-Instruct (world B)" "$@"
for family_title in "ipo:IPO vs AdaIPO" "rdpo:R-DPO vs AdaR-DPO" "cpo:CPO vs AdaCPO" "orpo:ORPO vs AdaORPO"; do
  family=${family_title%%:*}
  sweep "examples/smollm2/$family.yaml" "$out/$family" "${family_title#*:} on SmolLM2-135M-Instruct (world A)" "$@"
done
python -m adadpo.bench.families "$out" "$out"/{dpo,simpo,ipo,rdpo,cpo,orpo}
python -m adadpo.bench.families "$out/world-b" "$out"/world-b/{dpo,simpo}
