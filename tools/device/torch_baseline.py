"""PyTorch GPU baseline: the search's zero-shot patched forward (MAE encoder/decoder with
per-sample head patching, argmax, duplicated tokens, VQGAN decode, quadrant MSE), written for speed
as a strong PyTorch baseline would be: bf16 weights (no autocast), SDPA, channels-last convolutions, batch
320, in eager mode and with torch.compile (default mode, compiled per block: the repeated transformer,
resnet and attention blocks compile once per shape, which keeps compile time low). Same shapes and random
weights as test/reference/mae_vqgan_ref.py (its random-weight maker and key names), 10 distinct canvases
(sample i runs canvas i % 10, as the search does), random masks with ~27% of the bits set.

Timing: CUDA events around whole forwards after warm-up, median of --repeats. Prints one JSON line:
{"eager_fps", "compile_fps", "eager_ms", "compile_ms", "*_mae_ms", "*_vqgan_ms", "compile_seconds", ...}.

  python3 tools/device/torch_baseline.py                  # the H200 run (batch 320)
  /usr/bin/python3 tools/device/torch_baseline.py --check  # CPU: the fast forward vs the reference

--check runs the tiny model in fp32 on the CPU (or --device) and compares this file's forward with
mae_vqgan_ref.full_forward (tokens and MSE), so the baseline is known to compute the same function.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "test", "reference"))
import mae_vqgan_ref as ref  # noqa: E402

GMAC_PER_FORWARD = 114.7  # zero-shot, docs/method.md#compute
CANVASES = 10
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")  # torch >= 2.0
HAS_COMPILE = hasattr(torch, "compile")

# Token layout of the zero-shot forward (docs/method.md#zero-shot).
QUERY_IDS = [r * ref.GRID + c for r in range(ref.HALF, ref.GRID) for c in range(ref.HALF)]  # encoder patches
# Decoder tokens: CLS, then rows 7..13 (all columns): columns < 7 come from encoder slot 1 + (r-7)*7 + c,
# the others are mask tokens (slot 50 in the [y | mask_token] concatenation).
DEC_SRC = [0] + [1 + (r - ref.HALF) * ref.HALF + c if c < ref.HALF else ref.ZERO_SHOT_ENC_TOKENS
                 for r in range(ref.HALF, ref.GRID) for c in range(ref.GRID)]
DEC_POS = [0] + [1 + r * ref.GRID + c for r in range(ref.HALF, ref.GRID) for c in range(ref.GRID)]


def attention(q, k, v):
    if HAS_SDPA:
        return F.scaled_dot_product_attention(q, k, v)
    a = torch.softmax((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5, dim=-1)
    return a @ v


# ---- the forward, as plain functions over weight tensors (so one compiled graph serves every layer) ------

def transformer_block(x, n1w, n1b, qkv_w, qkv_b, proj_w, proj_b, n2w, n2b, fc1_w, fc1_b, fc2_w, fc2_b,
                      patch, means, heads: int, eps: float):
    """x [B,N,C]; patch bool [B,H,N,1]; means [H,N,dh] in this sequence's positions."""
    B, N, C = x.shape
    dh = C // heads
    h = F.layer_norm(x, (C,), n1w, n1b, eps)
    qkv = F.linear(h, qkv_w, qkv_b).reshape(B, N, 3, heads, dh).permute(2, 0, 3, 1, 4)
    o = attention(qkv[0], qkv[1], qkv[2])  # [B,H,N,dh]
    o = torch.where(patch, means.unsqueeze(0), o)
    x = x + F.linear(o.transpose(1, 2).reshape(B, N, C), proj_w, proj_b)
    h = F.layer_norm(x, (C,), n2w, n2b, eps)
    return x + F.linear(F.gelu(F.linear(h, fc1_w, fc1_b)), fc2_w, fc2_b)


def resnet_block(x, n1w, n1b, c1w, c1b, n2w, n2b, c2w, c2b, nin_w, nin_b, groups: int, eps: float):
    h = F.silu(F.group_norm(x, groups, n1w, n1b, eps))
    h = F.conv2d(h, c1w, c1b, padding=1)
    h = F.silu(F.group_norm(h, groups, n2w, n2b, eps))
    h = F.conv2d(h, c2w, c2b, padding=1)
    if nin_w is not None:
        x = F.conv2d(x, nin_w, nin_b)
    return x + h


