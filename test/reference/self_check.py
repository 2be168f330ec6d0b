"""Checks the reference against facts that follow from docs/method.md, independently of the engine.

  /usr/bin/python3 test/reference/self_check.py        (tiny model, about 10 s; exits 1 on failure)
"""
import math
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mae_vqgan_ref as ref  # noqa: E402
from make_parity_case import random_canvases, random_patch_mask  # noqa: E402
from safetensors_io import load_file, load_metadata, save_file  # noqa: E402

FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILURES.append(what)


def close(a, b, tol=1e-5):
    return torch.allclose(a, b, rtol=tol, atol=tol)


def check_pos_embed():
    for width in (32, 64, 1024):
        pe = ref.sincos_pos_embed(width)
        direct = torch.zeros(197, width, dtype=torch.float64)
        q = width // 4
        for t in range(196):
            r, c = divmod(t, 14)
            for k in range(q):
                w = 10000.0 ** (-k / q)
                direct[1 + t, k] = math.sin(c * w)          # first half: column
                direct[1 + t, q + k] = math.cos(c * w)
                direct[1 + t, 2 * q + k] = math.sin(r * w)  # second half: row
                direct[1 + t, 3 * q + k] = math.cos(r * w)
        check(torch.allclose(pe.double(), direct, atol=1e-6), f"pos embed width {width} == per-element formula (CLS row zero)")


def check_token_bookkeeping():
    kept, masked = ref.kept_ids(), ref.masked_ids()
    check(len(kept) == 147 and len(masked) == 49 and sorted(kept + masked) == list(range(196)), "147 kept + 49 masked ids cover the grid")
    # encoder positions 99..147 are the bottom-left quadrant (query), raster order
    check(kept[98:] == [r * 14 + c for r in range(7, 14) for c in range(7)], "encoder positions 99..147 = bottom-left quadrant")
    cfg = ref.preset("mae-vqgan-vit-large")
    check(ref.patch_bits(cfg, "zero-shot") == 24 * 16 * 50 + 8 * 16 * 99 == 31872, "zero-shot patch bits = 31,872 (docs/method.md#variables granularity 2)")


def with_identity_blocks(W, cfg):
    """Every block becomes the identity (proj and fc2 zero): no token mixes with another."""
    W = dict(W)
    for pre, depth in (("blocks", cfg["encDepth"]), ("decoder_blocks", cfg["decDepth"])):
        for l in range(depth):
            for k in ("attn.proj", "mlp.fc2"):
                W[f"{pre}.{l}.{k}.weight"] = torch.zeros_like(W[f"{pre}.{l}.{k}.weight"])
                W[f"{pre}.{l}.{k}.bias"] = torch.zeros_like(W[f"{pre}.{l}.{k}.bias"])
    return W


def check_modes(W, cfg, x):
    # With token-local blocks, zero-shot must be exactly the one-shot rows it claims to be.
    Wi = with_identity_blocks(W, cfg)
    os_ = ref.mae_forward(Wi, cfg, x, "one-shot")
    zs = ref.mae_forward(Wi, cfg, x, "zero-shot")
    rows_e = [0] + list(range(99, 148))
    rows_d = [0] + list(range(99, 197))
    check(close(zs["encoder_out"], os_["encoder_out"][:, rows_e]), "identity blocks: zero-shot encoder_out == one-shot rows [0, 99..147]")
    check(close(zs["decoder_out"], os_["decoder_out"][:, rows_d]), "identity blocks: zero-shot decoder_out == one-shot rows [0, 99..196]")
    check(close(zs["logits"], os_["logits"][:, 98:]), "identity blocks: zero-shot logits == one-shot logits of rows 7..13")
    # In one-shot with identity blocks, masked positions are mask_token + decoder_pos_embed only.
    mt = ref.F.layer_norm(W["mask_token"][0, 0] + W["decoder_pos_embed"][0, 1 + 13 * 14 + 13], (cfg["decDim"],),
                          W["decoder_norm.weight"], W["decoder_norm.bias"], cfg["lnEps"])
    check(close(os_["decoder_out"][0, 196], mt), "identity blocks: last decoder token = LN(mask_token + pos[196])")

    # Real blocks: the top-half visible patches change one-shot but cannot reach zero-shot.
    y = x.clone()
    y[:, :, :112] = torch.randn_like(y[:, :, :112])
    a, b = ref.mae_forward(W, cfg, x, "zero-shot"), ref.mae_forward(W, cfg, y, "zero-shot")
    check(torch.equal(a["logits"], b["logits"]), "zero-shot ignores the top half of the canvas")
    a, b = ref.mae_forward(W, cfg, x, "one-shot"), ref.mae_forward(W, cfg, y, "one-shot")
    check(not close(a["logits"], b["logits"]), "one-shot depends on the top half of the canvas")
    z = x.clone()
    z[:, :, 112:, 112:] = torch.randn_like(z[:, :, 112:, 112:])
    for mode in ref.MODES:
        a, b = ref.mae_forward(W, cfg, x, mode), ref.mae_forward(W, cfg, z, mode)
        check(torch.equal(a["logits"], b["logits"]), f"{mode}: the masked bottom-right quadrant is never seen")


