#!/usr/bin/env bash
# Trains the shipped small model from nothing, as it was made (docs/model-card-mini.md):
#   1. canvases of the project's tasks from generator scenes under training seed 1 (train/make_data.ts)
#   2. stage 1, the VQ autoencoder (train/train_vqgan.py)
#   3. stage 2, the MAE on the stage-1 tokens (train/train_mae.py)
# Needs Debian's python3-torch (CPU) and the repository's npm dependencies. About 1 h 40 min on 2 cores (the MAE uses one thread: this torch build runs small
# batched matrix products slower on two).
# The MAE's schedule length is set by wall time (--minutes): the run record (mae_run.json, and the
# weights' metadata) holds the step count it came to; pass --steps N instead of --minutes to repeat it.
# Usage: bash train/run_all.sh [OUT_DIR]     (then: npx tsx train/quick_eval.ts OUT_DIR/mae-vqgan-mini.safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-train/out}
data=train/data
mkdir -p "$out" "$data"
[ -f "$data/canvases.u8" ] || npx tsx train/make_data.ts --out "$data" --scenes-per-class 400 --canvases 12000 --seed 1
/usr/bin/python3 train/train_vqgan.py --data "$data" --out "$out" --steps 3000 --threads 2 --seed 0
# The MAE runs one thread, with glibc told to keep freed memory (without it, every step's large
# tensors are mmapped and page-faulted afresh: about a quarter of the step time here).
export OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
# Stage 2a: 500 steps on the exact codes (the first 500 of a 2,036-step schedule).
/usr/bin/python3 train/train_mae.py --data "$data" --vqgan "$out/vqgan.safetensors" --out "$out" \
  --steps 2036 --stop-after 500 --batch 24 --lr 1.5e-3 --warmup 200 --modes quadrant:0.85,random:0.15 \
  --task-weights segmentation:2.5 --threads 1 --seed 0
mv "$out/mae-vqgan-mini.safetensors" "$out/mae-stage-a.safetensors"
mv "$out/mae_run.json" "$out/mae_stage_a_run.json"
# Stage 2b: from there, on 32 merged codes (groups of codes that decode alike), a new schedule sized to
# 36 minutes; its run record holds the step count (pass --steps N --stop-after 0 instead of --minutes to repeat it).
/usr/bin/python3 train/train_mae.py --data "$data" --vqgan "$out/vqgan.safetensors" --out "$out" \
  --init-from "$out/mae-stage-a.safetensors" --merge-codes 32 \
  --steps 100000 --minutes 36 --batch 24 --lr 1.5e-3 --warmup 100 --modes quadrant:0.85,random:0.15 \
  --task-weights segmentation:2.5 --threads 1 --seed 1
echo "trained: $out/mae-vqgan-mini.safetensors"
