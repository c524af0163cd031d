#!/usr/bin/env bash
# Reproduce every result under docs/results: about 30 min of training on 2 CPU cores (the sum of the sweeps'
# timing.jsonl), plus under a minute to build each of the two worlds. Finished runs found in an
# output directory's results.jsonl are skipped, so this resumes after an interruption and, when everything
# is there, only rewrites the reports. Extra arguments go to every `adadpo sweep` (e.g. --no-progress).
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1
adadpo sweep --config examples/sweep_dpo.yaml --output-dir docs/results/dpo --title "DPO vs AdaDPO in the oracle world" "$@"
adadpo sweep --config examples/sweep_dpo_eta2.yaml --output-dir docs/results/dpo-eta2 \
  --title "DPO vs AdaDPO, judge twice as biased toward length (eta 2)" "$@"
adadpo sweep --config examples/sweep_ablation.yaml --output-dir docs/results/ablation --title "Ablation of the balance's open choices (beta 0.1)" "$@"
for loss in rdpo ipo simpo cpo orpo; do
  adadpo sweep --config "examples/families/$loss.yaml" --output-dir "docs/results/families/$loss" --title "$loss vs its balanced form" "$@"
done
# The one table over every sweep (docs/results/headline.md)
python -m adadpo.bench.report docs/results/dpo docs/results/dpo-eta2 docs/results/families/{rdpo,ipo,simpo,cpo,orpo} \
  docs/results/ablation > docs/results/headline.md
