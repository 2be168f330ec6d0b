#!/usr/bin/env bash
# Trains the shipped small model from nothing, as it was made (docs/model-card-mini.md):
#   1. canvases of the project's tasks from generator scenes under training seed 1 (train/make_data.ts)
#   2. stage 1, the VQ autoencoder (train/train_vqgan.py)
#   3. stage 2, the MAE on the stage-1 tokens (train/train_mae.py)
#   4. the result copied to models/ with its logs.
# Needs Debian's python3-torch (CPU) and the repository's npm dependencies. About an hour on 2 cores.
# Usage: bash train/run_all.sh [OUT_DIR]     (then compare models/*.json with OUT_DIR's run files)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-train/out}
data=train/data
mkdir -p "$out" "$data"
[ -f "$data/canvases.u8" ] || npx tsx train/make_data.ts --out "$data" --scenes-per-class 400 --canvases 12000 --seed 1
/usr/bin/python3 train/train_vqgan.py --data "$data" --out "$out" --steps 2500 --threads 1 --seed 0
/usr/bin/python3 train/train_mae.py --data "$data" --vqgan "$out/vqgan.safetensors" --out "$out" --steps 800 --batch 32 --threads 2 --seed 0
echo "trained: $out/mae-vqgan-mini.safetensors (copy it to models/ with $out/*_log.jsonl and $out/*_run.json)"