def attn_block(x, nw, nb, qw, qb, kw, kb, vw, vb, pw, pb, groups: int, eps: float):
    B, C, H, W = x.shape
    h = F.group_norm(x, groups, nw, nb, eps)
    q = F.conv2d(h, qw, qb).flatten(2).transpose(1, 2).unsqueeze(1)  # [B,1,HW,C]
    k = F.conv2d(h, kw, kb).flatten(2).transpose(1, 2).unsqueeze(1)
    v = F.conv2d(h, vw, vb).flatten(2).transpose(1, 2).unsqueeze(1)
    o = attention(q, k, v)  # scale C**-0.5, as the reference
    o = o.squeeze(1).transpose(1, 2).reshape(B, C, H, W)
    return x + F.conv2d(o.contiguous(memory_format=torch.channels_last), pw, pb)


def upsample_conv(x, w, b):
    return F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w, b, padding=1)


def conv_out_pixels(x, nw, nb, w, b, groups: int, eps: float):
    h = F.silu(F.group_norm(x, groups, nw, nb, eps))
    return (F.conv2d(h, w, b, padding=1).clamp(-1.0, 1.0) + 1.0) / 2.0


def quadrant_mse(pixels, gt_norm, mean, std):
    """pixels [B,3,224,224] in [0,1] -> uint8 values (x255, clip, truncate) -> normalised crop vs gt_norm."""
    img = (pixels[:, :, ref.IMAGE - ref.CELL:, ref.IMAGE - ref.CELL:].float() * 255.0).clamp(0, 255).floor()
    a = (img / 255.0 - mean) / std
    return ((a - gt_norm) ** 2).flatten(1).mean(1)