def check_patching(W, cfg, x, g):
    B = x.shape[0]
    me = torch.randn(cfg["encDepth"], 148, cfg["encDim"], generator=g)
    md = torch.randn(cfg["decDepth"], 197, cfg["decDim"], generator=g)
    for mode in ref.MODES:
        zero = torch.zeros(B, ref.patch_bytes(cfg, mode), dtype=torch.uint8)
        a = ref.mae_forward(W, cfg, x, mode)
        b = ref.mae_forward(W, cfg, x, mode, zero, me, md)
        check(torch.equal(a["logits"], b["logits"]), f"{mode}: all-zero patch mask == unpatched (bitwise)")

        # Patch every head everywhere with this sample's own captured O: nothing changes.
        cap = ref.mae_forward(W, cfg, x[:1], mode, capture=True)
        ce, cd = cap["capture_enc"], cap["capture_dec"]
        if mode == "zero-shot":  # place the zero-shot capture at the one-shot rows it reads
            te = torch.zeros(cfg["encDepth"], 148, cfg["encDim"])
            td = torch.zeros(cfg["decDepth"], 197, cfg["decDim"])
            te[:, [0] + list(range(99, 148))] = ce
            td[:, [0] + list(range(99, 197))] = cd
            ce, cd = te, td
        full = torch.from_numpy(np.packbits(np.arange(ref.patch_bytes(cfg, mode) * 8) < ref.patch_bits(cfg, mode),
                                            bitorder="little"))[None]
        c = ref.mae_forward(W, cfg, x[:1], mode, full, ce, cd)
        check(close(c["logits"], cap["logits"], 1e-4), f"{mode}: patching every head with its own O reproduces the output")

        # One bit in the last encoder layer changes only that position of encoder_out.
        L, h, p = cfg["encDepth"] - 1, 1, 5
        one = torch.zeros(1, ref.patch_bytes(cfg, mode), dtype=torch.uint8)
        i = ref.patch_bit_index(cfg, mode, L, h, p)
        one[0, i >> 3] |= 1 << (i & 7)
        d = ref.mae_forward(W, cfg, x[:1], mode, one, me, md)
        diff = (d["encoder_out"] - cap["encoder_out"]).abs().amax(-1)[0]
        check(diff[p] > 1e-3 and diff[torch.arange(diff.numel()) != p].max() == 0,
              f"{mode}: bit (layer {L}, head {h}, pos {p}) changes exactly encoder position {p}")
        # The same in the last decoder layer, and the zero-shot table row read is p+98.
        Ld = cfg["encDepth"] + cfg["decDepth"] - 1
        one = torch.zeros(1, ref.patch_bytes(cfg, mode), dtype=torch.uint8)
        i = ref.patch_bit_index(cfg, mode, Ld, h, p)
        one[0, i >> 3] |= 1 << (i & 7)
        row = p + 98 if mode == "zero-shot" else p
        md_own = md.clone()
        dh = cfg["decDim"] // cfg["decHeads"]
        md_own[-1, row, h * dh:(h + 1) * dh] = cd[-1, row, h * dh:(h + 1) * dh]
        e = ref.mae_forward(W, cfg, x[:1], mode, one, me, md_own)
        check(torch.equal(e["decoder_out"], cap["decoder_out"]),
              f"{mode}: decoder bit (last layer, head {h}, pos {p}) reads table row {row}")

    # Per-sample masks: sample b of a batch == the same sample alone; capture sums over the batch.
    rng = np.random.RandomState(0)
    for mode in ref.MODES:
        m = random_patch_mask(cfg, mode, B, rng)
        full = ref.mae_forward(W, cfg, x, mode, m, me, md, capture=True)
        ok, cap_sum_e = True, 0
        for b in range(B):
            s = ref.mae_forward(W, cfg, x[b:b + 1], mode, m[b:b + 1], me, md, capture=True)
            ok &= close(s["logits"][0], full["logits"][b], 1e-4)
            cap_sum_e = cap_sum_e + s["capture_enc"]
        check(ok, f"{mode}: batched per-sample patching == one sample at a time")
        check(close(cap_sum_e, full["capture_enc"], 1e-4), f"{mode}: capture of a batch == sum of per-sample captures")


