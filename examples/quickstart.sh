#!/usr/bin/env bash
# The whole Codec2Vec pre-training pipeline on a small synthetic corpus, on a CPU, in minutes:
#   eSpeak NG speech -> Lyra v2 tokens -> k-means labels -> masked prediction with all three targets.
# Usage: bash examples/quickstart.sh [OUT]   (sizes: QUICKSTART_HOURS, QUICKSTART_STEPS)
set -euo pipefail
out="${1:-runs/quickstart}"
hours="${QUICKSTART_HOURS:-0.2}"
steps="${QUICKSTART_STEPS:-300}"
here="$(cd "$(dirname "$0")/.." && pwd)"
# Lyra v2 weights: CODEC2VEC_LYRA_DIR, else ../shared/codecs/lyra-v2 beside the checkout, else the
# pinned, checksummed download into the user cache.
if [ -z "${CODEC2VEC_LYRA_DIR:-}" ] && [ -d "$here/../shared/codecs/lyra-v2" ]; then
  export CODEC2VEC_LYRA_DIR="$here/../shared/codecs/lyra-v2"
fi
mkdir -p "$out"
codec2vec synth "$out/corpus" --hours "$hours" --speakers 8 --seed 3
codec2vec tokenize "$out/corpus/all.jsonl" --out "$out/store" --codec lyra --workers 2 || [ $? -eq 3 ]
codec2vec info "$out/store"
codec2vec kmeans "$out/store" --source codec --clusters 50 --name km
codec2vec pretrain "$here/configs/lyra_tiny.yaml" data.store="$out/store" run.dir="$out/run" \
  targets=reconstruction,clusters,online train.steps="$steps"
echo "metrics: $out/run/metrics.jsonl"