class FastForward:
    """Weights on `device` in `dtype` (convolutions channels-last) and the whole zero-shot patched forward +
    decode + MSE as __call__. The block functions are attributes, so a copy can swap in compiled ones."""

    def __init__(self, W, cfg, device, dtype):
        self.cfg, self.device, self.dtype = cfg, device, dtype
        vq = cfg["vq"]
        self.groups, self.vq_eps, self.ln_eps = vq["groups"], vq["eps"], cfg["lnEps"]

        def t(key):
            w = W[key].to(device=device, dtype=dtype)
            if w.dim() == 4:
                w = w.contiguous(memory_format=torch.channels_last)
            return w

        self.t = t
        E, D = cfg["encDim"], cfg["decDim"]
        self.patch_w = W["patch_embed.proj.weight"].reshape(E, -1).to(device=device, dtype=dtype)
        self.patch_b = t("patch_embed.proj.bias")
        pos = W["pos_embed"][0]
        self.enc_pos = pos[[1 + i for i in QUERY_IDS]].to(device=device, dtype=dtype)
        self.cls = (W["cls_token"][0, 0] + pos[0]).to(device=device, dtype=dtype)
        blk = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
               "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
        self.enc = [[t(f"blocks.{l}.{k}") for k in blk] for l in range(cfg["encDepth"])]
        self.dec = [[t(f"decoder_blocks.{l}.{k}") for k in blk] for l in range(cfg["decDepth"])]
        self.norm = (t("norm.weight"), t("norm.bias"))
        self.dec_embed = (t("decoder_embed.weight"), t("decoder_embed.bias"))
        self.mask_token = W["mask_token"][0].to(device=device, dtype=dtype)  # [1,D]
        self.dec_src = torch.tensor(DEC_SRC, device=device)
        self.dec_pos = W["decoder_pos_embed"][0][DEC_POS].to(device=device, dtype=dtype)
        self.dec_norm = (t("decoder_norm.weight"), t("decoder_norm.bias"))
        self.pred = (t("decoder_pred.weight"), t("decoder_pred.bias"))
        self.codebook = t("vae.quantize.embedding.weight")
        self.pqc = (t("vae.post_quant_conv.weight"), t("vae.post_quant_conv.bias"))
        p = "vae.decoder"
        self.conv_in = (t(p + ".conv_in.weight"), t(p + ".conv_in.bias"))

        def resnet(prefix):
            nin = prefix + ".nin_shortcut.weight"
            return [t(prefix + k) for k in (".norm1.weight", ".norm1.bias", ".conv1.weight", ".conv1.bias",
                                             ".norm2.weight", ".norm2.bias", ".conv2.weight", ".conv2.bias")] + \
                ([t(nin), t(prefix + ".nin_shortcut.bias")] if nin in W else [None, None])

        def attn(prefix):
            return [t(prefix + k) for k in (".norm.weight", ".norm.bias", ".q.weight", ".q.bias", ".k.weight",
                                             ".k.bias", ".v.weight", ".v.bias", ".proj_out.weight", ".proj_out.bias")]

        self.mid = (resnet(p + ".mid.block_1"), attn(p + ".mid.attn_1"), resnet(p + ".mid.block_2"))
        levels = len(vq["chMult"])
        self.up = []
        for i in reversed(range(levels)):
            blocks = [resnet(f"{p}.up.{i}.block.{j}") for j in range(vq["numResBlocks"] + 1)]
            attns = [attn(f"{p}.up.{i}.attn.{j}") for j in range(vq["numResBlocks"] + 1)] if i == levels - 1 else []
            ups = (t(f"{p}.up.{i}.upsample.conv.weight"), t(f"{p}.up.{i}.upsample.conv.bias")) if i != 0 else None
            self.up.append((blocks, attns, ups))
        self.norm_out = (t(p + ".norm_out.weight"), t(p + ".norm_out.bias"))
        self.conv_out = (t(p + ".conv_out.weight"), t(p + ".conv_out.bias"))
        self.mean = torch.tensor(ref.IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(ref.IMAGENET_STD, device=device).view(1, 3, 1, 1)

        self.tblock, self.rblock, self.ablock = transformer_block, resnet_block, attn_block
        self.upconv, self.out = upsample_conv, conv_out_pixels

    def set_inputs(self, canvases, canvas_index, masks, means_enc, means_dec):
        """canvases [10,3,224,224] normalised; masks u8 [B, patch_bytes]; means in one-shot positions."""
        cfg, dev = self.cfg, self.device
        self.canvases = canvases.to(dev, self.dtype)
        self.canvas_index = canvas_index.to(dev)
        self.masks = masks.to(dev)
        rows_e = ref.zero_shot_one_shot_rows(ref.ONE_SHOT_ENC_TOKENS)
        rows_d = ref.zero_shot_one_shot_rows(ref.ONE_SHOT_DEC_TOKENS)
        He, Hd = cfg["encHeads"], cfg["decHeads"]
        # [L, N, C] -> [L, H, N, dh], the layout of SDPA's output.
        me = means_enc[:, rows_e].reshape(cfg["encDepth"], len(rows_e), He, -1).permute(0, 2, 1, 3)
        md = means_dec[:, rows_d].reshape(cfg["decDepth"], len(rows_d), Hd, -1).permute(0, 2, 1, 3)
        self.means_enc = me.contiguous().to(dev, self.dtype)
        self.means_dec = md.contiguous().to(dev, self.dtype)
        gt = ref.canvas_to_images(canvases.float().cpu())
        gt = ref.quadrant(gt).to(dev).float() / 255.0
        self.gt_norm = (gt - self.mean) / self.std  # [10,3,111,111]

    def unpack_masks(self):
        """Packed bits (byte i>>3, bit i&7) -> bool [B, L, H, N, 1] per part, on the device."""
        cfg = self.cfg
        B = self.masks.shape[0]
        shifts = torch.arange(8, device=self.device, dtype=torch.uint8)
        bits = ((self.masks.unsqueeze(-1) >> shifts) & 1).bool().reshape(B, -1)
        ne, nd = ref.ZERO_SHOT_ENC_TOKENS, ref.ZERO_SHOT_DEC_TOKENS
        E = cfg["encDepth"] * cfg["encHeads"] * ne
        D = cfg["decDepth"] * cfg["decHeads"] * nd
        enc = bits[:, :E].reshape(B, cfg["encDepth"], cfg["encHeads"], ne, 1)
        dec = bits[:, E:E + D].reshape(B, cfg["decDepth"], cfg["decHeads"], nd, 1)
        return enc, dec

    def mae_embed(self, canvases, canvas_index, patch_w, patch_b, enc_pos, cls):
        """The 49 query patches of each sample's canvas -> encoder tokens [B,50,E]."""
        q = canvases[:, :, ref.IMAGE // 2:, :ref.IMAGE // 2]  # rows 7..13, columns 0..6 of the patch grid
        n = q.shape[0]
        patches = q.reshape(n, 3, ref.HALF, ref.PATCH, ref.HALF, ref.PATCH).permute(0, 2, 4, 1, 3, 5)
        patches = patches.reshape(n, ref.HALF * ref.HALF, 3 * ref.PATCH * ref.PATCH)
        x = F.linear(patches, patch_w, patch_b) + enc_pos  # [10,49,E]
        x = x[canvas_index]
        return torch.cat([cls.expand(x.shape[0], 1, -1), x], dim=1)

    def mae_head(self, x, nw, nb, ew, eb, mask_token, dec_src, dec_pos, eps: float):
        """Encoder norm, decoder_embed, the decoder's 99 tokens."""
        x = F.layer_norm(x, (x.shape[-1],), nw, nb, eps)
        y = F.linear(x, ew, eb)
        y = torch.cat([y, mask_token.expand(y.shape[0], 1, -1)], dim=1)
        return y[:, dec_src] + dec_pos

    def mae(self):
        cfg, eps = self.cfg, self.ln_eps
        enc_patch, dec_patch = self.unpack_masks()
        x = self.mae_embed(self.canvases, self.canvas_index, self.patch_w, self.patch_b, self.enc_pos, self.cls)
        for l, w in enumerate(self.enc):
            x = self.tblock(x, *w, enc_patch[:, l], self.means_enc[l], cfg["encHeads"], eps)
        y = self.mae_head(x, *self.norm, *self.dec_embed, self.mask_token, self.dec_src, self.dec_pos, eps)
        for l, w in enumerate(self.dec):
            y = self.tblock(y, *w, dec_patch[:, l], self.means_dec[l], cfg["decHeads"], eps)
        y = F.layer_norm(y, (y.shape[-1],), *self.dec_norm, eps)
        logits = F.linear(y[:, 1:], *self.pred)  # [B,98,V]
        t = logits.argmax(-1)
        return torch.cat([t, t], dim=1)  # [B,196]: the 98 predictions fill both halves

    def vqgan(self, tokens):
        g, eps = self.groups, self.vq_eps
        B = tokens.shape[0]
        z = self.codebook[tokens].reshape(B, ref.GRID, ref.GRID, -1).permute(0, 3, 1, 2)  # channels-last NCHW
        z = F.conv2d(z, *self.pqc)
        h = F.conv2d(z, *self.conv_in, padding=1)
        r1, a, r2 = self.mid
        h = self.rblock(h, *r1, g, eps)
        h = self.ablock(h, *a, g, eps)
        h = self.rblock(h, *r2, g, eps)
        for blocks, attns, ups in self.up:
            for j, rw in enumerate(blocks):
                h = self.rblock(h, *rw, g, eps)
                if attns:
                    h = self.ablock(h, *attns[j], g, eps)
            if ups is not None:
                h = self.upconv(h, *ups)
        return self.out(h, *self.norm_out, *self.conv_out, g, eps)

    def loss(self, pixels):
        return quadrant_mse(pixels, self.gt_norm[self.canvas_index], self.mean, self.std)

    def __call__(self):
        tokens = self.mae()
        return self.loss(self.vqgan(tokens)), tokens


# ---- inputs -------------------------------------------------------------------------------------------

def make_inputs(cfg, batch, seed):
    g = torch.Generator().manual_seed(seed)
    canvases = torch.randn(CANVASES, 3, ref.IMAGE, ref.IMAGE, generator=g)
    canvas_index = torch.arange(batch) % CANVASES
    means_enc = 0.5 * torch.randn(cfg["encDepth"], ref.ONE_SHOT_ENC_TOKENS, cfg["encDim"], generator=g)
    means_dec = 0.5 * torch.randn(cfg["decDepth"], ref.ONE_SHOT_DEC_TOKENS, cfg["decDim"], generator=g)
    rng = np.random.RandomState(seed + 1)
    bits = ref.patch_bits(cfg, "zero-shot")
    on = rng.random_sample((batch, ref.patch_bytes(cfg, "zero-shot") * 8)) < 0.269  # sigmoid(-1)
    on[:, bits:] = False
    masks = torch.from_numpy(np.packbits(on, axis=1, bitorder="little"))
    return canvases, canvas_index, masks, means_enc, means_dec


# ---- timing -------------------------------------------------------------------------------------------

def timed(fn, repeats, cuda):
    """Median milliseconds of fn() over `repeats` calls (CUDA events on a GPU, else wall time)."""
    times = []
    for _ in range(repeats):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def measure(ff, repeats, warmup, cuda):
    """Whole forward, and its MAE and VQGAN parts, after warm-up."""
    tokens = None
    for _ in range(warmup):
        _, tokens = ff()
    if cuda:
        torch.cuda.synchronize()
    total = timed(ff, repeats, cuda)
    mae = timed(ff.mae, repeats, cuda)
    vq = timed(lambda: ff.loss(ff.vqgan(tokens)), repeats, cuda)
    return total, mae, vq


def check(args):
    """The tiny model in fp32: this file's forward against mae_vqgan_ref.full_forward."""
    cfg = ref.preset("tiny")
    W = ref.random_weights(cfg, args.seed, include_vqgan_encoder=False)
    canvases, canvas_index, masks, me, md = make_inputs(cfg, args.check_batch, args.seed + 1)
    ff = FastForward(W, cfg, torch.device(args.device), torch.float32)
    ff.set_inputs(canvases, canvas_index, masks, me, md)
    with torch.no_grad():
        loss, tokens = ff()
        out = ref.full_forward(W, cfg, canvases[canvas_index], "zero-shot", masks, me, md)
    agree = (tokens.cpu().int() == out["tokens"]).float().mean().item()
    err = (loss.cpu().double() - out["mse"].double()).abs().max().item()
    ok = agree == 1.0 and err < 1e-3
    print(json.dumps({"check": "fast forward vs mae_vqgan_ref (tiny, fp32)", "token_agreement": agree,
                      "max_mse_diff": err, "ok": ok}))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="mae-vqgan-vit-large", choices=sorted(ref.PRESETS))
    ap.add_argument("--batch", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=5, help="timed forwards per mode (median)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--no-compile", action="store_true", help="eager only")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="compare with the reference on the tiny model and exit")
    ap.add_argument("--check-batch", type=int, default=3)
    args = ap.parse_args()
    if args.check:
        return check(args)
    if args.batch < 1 or args.repeats < 1 or args.warmup < 1:
        ap.error("--batch, --repeats and --warmup must be >= 1")
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    cfg = ref.preset(args.config)
    t0 = time.time()
    W = ref.random_weights(cfg, args.seed, include_vqgan_encoder=False)
    inputs = make_inputs(cfg, args.batch, args.seed + 1)
    t_weights = time.time() - t0
    result = {"impl": "pytorch-gpu-baseline", "torch": torch.__version__, "config": cfg["name"], "batch": args.batch,
              "dtype": args.dtype, "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
              "repeats": args.repeats, "gmac_per_forward": GMAC_PER_FORWARD, "seconds_weights": round(t_weights, 1)}

    def rates(prefix, total, mae, vq):
        fps = args.batch / (total / 1e3)
        result.update({f"{prefix}_fps": round(fps, 1), f"{prefix}_ms": round(total, 2), f"{prefix}_mae_ms": round(mae, 2),
                       f"{prefix}_vqgan_ms": round(vq, 2),
                       f"{prefix}_tflops": round(fps * GMAC_PER_FORWARD * 2e9 / 1e12, 1)})

    with torch.no_grad():
        ff = FastForward(W, cfg, dev, dtype)
        ff.set_inputs(*inputs)
        del W
        rates("eager", *measure(ff, args.repeats, args.warmup, cuda))
        print(json.dumps({"progress": "eager done", "eager_fps": result["eager_fps"]}), file=sys.stderr, flush=True)
        if not args.no_compile:
            if not HAS_COMPILE:
                result["compile_error"] = f"torch {torch.__version__} has no torch.compile"
            else:
                import torch._dynamo as dynamo
                for name in ("recompile_limit", "cache_size_limit"):  # one graph per block shape (~12)
                    if hasattr(dynamo.config, name):
                        setattr(dynamo.config, name, 64)
                cf = FastForward.__new__(FastForward)
                cf.__dict__.update(ff.__dict__)
                cf.tblock = torch.compile(transformer_block, dynamic=False)
                cf.rblock = torch.compile(resnet_block, dynamic=False)
                cf.ablock = torch.compile(attn_block, dynamic=False)
                cf.upconv = torch.compile(upsample_conv, dynamic=False)
                cf.out = torch.compile(conv_out_pixels, dynamic=False)
                t0 = time.time()
                cf()
                if cuda:
                    torch.cuda.synchronize()
                result["compile_seconds"] = round(time.time() - t0, 1)
                rates("compile", *measure(cf, args.repeats, args.warmup, cuda))
                loss_e, tok_e = ff()
                loss_c, tok_c = cf()
                result["compile_vs_eager_token_agreement"] = round((tok_e == tok_c).float().mean().item(), 4)
                result["compile_vs_eager_max_mse_diff"] = round((loss_e.float() - loss_c.float()).abs().max().item(), 5)
                result["speedup_compile_over_eager"] = round(result["compile_fps"] / result["eager_fps"], 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