def check_vqgan(W, cfg, x):
    tok = torch.randint(0, cfg["vq"]["nEmbed"], (2, 196), dtype=torch.int32)
    px = ref.vqgan_decode(W, cfg, tok)
    check(tuple(px.shape) == (2, 3, 224, 224) and px.min() >= 0 and px.max() <= 1, "VQGAN decoder: [B,3,224,224] in [0,1]")
    frac_sat = float(((px == 0) | (px == 1)).float().mean())
    check(frac_sat < 0.2 and float(px.std()) > 0.05, f"VQGAN decoder output is not saturated ({frac_sat:.3f} clamped)")
    enc = ref.vqgan_encode(W, cfg, x)
    check(tuple(enc.shape) == (x.shape[0], 196) and len(set(enc.flatten().tolist())) > 3, "VQGAN encoder: varied tokens [B,196]")


def check_metrics():
    gt = torch.zeros(1, 3, 224, 224, dtype=torch.uint8)
    pred = gt.clone()
    gt[:, :, 113:123, 113:123] = 255     # 100 fg pixels
    pred[:, :, 113:118, 113:123] = 255   # 50 fg pixels inside
    pred[:, :, 200:205, 200:210] = 128   # 3*128 = 384 > 382.5: 50 more fg pixels outside
    pred[:, :, 210:215, 200:210] = 127   # 381 < 382.5: background
    check(abs(float(ref.quadrant_iou(pred, gt)[0]) - 50 / 150) < 1e-6, "IoU by R+G+B > 382.5: 50/150")
    check(float(ref.quadrant_iou(gt * 0, gt * 0)[0]) == 1.0, "IoU of two empty masks is 1.0")
    mean = torch.tensor(ref.IMAGENET_MEAN, dtype=torch.float64)
    std = torch.tensor(ref.IMAGENET_STD, dtype=torch.float64)
    a = torch.full((1, 3, 224, 224), 10, dtype=torch.uint8)
    b = torch.full((1, 3, 224, 224), 20, dtype=torch.uint8)
    want = float(((10 / 255 / std) ** 2).mean())
    check(abs(float(ref.quadrant_mse(a, b)[0]) - want) < 1e-6, "MSE in normalised space: ((10/255)/std)^2 averaged over channels")
    raw = torch.randint(0, 256, (1, 3, 224, 224), dtype=torch.uint8)
    canv = ((raw.float() / 255 - mean.float().view(1, 3, 1, 1)) / std.float().view(1, 3, 1, 1)).float()
    img = ref.canvas_to_images(canv)
    check(torch.equal(img, raw), "ground truth recovers the canvas's original bytes from a float32 canvas")


def check_weights_roundtrip(W, cfg):
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "w.safetensors")
        extra = {"i32": torch.arange(5, dtype=torch.int32), "u8": torch.arange(7, dtype=torch.uint8)}
        save_file(dict(W, **extra), p, ref.config_metadata(cfg))
        with open(p, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        back = load_file(p)
        same = all(torch.equal(back[k], v) for k, v in dict(W, **extra).items())
        import json
        check(same and (8 + n) % 8 == 0 and json.loads(load_metadata(p)["vtv_config"]) == cfg,
              "safetensors round trip (fp32/i32/u8, aligned data, vtv_config metadata)")
    large = ref.weight_shapes(ref.preset("mae-vqgan-vit-large"))
    mae = [k for k in large if not k.startswith("vae.")]
    dec = [k for k in large if k.startswith("vae.decoder.")]
    n_mae = sum(int(np.prod(large[k][1])) for k in mae)
    n_dec = sum(int(np.prod(large[k][1])) for k in dec)
    check(len(mae) == 398 and len(dec) == 194, f"ViT-L key counts: {len(mae)} MAE (398), {len(dec)} VQGAN decoder (194)")
    check(abs(n_mae / 1e6 - 329.67) < 0.01 and abs(n_dec / 1e6 - 42.45) < 0.01, f"ViT-L sizes {n_mae / 1e6:.2f} M / {n_dec / 1e6:.2f} M (docs/method.md#model)")


def check_nondegenerate(W, cfg, x):
    out = ref.full_forward(W, cfg, x, "zero-shot")
    sm = torch.softmax(out["logits"], -1).amax(-1)
    check(0.05 < float(sm.mean()) < 0.9, f"softmax neither uniform nor one-hot (mean max prob {float(sm.mean()):.2f})")
    check(all(len(set(t.tolist())) >= 3 for t in out["tokens"]), "argmax tokens vary across positions")
    check(torch.equal(out["tokens"][:, :98], out["tokens"][:, 98:]), "zero-shot tokens: top half duplicates bottom half")


def main():
    t0 = time.time()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    cfg = ref.preset("tiny")
    W = ref.random_weights(cfg, 11)
    g = torch.Generator().manual_seed(12)
    x = random_canvases(3, g)
    with torch.no_grad():
        check_pos_embed()
        check_token_bookkeeping()
        check_modes(W, cfg, x)
        check_patching(W, cfg, x, g)
        check_vqgan(W, cfg, x)
        check_metrics()
        check_weights_roundtrip(W, cfg)
        check_nondegenerate(W, cfg, x)
    print(f"{len(FAILURES)} failures, {time.time() - t0:.1f} s")
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
