#!/usr/bin/env bash
# Trains the shipped small model from nothing, as it was made (docs/model-card-mini.md):
#   0. canvases: set A (the project's five tasks) and set B (those plus four training-only tasks that share
#      a query kind with them), from generator scenes under training seed 1 (train/make_data.ts)
#   1. the VQ autoencoder on set A (train/train_vqgan.py)
#   2. the MAE on set A: (a) exact codes, (b) 32 merged code groups (train/train_mae.py)
#   3-6. the MAE on set B, merged codes, then with segmentation drawn more often (3x, then 4x)
#   7. the shipped file: bf16 with every stage's record (train/export_model.py)
# Needs Debian's python3-torch (CPU) and the repository's npm dependencies. About 4 h on 2 cores (the
# MAE uses one thread: this torch build runs small batched matrix products slower on two).
# Each MAE stage gives its schedule length (--steps) and where it stopped (--stop-after), as the shipped
# model's stages did; its record (mae_run.json and the weights' metadata) holds both.
# Usage: bash train/run_all.sh [OUT_DIR]     (then: npx tsx train/quick_eval.ts OUT_DIR/mae-vqgan-mini.safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-train/out}
a=train/data
b=train/data-b
mkdir -p "$out" "$a" "$b"
[ -f "$a/canvases.u8" ] || npx tsx train/make_data.ts --out "$a" --scenes-per-class 400 --canvases 12000 --seed 1 \
  --tasks segmentation,lowlight_enhance,identity,inpaint,colorization
[ -f "$b/canvases.u8" ] || npx tsx train/make_data.ts --out "$b" --scenes-per-class 400 --canvases 12000 --seed 1
/usr/bin/python3 train/train_vqgan.py --data "$a" --out "$out" --steps 3000 --threads 2 --seed 0
# The MAE runs one thread, with glibc told to keep freed memory (without it, every step's large
# tensors are mmapped and page-faulted afresh: about a quarter of the step time here).
export OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=17179869184 MALLOC_TOP_PAD_=1073741824
mae() {  # mae STAGE_NAME DATA [train_mae.py arguments]: one stage, its output kept under its name
  local name=$1 data=$2; shift 2
  mkdir -p "$out/$name"
  /usr/bin/python3 train/train_mae.py --data "$data" --vqgan "$out/vqgan.safetensors" --out "$out/$name" --batch 24 --threads 1 "$@"
}
mae stage2a "$a" --steps 2036 --stop-after 500 --lr 1.5e-3 --warmup 200 --modes quadrant:0.85,random:0.15 \
  --task-weights segmentation:2.5 --seed 0
mae stage2b "$a" --init-from "$out/stage2a/mae-vqgan-mini.safetensors" --merge-codes 32 --steps 1180 --stop-after 750 \
  --lr 1.5e-3 --warmup 100 --modes quadrant:0.85,random:0.15 --task-weights segmentation:2.5 --seed 1
mae stage3 "$b" --init-from "$out/stage2b/mae-vqgan-mini.safetensors" --merge-codes 32 --steps 2483 --stop-after 750 \
  --lr 1.5e-3 --warmup 100 --modes quadrant:0.85,random:0.15 \
  --task-weights segmentation:1.5,segmentation_inverted:1.5,identity:1.5 --seed 2
mae stage4 "$b" --init-from "$out/stage3/mae-vqgan-mini.safetensors" --merge-codes 32 --steps 1416 \
  --lr 1e-3 --warmup 50 --modes quadrant:0.9,random:0.1 \
  --task-weights segmentation:3,segmentation_inverted:3,identity:1.5 --seed 3
mae stage5 "$b" --init-from "$out/stage4/mae-vqgan-mini.safetensors" --merge-codes 32 --steps 624 \
  --lr 1e-3 --warmup 50 --modes quadrant:0.9,random:0.1 \
  --task-weights segmentation:4,segmentation_inverted:4,identity:1 --seed 4
mae stage6 "$b" --init-from "$out/stage5/mae-vqgan-mini.safetensors" --merge-codes 32 --steps 2565 \
  --lr 1e-3 --warmup 50 --modes quadrant:0.9,random:0.1 \
  --task-weights segmentation:4,segmentation_inverted:4,identity:1 --seed 5
/usr/bin/python3 train/export_model.py "$out/stage6/mae-vqgan-mini.safetensors" "$out/mae-vqgan-mini.safetensors" \
  --stage "$out/vqgan.safetensors" --stage "$out/stage2a/mae-vqgan-mini.safetensors" \
  --stage "$out/stage2b/mae-vqgan-mini.safetensors" \
  --stage "$out/stage3/mae-vqgan-mini.safetensors" --stage "$out/stage4/mae-vqgan-mini.safetensors" \
  --stage "$out/stage5/mae-vqgan-mini.safetensors"
echo "trained: $out/mae-vqgan-mini.safetensors"
