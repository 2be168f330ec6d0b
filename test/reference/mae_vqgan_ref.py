"""Plain-PyTorch reference of MAE-VQGAN with activation patching, written from docs/method.md.

fp32, explicit ops, no nn.Module: weights are a flat {key: tensor} dict with the checkpoint key names
of docs/method.md#model (MAE keys as they are, the VQGAN under 'vae.'). The parity tests compare the engine with
this file, so it follows docs/method.md literally rather than fast:
  - MAE encoder/decoder, one-shot (docs/method.md#model 'MAE forward at inference') and zero-shot (docs/method.md#patching);
  - head patching and capture on the pre-projection head outputs O [B, N, H, dh];
  - argmax tokens (zero-shot: duplicated), VQGAN decode, pixels, uint8 images;
  - per-sample IoU / MSE on the bottom-right quadrant (docs/method.md#canvas);
  - the VQGAN encoder + nearest-code quantisation (docs/method.md#model 'VQGAN encoder').
"""
import json
import math
import pathlib

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------
# Constants and configs, read from the one definition the engine and TypeScript use too
# (src/model-constants.json; camelCase fields so the JSON is the same).

_CONSTANTS = json.loads((pathlib.Path(__file__).resolve().parents[2] / "src" / "model-constants.json").read_text())
_C = _CONSTANTS["canvas"]
IMAGE, PATCH, GRID, HALF, CELL = _C["image"], _C["patch"], _C["grid"], _C["half"], _C["cell"]
ONE_SHOT_ENC_TOKENS, ONE_SHOT_DEC_TOKENS = _C["oneShotEncTokens"], _C["oneShotDecTokens"]
ZERO_SHOT_ENC_TOKENS, ZERO_SHOT_DEC_TOKENS = _C["zeroShotEncTokens"], _C["zeroShotDecTokens"]
ZERO_SHOT_SHIFT = _C["zeroShotShift"]
IMAGENET_MEAN = tuple(_CONSTANTS["imagenet"]["mean"])
IMAGENET_STD = tuple(_CONSTANTS["imagenet"]["std"])
MODES = ("one-shot", "zero-shot")

PRESETS = {p["name"]: p for p in _CONSTANTS["presets"]}


def preset(name):
    if name not in PRESETS:
        raise ValueError(f"unknown model preset '{name}' (known: {', '.join(PRESETS)})")
    return json.loads(json.dumps(PRESETS[name]))


def enc_tokens(mode):
    return ONE_SHOT_ENC_TOKENS if mode == "one-shot" else ZERO_SHOT_ENC_TOKENS


def dec_tokens(mode):
    return ONE_SHOT_DEC_TOKENS if mode == "one-shot" else ZERO_SHOT_DEC_TOKENS


def patch_bits(cfg, mode):
    return cfg["encDepth"] * cfg["encHeads"] * enc_tokens(mode) + cfg["decDepth"] * cfg["decHeads"] * dec_tokens(mode)


def patch_bytes(cfg, mode):
    return (patch_bits(cfg, mode) + 7) // 8


def patch_bit_index(cfg, mode, layer, head, pos):
    """Layers 0..encDepth-1 are the encoder, then the decoder (same as src/config.ts patchBitIndex)."""
    if layer < cfg["encDepth"]:
        return (layer * cfg["encHeads"] + head) * enc_tokens(mode) + pos
    l = layer - cfg["encDepth"]
    return cfg["encDepth"] * cfg["encHeads"] * enc_tokens(mode) + (l * cfg["decHeads"] + head) * dec_tokens(mode) + pos


# ---------------------------------------------------------------------------------------------------
# Token bookkeeping of the 2x2 canvas (docs/method.md#model 'Inference mask').

def kept_ids():
    """Visible patch ids in raster order: rows 0-6 (all columns), then rows 7-13 columns 0-6 (147)."""
    return [r * GRID + c for r in range(GRID) for c in range(GRID) if r < HALF or c < HALF]


def masked_ids():
    """The bottom-right 7x7 quadrant in raster order (49)."""
    return [r * GRID + c for r in range(HALF, GRID) for c in range(HALF, GRID)]


def ids_shuffle():
    return torch.tensor(kept_ids() + masked_ids(), dtype=torch.long)


