"""Writes one parity case for the engine: random weights, random canvases/means/masks, and the
reference outputs of mae_vqgan_ref.py for the chosen forwards (CASES).

  /usr/bin/python3 test/reference/make_parity_case.py --config tiny --seed 7 --batch 4 --out DIR
  /usr/bin/python3 test/reference/make_parity_case.py --config mae-vqgan-vit-large --enc-depth 2 --dec-depth 1 \
      --cases zeroshot_patched_capture --no-vqgan-encoder --batch 2 --out DIR

--enc-depth/--dec-depth keep a preset's widths (heads, vocabulary, the whole VQGAN) at fewer transformer
layers; --cases picks some of CASES (default: all); --no-vqgan-encoder leaves the VQGAN encoder out of the
weights and of the expected outputs.

DIR/weights.safetensors   every model tensor (docs/method.md#model names, VQGAN under 'vae.'), fp32,
                          metadata {"vtv_config": <config JSON, src/config.ts field names>}
DIR/inputs.safetensors    canvases f32 [B,3,224,224], means_enc f32 [encDepth,148,encDim],
                          means_dec f32 [decDepth,197,decDim], patch_mask_zs u8 [B,bytes(zero-shot)],
                          patch_mask_os u8 [B,bytes(one-shot)]
DIR/expected.safetensors  per case: <case>.{encoder_out,decoder_out,logits,tokens,pixels,images,iou,mse},
                          <capture case>.{capture_enc,capture_dec}, vqgan_encoder.tokens;
                          metadata {"vtv_config", "cases": JSON {case: {mode, patch_mask|null, capture}}}
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mae_vqgan_ref as ref  # noqa: E402
from safetensors_io import save_file  # noqa: E402

# case name -> (mode, which patch mask input or None, capture)
CASES = {
    "oneshot": ("one-shot", None, False),
    "zeroshot": ("zero-shot", None, False),
    "zeroshot_patched": ("zero-shot", "patch_mask_zs", False),
    "oneshot_patched": ("one-shot", "patch_mask_os", False),
    # Capture while patching: the capture sums O *after* patching, so this also pins that order.
    "oneshot_capture": ("one-shot", "patch_mask_os", True),
    "zeroshot_patched_capture": ("zero-shot", "patch_mask_zs", True),
}
OUTPUT_KEYS = ("encoder_out", "decoder_out", "logits", "tokens", "pixels", "images", "iou", "mse")


def _smooth_field(g, channels, coarse):
    """A random image that varies smoothly over a 111x111 cell (bicubic upsampling of coarse noise)."""
    z = torch.rand(1, channels, coarse, coarse, generator=g)
    return F.interpolate(z, size=(ref.CELL, ref.CELL), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def _binary_mask(g):
    """A white-on-black blob mask like a segmentation output cell (foreground 15-60% of the cell)."""
    field = _smooth_field(g, 1, 5)[0]
    frac = 0.15 + 0.45 * float(torch.rand(1, generator=g))
    thr = torch.quantile(field.flatten(), 1.0 - frac)
    return (field > thr).float().expand(3, ref.CELL, ref.CELL)


def random_canvases(batch, g):
    """docs/method.md#canvas layout: white canvas; TL/BL images, TR/BR binary masks; ImageNet-normalised."""
    canv = torch.ones(batch, 3, ref.IMAGE, ref.IMAGE)
    lo, hi = ref.IMAGE - ref.CELL, ref.IMAGE  # 113, 224
    for b in range(batch):
        canv[b, :, 0:ref.CELL, 0:ref.CELL] = _smooth_field(g, 3, 8)
        canv[b, :, 0:ref.CELL, lo:hi] = _binary_mask(g)
        canv[b, :, lo:hi, 0:ref.CELL] = _smooth_field(g, 3, 8)
        canv[b, :, lo:hi, lo:hi] = _binary_mask(g)
    mean = torch.tensor(ref.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(ref.IMAGENET_STD).view(1, 3, 1, 1)
    return (canv - mean) / std


def random_means(W, cfg, g):
    """Task-mean tables of realistic scale: the one-shot mean of O over 4 other canvases, plus noise
    of half its spread so patching visibly changes the output."""
    other = random_canvases(4, g)
    cap = ref.mae_forward(W, cfg, other, "one-shot", capture=True)
    enc, dec = cap["capture_enc"] / 4, cap["capture_dec"] / 4
    enc = enc + 0.5 * enc.std() * torch.randn(enc.shape, generator=g)
    dec = dec + 0.5 * dec.std() * torch.randn(dec.shape, generator=g)
    return enc.contiguous(), dec.contiguous()


def random_patch_mask(cfg, mode, batch, rng, density=0.3):
    bits = ref.patch_bits(cfg, mode)
    nbytes = ref.patch_bytes(cfg, mode)
    on = rng.random_sample((batch, nbytes * 8)) < density
    on[:, bits:] = False  # bits past the last variable must be zero
    return torch.from_numpy(np.packbits(on, axis=1, bitorder="little"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny", choices=sorted(ref.PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--enc-depth", type=int, default=0, help="encoder layers (0: the preset's)")
    ap.add_argument("--dec-depth", type=int, default=0, help="decoder layers (0: the preset's)")
    ap.add_argument("--cases", default="", help=f"comma-separated subset of {', '.join(CASES)} (default: all)")
    ap.add_argument("--no-vqgan-encoder", action="store_true", help="no VQGAN encoder weights or tokens")
    args = ap.parse_args(argv)
    if args.batch < 1:
        ap.error("--batch must be >= 1")
    if args.enc_depth < 0 or args.dec_depth < 0:
        ap.error("--enc-depth and --dec-depth must be >= 0")
    cases = [c for c in args.cases.split(",") if c] or list(CASES)
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)} (known: {', '.join(CASES)})")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    cfg = ref.preset(args.config)
    if args.enc_depth or args.dec_depth:
        cfg["encDepth"] = args.enc_depth or cfg["encDepth"]
        cfg["decDepth"] = args.dec_depth or cfg["decDepth"]
        cfg["name"] = f"{cfg['name']}-{cfg['encDepth']}+{cfg['decDepth']}"
    with_encoder = not args.no_vqgan_encoder
    t0 = time.time()

    torch.manual_seed(args.seed)  # nothing should depend on it; generators below are explicit
    W = ref.random_weights(cfg, args.seed, include_vqgan_encoder=with_encoder)
    save_file(W, os.path.join(args.out, "weights.safetensors"), ref.config_metadata(cfg))
    t_weights = time.time()

    g = torch.Generator().manual_seed(args.seed + 1)
    rng = np.random.RandomState(args.seed + 2)
    with torch.no_grad():
        canvases = random_canvases(args.batch, g)
        means_enc, means_dec = random_means(W, cfg, g)
    inputs = {
        "canvases": canvases.contiguous(),
        "means_enc": means_enc,
        "means_dec": means_dec,
        "patch_mask_zs": random_patch_mask(cfg, "zero-shot", args.batch, rng),
        "patch_mask_os": random_patch_mask(cfg, "one-shot", args.batch, rng),
    }
    save_file(inputs, os.path.join(args.out, "inputs.safetensors"), ref.config_metadata(cfg))
    t_inputs = time.time()

    expected = {}
    timings = {}
    with torch.no_grad():
        for case in cases:
            mode, mask_key, capture = CASES[case]
            t = time.time()
            mask = inputs[mask_key] if mask_key else None
            out = ref.full_forward(W, cfg, canvases, mode, mask, means_enc, means_dec, capture=capture)
            for k in OUTPUT_KEYS:
                expected[f"{case}.{k}"] = out[k].contiguous()
            if capture:
                expected[f"{case}.capture_enc"] = out["capture_enc"].contiguous()
                expected[f"{case}.capture_dec"] = out["capture_dec"].contiguous()
            timings[case] = round(time.time() - t, 3)
        if with_encoder:
            t = time.time()
            expected["vqgan_encoder.tokens"] = ref.vqgan_encode(W, cfg, canvases)
            timings["vqgan_encoder"] = round(time.time() - t, 3)
    cases_meta = {c: {"mode": CASES[c][0], "patch_mask": CASES[c][1], "capture": CASES[c][2]} for c in cases}
    meta = dict(ref.config_metadata(cfg), cases=json.dumps(cases_meta))
    save_file(expected, os.path.join(args.out, "expected.safetensors"), meta)
    t_end = time.time()
    print(json.dumps({
        "config": cfg["name"], "seed": args.seed, "batch": args.batch, "out": args.out,
        "seconds": {"weights": round(t_weights - t0, 3), "inputs": round(t_inputs - t_weights, 3),
                    "cases": timings, "total": round(t_end - t0, 3)},
    }))


if __name__ == "__main__":
    main()
