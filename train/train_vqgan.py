"""Stage 1: the VQ autoencoder (taming-style VQGAN encoder, codebook, decoder) of the small model.

Trained on random crops of the prompt canvases from train/make_data.ts: reconstruction (L1 + L2 in
[-1, 1]) plus the VQ-VAE codebook and commitment losses, straight-through gradients, dead codes
re-seeded from encoder outputs. The adversarial and perceptual terms of the original VQGAN are left
out (no LPIPS network can be had here, and the images are simple). The encoder and decoder are the
reference functions' architecture with the same key names, so the engine runs the result as is.

  /usr/bin/python3 train/train_vqgan.py --data train/data --out train/out --steps 3000
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import common
from common import ref


def encoder_z(W, vq, x):
    """x in [-1, 1], [B,3,H,W] -> z [B,E,H/16,W/16] (before quantisation): the reference's encoder."""
    return ref.vqgan_encode_latent(W, {"vq": vq}, x)


def decoder_x(W, vq, zq):
    """zq [B,E,h,w] -> x [B,3,16h,16w], before the clamp: the reference's decoder."""
    return ref.vqgan_decode_latent(W, {"vq": vq}, zq)


def quantise(z, codebook):
    """Nearest code by squared L2 (as the engine's encoder): indices [B*h*w], zq [B,E,h,w]."""
    B, E, h, w = z.shape
    zf = z.permute(0, 2, 3, 1).reshape(-1, E)
    d = (zf ** 2).sum(1, keepdim=True) + (codebook ** 2).sum(1) - 2.0 * zf @ codebook.t()
    idx = d.argmin(1)
    zq = codebook[idx].reshape(B, h, w, E).permute(0, 3, 1, 2)
    return idx, zq, zf


def heldout_colour(W, vq, data, n=16):
    """PSNR and chroma error (per-pixel deviation from the pixel's grey level) of the quantised
    reconstruction of the last n canvases, next to the targets' own chroma: a model that outputs grey
    has chroma error equal to the targets' chroma."""
    with torch.no_grad():
        x = common.u8_to_unit(data.batch_u8(np.arange(data.n - n, data.n)))
        _, zq, _ = quantise(encoder_z(W, vq, x), W["vae.quantize.embedding.weight"])
        xr = decoder_x(W, vq, zq).clamp(-1, 1)
        chroma = lambda t: t - t.mean(1, keepdim=True)  # noqa: E731
        psnr = -10 * torch.log10(F.mse_loss((xr + 1) / 2, (x + 1) / 2)).item()
        return {"heldout_psnr": round(psnr, 2), "heldout_chroma_err": round((chroma(xr) - chroma(x)).abs().mean().item(), 4),
                "heldout_chroma": round(chroma(x).abs().mean().item(), 4)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(common.HERE, "data"))
    ap.add_argument("--out", default=os.path.join(common.HERE, "out"))
    ap.add_argument("--preset", default="mini")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--crop", type=int, default=112)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-minutes", type=float, default=0, help="stop early after this wall time (0: no limit)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    cfg = ref.preset(args.preset)
    vq = cfg["vq"]
    data = common.Canvases(args.data)
    keys = [k for k in ref.weight_shapes(cfg) if k.startswith("vae.")]
    W = common.init_weights(cfg, keys, args.seed)
    for t in W.values():
        t.requires_grad_(True)
    opt = torch.optim.Adam(list(W.values()), lr=args.lr, betas=(0.5, 0.9))
    log = common.Logger(os.path.join(args.out, "vqgan_log.jsonl"))
    code_key = "vae.quantize.embedding.weight"
    usage = torch.zeros(vq["nEmbed"])
    t0 = time.time()
    step = 0
    for step in range(args.steps):
        idx = rng.choice(data.n - 16, size=args.batch, replace=False)
        x = common.u8_to_unit(data.batch_u8(idx))
        if args.crop < 224:
            y0, x0 = (int(v) * 16 for v in rng.integers(0, (224 - args.crop) // 16 + 1, size=2))
            x = x[:, :, y0:y0 + args.crop, x0:x0 + args.crop]
        lr = common.cosine_lr(step, args.steps, args.lr, 100)
        for g in opt.param_groups:
            g["lr"] = lr
        z = encoder_z(W, vq, x)
        if step == 0:  # seed the codebook with encoder outputs (k-means++-free data init)
            with torch.no_grad():
                zf = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
                W[code_key].copy_(zf[torch.randint(0, zf.shape[0], (vq["nEmbed"],))] + 0.01 * torch.randn_like(W[code_key]))
        code_idx, zq, zf = quantise(z, W[code_key])
        usage += torch.bincount(code_idx, minlength=vq["nEmbed"]).float()
        vq_loss = F.mse_loss(zq, z.detach()) + args.beta * F.mse_loss(z, zq.detach())
        zq_st = z + (zq - z).detach()
        xr = decoder_x(W, vq, zq_st)
        rec = F.l1_loss(xr, x) + F.mse_loss(xr, x)
        loss = rec + vq_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0:
            # Re-seed codes unused over the last 50 steps from this batch's encoder outputs.
            dead = (usage == 0).nonzero().flatten()
            if len(dead) > 0:
                with torch.no_grad():
                    src = zf.detach()[torch.randint(0, zf.shape[0], (len(dead),))]
                    W[code_key][dead] = src + 0.01 * torch.randn_like(src)
            used = int((usage > 0).sum())
            usage.zero_()
            with torch.no_grad():
                psnr = -10 * torch.log10(F.mse_loss((xr.clamp(-1, 1) + 1) / 2, (x + 1) / 2)).item()
            log.log(step=step + 1, loss=round(loss.item(), 5), rec=round(rec.item(), 5), vq=round(vq_loss.item(), 5),
                    psnr=round(psnr, 2), codes_used=used, reseeded=int(len(dead)), lr=round(lr, 6))
        if (step + 1) % 250 == 0:
            log.log(step=step + 1, **heldout_colour(W, vq, data))
        if args.max_minutes and time.time() - t0 > args.max_minutes * 60:
            print(f"stopping at step {step + 1}: --max-minutes {args.max_minutes} reached", flush=True)
            break
    meta = {"vtv_config": json.dumps(cfg), "stage": "vqgan", "steps": step + 1, "batch": args.batch, "crop": args.crop,
            "lr": args.lr, "beta": args.beta, "seed": args.seed, "data_seed": data.meta["seed"],
            "wall_s": round(time.time() - t0, 1), "commit": common.git_commit()}
    common.save_safetensors(os.path.join(args.out, "vqgan.safetensors"), W, meta)
    with open(os.path.join(args.out, "vqgan_run.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"saved {args.out}/vqgan.safetensors after {step + 1} steps, {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
