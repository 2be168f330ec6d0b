"""PyTorch CPU baseline for the engine's CPU backend: the zero-shot patched forward of the search
(MAE encoder/decoder with per-sample head patching, argmax, duplicated tokens, VQGAN decode, quadrant
MSE), fp32, torch.no_grad, using the plain reference in test/reference/mae_vqgan_ref.py.

  /usr/bin/python3 benchmarks/cpu_forward_torch.py --config mae-vqgan-vit-large --batch 1 --threads 2 --repeats 3
  /usr/bin/python3 benchmarks/cpu_forward_torch.py --write-weights /tmp/vitl.safetensors --repeats 0

Prints one JSON line: {"forwards_per_s", "seconds_per_forward", "batch", "threads", ...}.
seconds_per_forward is wall time per sample (batch forward time / batch).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "reference"))
import mae_vqgan_ref as ref  # noqa: E402
from make_parity_case import random_canvases, random_patch_mask  # noqa: E402
from safetensors_io import load_file, load_metadata, save_file  # noqa: E402


def load_weights(path, cfg):
    meta = load_metadata(path)
    if "vtv_config" in meta:
        stored = json.loads(meta["vtv_config"])
        if {k: v for k, v in stored.items() if k != "name"} != {k: v for k, v in cfg.items() if k != "name"}:
            raise SystemExit(f"{path}: its vtv_config ({stored.get('name')}) differs from --config {cfg['name']}")
    needed = [k for k in ref.weight_shapes(cfg, include_vqgan_encoder=False)]
    W = load_file(path, keys=set(needed))
    for k, (_, shape) in ref.weight_shapes(cfg, include_vqgan_encoder=False).items():
        if list(W[k].shape) != list(shape):
            raise SystemExit(f"{path}: key {k} has shape {list(W[k].shape)}, expected {shape}")
        W[k] = W[k].float()
    return W


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="mae-vqgan-vit-large", choices=sorted(ref.PRESETS))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="timed batch forwards after one warm-up (0: none)")
    ap.add_argument("--weights", help="safetensors weights (default: random weights made in memory)")
    ap.add_argument("--write-weights", help="write the random weights (with the VQGAN encoder) to this file")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.batch < 1 or args.threads < 1 or args.repeats < 0:
        ap.error("--batch and --threads must be >= 1, --repeats >= 0")
    if args.weights and args.write_weights:
        ap.error("--weights and --write-weights exclude each other")
    torch.set_num_threads(args.threads)
    cfg = ref.preset(args.config)

    t0 = time.time()
    if args.weights:
        W = load_weights(args.weights, cfg)
    else:
        W = ref.random_weights(cfg, args.seed, include_vqgan_encoder=bool(args.write_weights))
        if args.write_weights:
            save_file(W, args.write_weights, ref.config_metadata(cfg))
            for k in [k for k in W if k.startswith("vae.encoder.") or k.startswith("vae.quant_conv.")]:
                del W[k]
    t_weights = time.time() - t0
    if args.repeats == 0:
        print(json.dumps({"config": cfg["name"], "weights_written": args.write_weights, "seconds_weights": round(t_weights, 2)}))
        return

    g = torch.Generator().manual_seed(args.seed + 1)
    canvases = random_canvases(args.batch, g)
    means_enc = 0.5 * torch.randn(cfg["encDepth"], 148, cfg["encDim"], generator=g)
    means_dec = 0.5 * torch.randn(cfg["decDepth"], 197, cfg["decDim"], generator=g)
    masks = random_patch_mask(cfg, "zero-shot", args.batch, np.random.RandomState(args.seed + 2))

    def forward():
        out = ref.full_forward(W, cfg, canvases, "zero-shot", masks, means_enc, means_dec)
        return out["mse"]

    with torch.no_grad():
        forward()  # warm-up: allocator, OpenBLAS threads
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            forward()
            times.append(time.perf_counter() - t)
    total = sum(times)
    print(json.dumps({
        "impl": "pytorch-cpu-reference", "torch": torch.__version__, "config": cfg["name"], "mode": "zero-shot-patched",
        "forwards_per_s": args.batch * args.repeats / total,
        "seconds_per_forward": total / (args.batch * args.repeats),
        "batch": args.batch, "threads": args.threads, "repeats": args.repeats,
        "seconds_per_batch": [round(t, 4) for t in times], "seconds_weights": round(t_weights, 2),
    }))


if __name__ == "__main__":
    main()
