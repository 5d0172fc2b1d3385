#!/bin/bash
# The whole cluster recipe, chained with SLURM dependencies:
#   SRC=/data/corpus.jsonl OUT=/shared/c2v bash examples/cluster/submit.sh
# tokenize (job array, --shard I/N) -> merge + verify + k-means -> multi-node pretrain. Then, on any machine
# that sees OUT: codec2vec export OUT/runs/c2v --out c2v-base, or codec2vec probe ... --ckpt OUT/runs/c2v.
set -euo pipefail
: "${SRC:?audio folder or manifest}" "${OUT:?output folder on the shared filesystem}"
here=$(dirname "$0")
mkdir -p logs
array=$(sbatch --parsable --export=ALL "$here/tokenize.sbatch")
merge=$(sbatch --parsable --export=ALL --dependency=afterok:"$array" "$here/merge.sbatch")
train=$(sbatch --parsable --export=ALL --dependency=afterok:"$merge" "$here/pretrain.sbatch")
echo "tokenize $array -> merge $merge -> pretrain $train; logs in ./logs"
