#!/usr/bin/env bash
# SUPERSEDED (see README.md here): runs only at commit 8d333c1, whose task program built the world these grids used.
# Reproduce the real-model results under docs/results/smollm2 (SmolLM2-135M-Instruct; 60 runs, two at a time,
# about 3 minutes each on 2 CPU cores: a bit over an hour per grid). Finished runs in an output directory's results.jsonl are skipped, so this resumes after an
# interruption and, when everything is there, only rewrites the reports. Extra arguments go to every `adadpo sweep`.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export HF_HUB_OFFLINE=1
adadpo sweep --config docs/results/smollm2/superseded-world-v2/sweep_dpo.yaml --output-dir docs/results/smollm2/dpo \
  --title "DPO vs AdaDPO on SmolLM2-135M-Instruct" "$@"
adadpo sweep --config docs/results/smollm2/superseded-world-v2/sweep_simpo.yaml --output-dir docs/results/smollm2/simpo \
  --title "SimPO vs AdaSimPO on SmolLM2-135M-Instruct" "$@"
python -m adadpo.bench.report docs/results/smollm2/dpo docs/results/smollm2/simpo > docs/results/smollm2/headline.md