def zero_shot_one_shot_rows(n_one_shot):
    """One-shot rows read by zero-shot positions: 0 for CLS, p+98 for p >= 1."""
    n_zero_shot = n_one_shot - ZERO_SHOT_SHIFT
    return torch.tensor([0] + [p + ZERO_SHOT_SHIFT for p in range(1, n_zero_shot)], dtype=torch.long)


# ---------------------------------------------------------------------------------------------------
# Positional embedding (docs/method.md#model; MAE util/pos_embed.py, computed in float64 then cast like MAE does).

def _sincos_1d(width, pos):
    omega = np.arange(width // 2, dtype=np.float64) / (width / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def sincos_pos_embed(width, grid=GRID):
    """[1 + grid*grid, width]: row 0 (CLS) zeros; the first half encodes the column, the second the row."""
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")  # token t = r*grid + c
    emb = np.concatenate([_sincos_1d(width // 2, cols), _sincos_1d(width // 2, rows)], axis=1)
    emb = np.concatenate([np.zeros((1, width)), emb], axis=0)
    return torch.from_numpy(emb.astype(np.float32))


# ---------------------------------------------------------------------------------------------------
# MAE transformer block with patching and capture (docs/method.md#model block forward, §4 patching).

def _linear(x, W, prefix):
    return F.linear(x, W[prefix + ".weight"], W[prefix + ".bias"])


def transformer_block(x, W, prefix, heads, eps, patch=None, means=None, capture=None):
    """x [B,N,C]. patch: bool [B,H,N] (which (head, position) to replace), means: [N,H,dh] already in
    this sequence's positions. capture: a [N,C] tensor that receives += sum over the batch of O (after
    patching), channel h*dh+j."""
    B, N, C = x.shape
    dh = C // heads
    h = F.layer_norm(x, (C,), W[prefix + ".norm1.weight"], W[prefix + ".norm1.bias"], eps)
    qkv = _linear(h, W, prefix + ".attn.qkv").reshape(B, N, 3, heads, dh).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]  # [B,H,N,dh]
    attn = torch.softmax((q @ k.transpose(-2, -1)) * dh ** -0.5, dim=-1)
    O = (attn @ v).transpose(1, 2)  # [B,N,H,dh]
    if patch is not None:
        sel = patch.permute(0, 2, 1).unsqueeze(-1)  # [B,N,H,1]
        O = torch.where(sel, means.unsqueeze(0).expand_as(O), O)
    if capture is not None:
        capture += O.sum(0).reshape(N, C)
    x = x + _linear(O.reshape(B, N, C), W, prefix + ".attn.proj")
    h = F.layer_norm(x, (C,), W[prefix + ".norm2.weight"], W[prefix + ".norm2.bias"], eps)
    return x + _linear(F.gelu(_linear(h, W, prefix + ".mlp.fc1")), W, prefix + ".mlp.fc2")


def unpack_patch_mask(cfg, mode, mask_bytes):
    """u8 [B, patch_bytes] -> (enc bool [B,encDepth,encHeads,Ne], dec bool [B,decDepth,decHeads,Nd]).
    Bit i is byte i>>3, bit i&7 (little-endian bit order)."""
    mask_bytes = torch.as_tensor(mask_bytes, dtype=torch.uint8)
    B = mask_bytes.shape[0]
    if mask_bytes.shape[1] != patch_bytes(cfg, mode):
        raise ValueError(f"patch mask: expected {patch_bytes(cfg, mode)} bytes per sample for {mode}, got {mask_bytes.shape[1]}")
    bits = torch.from_numpy(np.unpackbits(mask_bytes.numpy(), axis=1, bitorder="little").astype(bool))
    ne, nd = enc_tokens(mode), dec_tokens(mode)
    E = cfg["encDepth"] * cfg["encHeads"] * ne
    D = cfg["decDepth"] * cfg["decHeads"] * nd
    if bits[:, E + D:].any():
        raise ValueError("patch mask: bits past the last (layer, head, position) must be zero")
    enc = bits[:, :E].reshape(B, cfg["encDepth"], cfg["encHeads"], ne)
    dec = bits[:, E:E + D].reshape(B, cfg["decDepth"], cfg["decHeads"], nd)
    return enc, dec


def _means_for_mode(table, heads, mode):
    """table [depth, N_one_shot, C] -> [depth, N_mode, heads, dh] in this mode's positions."""
    depth, n, C = table.shape
    if mode == "zero-shot":
        table = table[:, zero_shot_one_shot_rows(n)]
    return table.reshape(depth, table.shape[1], heads, C // heads)


def mae_forward(W, cfg, canvases, mode, patch_mask=None, means_enc=None, means_dec=None, capture=False):
    """canvases [B,3,224,224] ImageNet-normalised. Returns a dict with encoder_out [B,Ne,encDim] (after
    norm), decoder_out [B,Nd,decDim] (after decoder_norm, CLS included), logits [B,P,V] (CLS dropped),
    and capture_enc [encDepth,Ne,encDim], capture_dec [decDepth,Nd,decDim] when capture is set."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got '{mode}'")
    B = canvases.shape[0]
    eps = cfg["lnEps"]
    enc_dim, dec_dim = cfg["encDim"], cfg["decDim"]
    if patch_mask is not None:
        enc_patch, dec_patch = unpack_patch_mask(cfg, mode, patch_mask)
        m_enc = _means_for_mode(means_enc, cfg["encHeads"], mode)
        m_dec = _means_for_mode(means_dec, cfg["decHeads"], mode)
    cap_enc = torch.zeros(cfg["encDepth"], enc_tokens(mode), enc_dim) if capture else None
    cap_dec = torch.zeros(cfg["decDepth"], dec_tokens(mode), dec_dim) if capture else None

    # Encoder: patch-embed, add pos_embed[1:], keep the visible patches, prepend CLS.
    pos = W["pos_embed"][0]
    x = F.conv2d(canvases, W["patch_embed.proj.weight"], W["patch_embed.proj.bias"], stride=PATCH)
    x = x.flatten(2).transpose(1, 2) + pos[1:]
    shuffle = ids_shuffle()
    x = x[:, shuffle[:len(kept_ids())]]
    cls = (W["cls_token"][0, 0] + pos[0]).expand(B, 1, enc_dim)
    x = torch.cat([cls, x], dim=1)  # [B,148,D]
    if mode == "zero-shot":
        x = x[:, [0] + list(range(1 + ZERO_SHOT_SHIFT, ONE_SHOT_ENC_TOKENS))]  # CLS + 49 query patches
    for l in range(cfg["encDepth"]):
        x = transformer_block(x, W, f"blocks.{l}", cfg["encHeads"], eps,
                              patch=enc_patch[:, l] if patch_mask is not None else None,
                              means=m_enc[l] if patch_mask is not None else None,
                              capture=cap_enc[l] if capture else None)
    x = F.layer_norm(x, (enc_dim,), W["norm.weight"], W["norm.bias"], eps)
    encoder_out = x

    # Encoder -> decoder: embed, (zero-shot: scatter into 148 slots), append mask tokens, un-shuffle.
    y = _linear(x, W, "decoder_embed")
    if mode == "zero-shot":
        full = torch.zeros(B, ONE_SHOT_ENC_TOKENS, dec_dim)
        full[:, 0] = y[:, 0]
        full[:, 1 + ZERO_SHOT_SHIFT:] = y[:, 1:]
        y = full
    n_mask = GRID * GRID + 1 - y.shape[1]
    y = torch.cat([y, W["mask_token"].expand(B, n_mask, dec_dim)], dim=1)  # [B,197,Dd], shuffled order
    ids_restore = torch.argsort(shuffle)
    body = torch.gather(y[:, 1:], 1, ids_restore.view(1, -1, 1).expand(B, -1, dec_dim))
    y = torch.cat([y[:, :1], body], dim=1) + W["decoder_pos_embed"][0]
    if mode == "zero-shot":
        y = y[:, [0] + list(range(1 + ZERO_SHOT_SHIFT, ONE_SHOT_DEC_TOKENS))]  # CLS + rows 7..13
    for l in range(cfg["decDepth"]):
        y = transformer_block(y, W, f"decoder_blocks.{l}", cfg["decHeads"], eps,
                              patch=dec_patch[:, l] if patch_mask is not None else None,
                              means=m_dec[l] if patch_mask is not None else None,
                              capture=cap_dec[l] if capture else None)
    y = F.layer_norm(y, (dec_dim,), W["decoder_norm.weight"], W["decoder_norm.bias"], eps)
    out = {"encoder_out": encoder_out, "decoder_out": y, "logits": _linear(y, W, "decoder_pred")[:, 1:]}
    if capture:
        out["capture_enc"], out["capture_dec"] = cap_enc, cap_dec
    return out


def logits_to_tokens(logits):
    """argmax over the vocab for every position; zero-shot's 98 predictions fill both halves (docs/method.md#patching)."""
    y = logits.argmax(-1)
    if y.shape[1] == GRID * GRID // 2:
        y = torch.cat([y, y], dim=1)
    return y.to(torch.int32)


# ---------------------------------------------------------------------------------------------------
# VQGAN (taming-transformers f16 decoder / encoder, docs/method.md#model).

def _conv(x, W, prefix, stride=1, padding=0):
    return F.conv2d(x, W[prefix + ".weight"], W[prefix + ".bias"], stride=stride, padding=padding)


def _group_norm(x, W, prefix, vq):
    return F.group_norm(x, vq["groups"], W[prefix + ".weight"], W[prefix + ".bias"], vq["eps"])


def _swish(x):
    return x * torch.sigmoid(x)


def resnet_block(x, W, prefix, vq):
    h = _conv(_swish(_group_norm(x, W, prefix + ".norm1", vq)), W, prefix + ".conv1", padding=1)
    h = _conv(_swish(_group_norm(h, W, prefix + ".norm2", vq)), W, prefix + ".conv2", padding=1)
    if prefix + ".nin_shortcut.weight" in W:
        x = _conv(x, W, prefix + ".nin_shortcut")
    return x + h


def attn_block(x, W, prefix, vq):
    B, C, H, Wd = x.shape
    h = _group_norm(x, W, prefix + ".norm", vq)
    q = _conv(h, W, prefix + ".q").reshape(B, C, H * Wd).permute(0, 2, 1)  # [B,HW,C]
    k = _conv(h, W, prefix + ".k").reshape(B, C, H * Wd)  # [B,C,HW]
    v = _conv(h, W, prefix + ".v").reshape(B, C, H * Wd)
    a = torch.softmax(torch.bmm(q, k) * C ** -0.5, dim=2)  # [B,HWq,HWk]
    h = torch.bmm(v, a.permute(0, 2, 1)).reshape(B, C, H, Wd)
    return x + _conv(h, W, prefix + ".proj_out")


def vqgan_decode(W, cfg, tokens):
    """tokens int [B,196] -> pixels f32 [B,3,224,224] in [0,1] (clamp, then (x+1)/2)."""
    vq = cfg["vq"]
    B = tokens.shape[0]
    z = W["vae.quantize.embedding.weight"][tokens.long()]  # [B,196,E]
    z = z.reshape(B, GRID, GRID, vq["embedDim"]).permute(0, 3, 1, 2).contiguous()
    x = vqgan_decode_latent(W, cfg, z)
    return (x.clamp(-1.0, 1.0) + 1.0) / 2.0


def vqgan_decode_latent(W, cfg, z):
    """Codebook vectors z [B,E,h,w] -> the decoder's output [B,3,16h,16w] before the clamp (in [-1, 1]
    when trained). vqgan_decode is this after the codebook lookup; train/ trains through it."""
    vq = cfg["vq"]
    z = _conv(z, W, "vae.post_quant_conv")
    p = "vae.decoder"
    h = _conv(z, W, p + ".conv_in", padding=1)
    h = resnet_block(h, W, p + ".mid.block_1", vq)
    h = attn_block(h, W, p + ".mid.attn_1", vq)
    h = resnet_block(h, W, p + ".mid.block_2", vq)
    levels = len(vq["chMult"])
    for i in reversed(range(levels)):
        for j in range(vq["numResBlocks"] + 1):
            h = resnet_block(h, W, f"{p}.up.{i}.block.{j}", vq)
            if i == levels - 1:  # attention only at the 14x14 level (attn_resolutions [16] at 256 px)
                h = attn_block(h, W, f"{p}.up.{i}.attn.{j}", vq)
        if i != 0:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = _conv(h, W, f"{p}.up.{i}.upsample.conv", padding=1)
    h = _swish(_group_norm(h, W, p + ".norm_out", vq))
    return _conv(h, W, p + ".conv_out", padding=1)


def pixels_to_images(pixels):
    """x255, clip to [0,255], truncate (.int()) -> uint8."""
    return (pixels * 255.0).clip(0, 255).to(torch.int32).to(torch.uint8)


def map_pixels(canvases):
    """ImageNet-normalised -> [-1, 1] VQGAN input: 2*(x*std+mean) - 1."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return 2.0 * (canvases * std + mean) - 1.0


def vqgan_encode(W, cfg, canvases):
    """canvases [B,3,224,224] ImageNet-normalised -> nearest-code tokens int32 [B,196] (raster order)."""
    z = vqgan_encode_latent(W, cfg, map_pixels(canvases))  # [B,E,14,14]
    B, E = z.shape[:2]
    zf = z.permute(0, 2, 3, 1).reshape(B * GRID * GRID, E)
    code = W["vae.quantize.embedding.weight"]
    d = (zf ** 2).sum(1, keepdim=True) + (code ** 2).sum(1) - 2.0 * zf @ code.t()
    return d.argmin(1).reshape(B, GRID * GRID).to(torch.int32)


def vqgan_encode_latent(W, cfg, x):
    """Pixels in [-1, 1] [B,3,H,W] -> the encoder's latent after quant_conv [B,E,H/16,W/16], before
    quantisation. vqgan_encode is this followed by the nearest code; train/ trains through it."""
    vq = cfg["vq"]
    levels = len(vq["chMult"])
    p = "vae.encoder"
    h = _conv(x, W, p + ".conv_in", padding=1)
    for i in range(levels):
        for j in range(vq["numResBlocks"]):
            h = resnet_block(h, W, f"{p}.down.{i}.block.{j}", vq)
            if i == levels - 1:
                h = attn_block(h, W, f"{p}.down.{i}.attn.{j}", vq)
        if i != levels - 1:
            h = F.pad(h, (0, 1, 0, 1))
            h = _conv(h, W, f"{p}.down.{i}.downsample.conv", stride=2)
    h = resnet_block(h, W, p + ".mid.block_1", vq)
    h = attn_block(h, W, p + ".mid.attn_1", vq)
    h = resnet_block(h, W, p + ".mid.block_2", vq)
    h = _swish(_group_norm(h, W, p + ".norm_out", vq))
    h = _conv(h, W, p + ".conv_out", padding=1)
    return _conv(h, W, "vae.quant_conv")


# ---------------------------------------------------------------------------------------------------
# Metrics on the bottom-right quadrant (docs/method.md#canvas).

def canvas_to_images(canvases):
    """Ground truth as uint8 [B,3,224,224]: the 8-bit values the canvas was made from.

    The VTV code computes clip((canvas*std+mean)*255).int() on a canvas it normalised in float64, which
    gives the original bytes back exactly. Our canvases are float32, where the same truncation would
    return v-1 for about 16% of values, so we round to nearest: that recovers the same original bytes."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    return torch.round((canvases.double() * std + mean) * 255.0).clip(0, 255).to(torch.int32).to(torch.uint8)


def quadrant(images):
    return images[:, :, IMAGE - CELL:, IMAGE - CELL:]


def quadrant_iou(pred_images, gt_images):
    """Per-image IoU of foreground (R+G+B > 382.5) on [113:224, 113:224]; both empty -> 1.0."""
    fp = quadrant(pred_images).to(torch.int64).sum(1) > 382.5
    fg = quadrant(gt_images).to(torch.int64).sum(1) > 382.5
    inter = (fp & fg).flatten(1).sum(1).double()
    union = (fp | fg).flatten(1).sum(1).double()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return iou.float()


def quadrant_mse(pred_images, gt_images):
    """Mean squared difference of both crops in ImageNet-normalised space, over 3x111x111."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    a = (quadrant(pred_images).double() / 255.0 - mean) / std
    b = (quadrant(gt_images).double() / 255.0 - mean) / std
    return ((a - b) ** 2).flatten(1).mean(1).float()


# ---------------------------------------------------------------------------------------------------
# The whole forward used by the search (docs/method.md#model): MAE -> argmax -> duplicate -> decode -> metrics.

def full_forward(W, cfg, canvases, mode, patch_mask=None, means_enc=None, means_dec=None, capture=False):
    out = mae_forward(W, cfg, canvases, mode, patch_mask, means_enc, means_dec, capture)
    out["tokens"] = logits_to_tokens(out["logits"])
    out["pixels"] = vqgan_decode(W, cfg, out["tokens"])
    out["images"] = pixels_to_images(out["pixels"])
    gt = canvas_to_images(canvases)
    out["iou"] = quadrant_iou(out["images"], gt)
    out["mse"] = quadrant_mse(out["images"], gt)
    return out


# ---------------------------------------------------------------------------------------------------
# Random weights. Scales are chosen so activations stay O(1) in every layer, attention and softmax
# logits have std about 1 (neither uniform nor one-hot), and argmax tokens vary across positions: a
# trained-init std of 0.02 would make a tiny model's logits nearly constant and the test meaningless.

def _vqgan_decoder_shapes(cfg):
    vq = cfg["vq"]
    shapes = {}
    E, Z = vq["embedDim"], vq["zChannels"]
    shapes["vae.quantize.embedding.weight"] = ("code", [vq["nEmbed"], E])
    _conv_shapes(shapes, "vae.post_quant_conv", Z, E, 1)
    levels = len(vq["chMult"])
    block_in = vq["ch"] * vq["chMult"][-1]
    p = "vae.decoder"
    _conv_shapes(shapes, p + ".conv_in", block_in, Z, 3)
    _resnet_shapes(shapes, p + ".mid.block_1", block_in, block_in)
    _attn_shapes(shapes, p + ".mid.attn_1", block_in)
    _resnet_shapes(shapes, p + ".mid.block_2", block_in, block_in)
    for i in reversed(range(levels)):
        block_out = vq["ch"] * vq["chMult"][i]
        for j in range(vq["numResBlocks"] + 1):
            _resnet_shapes(shapes, f"{p}.up.{i}.block.{j}", block_in, block_out)
            block_in = block_out
            if i == levels - 1:
                _attn_shapes(shapes, f"{p}.up.{i}.attn.{j}", block_in)
        if i != 0:
            _conv_shapes(shapes, f"{p}.up.{i}.upsample.conv", block_in, block_in, 3)
    shapes[p + ".norm_out.weight"] = ("norm_w", [block_in])
    shapes[p + ".norm_out.bias"] = ("bias", [block_in])
    _conv_shapes(shapes, p + ".conv_out", 3, block_in, 3, gain=0.6)
    return shapes


def _vqgan_encoder_shapes(cfg):
    vq = cfg["vq"]
    shapes = {}
    levels = len(vq["chMult"])
    in_mult = [1] + list(vq["chMult"])
    p = "vae.encoder"
    _conv_shapes(shapes, p + ".conv_in", vq["ch"], 3, 3)
    block_in = vq["ch"]
    for i in range(levels):
        block_in = vq["ch"] * in_mult[i]
        block_out = vq["ch"] * vq["chMult"][i]
        for j in range(vq["numResBlocks"]):
            _resnet_shapes(shapes, f"{p}.down.{i}.block.{j}", block_in, block_out)
            block_in = block_out
            if i == levels - 1:
                _attn_shapes(shapes, f"{p}.down.{i}.attn.{j}", block_in)
        if i != levels - 1:
            _conv_shapes(shapes, f"{p}.down.{i}.downsample.conv", block_in, block_in, 3)
    _resnet_shapes(shapes, p + ".mid.block_1", block_in, block_in)
    _attn_shapes(shapes, p + ".mid.attn_1", block_in)
    _resnet_shapes(shapes, p + ".mid.block_2", block_in, block_in)
    shapes[p + ".norm_out.weight"] = ("norm_w", [block_in])
    shapes[p + ".norm_out.bias"] = ("bias", [block_in])
    _conv_shapes(shapes, p + ".conv_out", vq["zChannels"], block_in, 3)
    _conv_shapes(shapes, "vae.quant_conv", vq["embedDim"], vq["zChannels"], 1)
    return shapes


def _conv_shapes(shapes, prefix, cout, cin, k, gain=1.0):
    shapes[prefix + ".weight"] = (("fan", gain), [cout, cin, k, k])
    shapes[prefix + ".bias"] = ("bias", [cout])


def _resnet_shapes(shapes, prefix, cin, cout):
    shapes[prefix + ".norm1.weight"] = ("norm_w", [cin])
    shapes[prefix + ".norm1.bias"] = ("bias", [cin])
    _conv_shapes(shapes, prefix + ".conv1", cout, cin, 3)
    shapes[prefix + ".norm2.weight"] = ("norm_w", [cout])
    shapes[prefix + ".norm2.bias"] = ("bias", [cout])
    _conv_shapes(shapes, prefix + ".conv2", cout, cout, 3, gain=0.5)
    if cin != cout:
        _conv_shapes(shapes, prefix + ".nin_shortcut", cout, cin, 1)


def _attn_shapes(shapes, prefix, c):
    shapes[prefix + ".norm.weight"] = ("norm_w", [c])
    shapes[prefix + ".norm.bias"] = ("bias", [c])
    for name in ("q", "k", "v"):
        _conv_shapes(shapes, f"{prefix}.{name}", c, c, 1)
    _conv_shapes(shapes, prefix + ".proj_out", c, c, 1, gain=0.5)


def _mae_block_shapes(shapes, prefix, dim, hidden):
    shapes[prefix + ".norm1.weight"] = ("norm_w", [dim])
    shapes[prefix + ".norm1.bias"] = ("bias", [dim])
    shapes[prefix + ".attn.qkv.weight"] = (("fan", 1.0), [3 * dim, dim])
    shapes[prefix + ".attn.qkv.bias"] = ("bias", [3 * dim])
    shapes[prefix + ".attn.proj.weight"] = (("fan", 0.7), [dim, dim])
    shapes[prefix + ".attn.proj.bias"] = ("bias", [dim])
    shapes[prefix + ".norm2.weight"] = ("norm_w", [dim])
    shapes[prefix + ".norm2.bias"] = ("bias", [dim])
    shapes[prefix + ".mlp.fc1.weight"] = (("fan", 1.0), [hidden, dim])
    shapes[prefix + ".mlp.fc1.bias"] = ("bias", [hidden])
    shapes[prefix + ".mlp.fc2.weight"] = (("fan", 0.7), [dim, hidden])
    shapes[prefix + ".mlp.fc2.bias"] = ("bias", [dim])


def weight_shapes(cfg, include_vqgan_encoder=True):
    """Ordered {key: (init kind, shape)} of every tensor (docs/method.md#model key names)."""
    D, Dd = cfg["encDim"], cfg["decDim"]
    shapes = {
        "cls_token": ("token", [1, 1, D]),
        "pos_embed": ("pos", [1, 1 + GRID * GRID, D]),
        "patch_embed.proj.weight": (("fan", 1.0), [D, 3, PATCH, PATCH]),
        "patch_embed.proj.bias": ("bias", [D]),
    }
    for l in range(cfg["encDepth"]):
        _mae_block_shapes(shapes, f"blocks.{l}", D, D * cfg["mlpRatio"])
    shapes["norm.weight"] = ("norm_w", [D])
    shapes["norm.bias"] = ("bias", [D])
    shapes["decoder_embed.weight"] = (("fan", 1.0), [Dd, D])
    shapes["decoder_embed.bias"] = ("bias", [Dd])
    shapes["mask_token"] = ("token", [1, 1, Dd])
    shapes["decoder_pos_embed"] = ("pos", [1, 1 + GRID * GRID, Dd])
    for l in range(cfg["decDepth"]):
        _mae_block_shapes(shapes, f"decoder_blocks.{l}", Dd, Dd * cfg["mlpRatio"])
    shapes["decoder_norm.weight"] = ("norm_w", [Dd])
    shapes["decoder_norm.bias"] = ("bias", [Dd])
    shapes["decoder_pred.weight"] = (("fan", 2.0), [cfg["vq"]["nEmbed"], Dd])
    shapes["decoder_pred.bias"] = ("bias", [cfg["vq"]["nEmbed"]])
    shapes.update(_vqgan_decoder_shapes(cfg))
    if include_vqgan_encoder:
        shapes.update(_vqgan_encoder_shapes(cfg))
    return shapes


def random_weights(cfg, seed, include_vqgan_encoder=True):
    """Deterministic random weights (torch.Generator seeded with `seed`, keys drawn in order)."""
    g = torch.Generator().manual_seed(int(seed))
    W = {}
    for key, (kind, shape) in weight_shapes(cfg, include_vqgan_encoder).items():
        if kind == "pos":
            W[key] = sincos_pos_embed(shape[-1]).unsqueeze(0)
            continue
        r = torch.randn(shape, generator=g)
        if kind == "norm_w":
            W[key] = 1.0 + 0.1 * r
        elif kind == "bias":
            W[key] = 0.1 * r
        elif kind == "token":
            W[key] = 0.5 * r
        elif kind == "code":
            W[key] = r
        else:
            _, gain = kind
            fan_in = int(np.prod(shape[1:]))
            W[key] = r * (gain / math.sqrt(fan_in))
    return W


def config_metadata(cfg):
    return {"vtv_config": json.dumps(cfg)}
