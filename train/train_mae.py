"""Stage 2: the MAE of the small model, predicting the frozen stage-1 VQGAN's tokens of prompt canvases.

As MAE-VQGAN was trained: a ViT encoder over the visible patches of a canvas, a light decoder over all
197 positions, and cross-entropy against the VQGAN encoder's token at every masked position. Each
batch uses one of three masks:
  - quadrant (the method's inference mask: the bottom-right 7x7 cell hidden), so the model learns to
    read the task off the example pair and apply it to the query;
  - random (MAE's 75% random masking), for general canvas statistics;
  - query only (everything but the bottom-left cell hidden), a random-mask-like case with no example.
The canvases come from train/make_data.ts (the project's tasks on generator scenes under a training
seed); the targets come from encoding each canvas with the stage-1 weights (cached next to the data, as tokens-<VQGAN file hash>.npy).
The output file holds the MAE and the VQGAN under the engine's key names: the shipped model.

  /usr/bin/python3 train/train_mae.py --data train/data --vqgan train/out/vqgan.safetensors --out train/out
"""
import argparse
import hashlib
import json
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

import common
from common import ref
from train_vqgan import encoder_z, quantise

GRID, HALF = ref.GRID, ref.HALF
QUERY_IDS = [r * GRID + c for r in range(HALF, GRID) for c in range(HALF)]
OUTPUT_IDS = ref.masked_ids()


def tokenise(W, cfg, data, path, batch=64):
    """The stage-1 VQGAN encoder's nearest-code tokens of every canvas, [N,196] int16, cached."""
    if os.path.exists(path):
        tokens = np.load(path)
        if tokens.shape == (data.n, GRID * GRID):
            return tokens
    out = np.zeros((data.n, GRID * GRID), dtype=np.int16)
    t0 = time.time()
    with torch.no_grad():
        for s in range(0, data.n, batch):
            idx = np.arange(s, min(s + batch, data.n))
            z = encoder_z(W, cfg["vq"], common.u8_to_unit(data.batch_u8(idx)))
            code_idx, _, _ = quantise(z, W["vae.quantize.embedding.weight"])
            out[idx] = code_idx.reshape(len(idx), -1).numpy()
            if s % (batch * 20) == 0:
                print(f"tokenise: {s + len(idx)}/{data.n} ({time.time() - t0:.0f} s)", flush=True)
    np.save(path, out)
    return out


def merge_codes(Wv, cfg, tokens, k, seed, path):
    """Groups of codes that decode alike, for training targets: each code is decoded on a 3x3 latent
    grid of itself (the centre 16x16 patch taken), the patches are clustered by k-means (k groups), and
    every code maps to its group's most frequent code in the data. The small model's VQGAN spreads
    visually identical patches (a black mask patch, say) over hundreds of codes, so the exact-code
    targets are near-random and their argmax rarely lands on a minority look (the mask's white); the
    merged targets make the MAE predict one code per look. Returns int64 [nEmbed] (code -> target
    code) and writes it, with the groups, to `path`."""
    n = cfg["vq"]["nEmbed"]
    with torch.no_grad():
        codes = Wv["vae.quantize.embedding.weight"]
        z = codes[:, :, None, None].expand(-1, -1, 3, 3).contiguous()
        patches = (ref.vqgan_decode_latent(Wv, cfg, z).clamp(-1, 1)[:, :, 16:32, 16:32] + 1) / 2  # [n,3,16,16]
        feats = F.avg_pool2d(patches, 2).reshape(n, -1).numpy().astype(np.float64)
    freq = np.bincount(tokens.reshape(-1), minlength=n)
    rng = np.random.default_rng(seed)
    centres = feats[rng.choice(n, size=k, replace=False, p=(freq + 1) / (freq + 1).sum())]
    for _ in range(50):
        d = ((feats[:, None, :] - centres[None]) ** 2).sum(-1)
        group = d.argmin(1)
        for g in range(k):
            members = group == g
            if members.any():
                centres[g] = np.average(feats[members], axis=0, weights=freq[members] + 1e-3)
    target = np.zeros(n, dtype=np.int64)
    groups = []
    for g in range(k):
        members = np.nonzero(group == g)[0]
        if len(members) == 0:
            continue
        rep = int(members[np.argmax(freq[members])])
        target[members] = rep
        groups.append({"target": rep, "codes": members.tolist(), "share": round(float(freq[members].sum() / freq.sum()), 4)})
    with open(path, "w") as f:
        json.dump({"k": k, "seed": seed, "groups": groups}, f)
    return torch.from_numpy(target)


def make_shuffle(mode, B, rng):
    """ids_shuffle [B,196] (kept ids first) and the kept count, for one batch's mask mode."""
    if mode == "quadrant":
        ids = torch.tensor(ref.kept_ids() + OUTPUT_IDS).expand(B, -1)
        return ids, len(ref.kept_ids())
    if mode == "query":
        rest = [i for i in range(GRID * GRID) if i not in QUERY_IDS]
        return torch.tensor(QUERY_IDS + rest).expand(B, -1), len(QUERY_IDS)
    noise = torch.from_numpy(rng.random((B, GRID * GRID)))
    return torch.argsort(noise, dim=1), GRID * GRID // 4


def mae_train_forward(W, cfg, canvases, ids_shuffle, keep):
    """The MAE forward of the reference with an arbitrary per-sample mask: logits [B,196,V]."""
    B = canvases.shape[0]
    D, Dd, eps = cfg["encDim"], cfg["decDim"], cfg["lnEps"]
    pos = W["pos_embed"][0]
    x = F.conv2d(canvases, W["patch_embed.proj.weight"], W["patch_embed.proj.bias"], stride=ref.PATCH)
    x = x.flatten(2).transpose(1, 2) + pos[1:]
    x = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, D))
    x = torch.cat([(W["cls_token"][0, 0] + pos[0]).expand(B, 1, D), x], dim=1)
    for l in range(cfg["encDepth"]):
        x = ref.transformer_block(x, W, f"blocks.{l}", cfg["encHeads"], eps)
    x = F.layer_norm(x, (D,), W["norm.weight"], W["norm.bias"], eps)
    y = ref._linear(x, W, "decoder_embed")
    y = torch.cat([y, W["mask_token"].expand(B, GRID * GRID - keep, Dd)], dim=1)
    restore = torch.argsort(ids_shuffle, dim=1)
    body = torch.gather(y[:, 1:], 1, restore[:, :, None].expand(-1, -1, Dd))
    y = torch.cat([y[:, :1], body], dim=1) + W["decoder_pos_embed"][0]
    for l in range(cfg["decDepth"]):
        y = ref.transformer_block(y, W, f"decoder_blocks.{l}", cfg["decHeads"], eps)
    y = F.layer_norm(y, (Dd,), W["decoder_norm.weight"], W["decoder_norm.bias"], eps)
    return ref._linear(y, W, "decoder_pred")[:, 1:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=os.path.join(common.HERE, "data"))
    ap.add_argument("--vqgan", default=os.path.join(common.HERE, "out", "vqgan.safetensors"))
    ap.add_argument("--out", default=os.path.join(common.HERE, "out"))
    ap.add_argument("--preset", default="mini")
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.05)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--modes", default="quadrant:0.6,random:0.3,query:0.1")
    ap.add_argument("--task-weights", default="", help="sampling weight per task, e.g. 'segmentation:2' (others 1); default uniform")
    ap.add_argument("--merge-codes", type=int, default=0, help="train on k groups of codes that decode alike (0: exact codes)")
    ap.add_argument("--holdout", type=int, default=500, help="last canvases kept out of training, for the held-out loss")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-minutes", type=float, default=0)
    ap.add_argument("--stop-after", type=int, default=0, help="stop after this many steps (the schedule stays sized by --steps)")
    ap.add_argument("--minutes", type=float, default=0,
                    help="size the schedule to this wall time: after 40 timed steps, --steps becomes what fits (recorded in the run record)")
    ap.add_argument("--init-from", default="", help="continue from this file's MAE weights (a new schedule: warmup, then cosine)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = ref.preset(args.preset)
    data = common.Canvases(args.data)
    Wv, vmeta = common.load_safetensors(args.vqgan)
    # The tokens depend on the data and the VQGAN only: cached next to the data, one file per VQGAN file.
    with open(args.vqgan, "rb") as f:
        vq_id = hashlib.sha256(f.read()).hexdigest()[:12]
    tokens = torch.from_numpy(tokenise(Wv, cfg, data, os.path.join(args.data, f"tokens-{vq_id}.npy")).astype(np.int64))
    if args.merge_codes:
        code_target = merge_codes(Wv, cfg, tokens.numpy(), args.merge_codes, args.seed, os.path.join(args.out, "code_groups.json"))
        tokens = code_target[tokens]
        print(f"training targets: {len(torch.unique(tokens))} merged codes (of {cfg['vq']['nEmbed']})", flush=True)
    keys = [k for k in ref.weight_shapes(cfg) if not k.startswith("vae.")]
    W = common.init_weights(cfg, keys, args.seed)
    start_steps = 0
    if args.init_from:
        prev, prev_meta = common.load_safetensors(args.init_from)
        for k in keys:
            if k not in prev or prev[k].shape != W[k].shape:
                raise ValueError(f"{args.init_from}: no MAE tensor {k} of shape {list(W[k].shape)}")
            W[k] = prev[k].clone()
        start_steps = int(prev_meta.get("total_steps", prev_meta.get("steps", 0)))
        print(f"continuing from {args.init_from} ({start_steps} steps so far)", flush=True)
    trainable = [k for k in keys if k not in ("pos_embed", "decoder_pos_embed")]
    decay = [W[k] for k in trainable if W[k].dim() >= 2 and k not in ("cls_token", "mask_token")]
    no_decay = [W[k] for k in trainable if not (W[k].dim() >= 2 and k not in ("cls_token", "mask_token"))]
    for k in trainable:
        W[k].requires_grad_(True)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    modes = [(m.split(":")[0], float(m.split(":")[1])) for m in args.modes.split(",")]
    names, probs = [m for m, _ in modes], np.array([p for _, p in modes])
    probs /= probs.sum()
    n_train = data.n - args.holdout
    # Canvas sampling probabilities: uniform within a task, tasks weighted by --task-weights.
    weights = {name: 1.0 for name in data.meta["tasks"]}
    for item in filter(None, args.task_weights.split(",")):
        name, w = item.split(":")
        if name not in weights:
            raise ValueError(f"--task-weights: unknown task '{name}' (the data has {', '.join(weights)})")
        weights[name] = float(w)
    task_of = data.tasks[:n_train]
    p_canvas = np.array([weights[data.meta["tasks"][t]] for t in task_of])
    p_canvas /= p_canvas.sum()
    log = common.Logger(os.path.join(args.out, "mae_log.jsonl"))
    t0 = time.time()
    step = 0
    total = args.steps
    step = -1
    while step + 1 < total:
        step += 1
        if args.minutes and step == 45:
            # Calibrate the schedule from steps 5..44 (the first few run slow), before warmup ends.
            per_step = (time.time() - t_cal) / 40
            total = max(step + 1, int(args.minutes * 60 / per_step))
            print(f"--minutes {args.minutes}: {per_step:.2f} s a step -> {total} steps", flush=True)
        if step == 5:
            t_cal = time.time()
        mode = names[rng.choice(len(names), p=probs)]
        idx = np.sort(rng.choice(n_train, size=args.batch, replace=False, p=p_canvas))
        x = common.u8_to_normalised(data.batch_u8(idx))
        ids, keep = make_shuffle(mode, args.batch, rng)
        lr = common.cosine_lr(step, total, args.lr, args.warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        logits = mae_train_forward(W, cfg, x, ids, keep)
        masked = torch.zeros(args.batch, GRID * GRID, dtype=torch.bool)
        masked.scatter_(1, ids[:, keep:], True)
        tgt = tokens[idx]
        loss = F.cross_entropy(logits[masked], tgt[masked])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([W[k] for k in trainable], 1.0)
        opt.step()
        if (step + 1) % 25 == 0:
            rec = {"step": step + 1, "mode": mode, "loss": round(loss.item(), 4), "lr": round(lr, 6)}
            if (step + 1) % 250 == 0:
                rec.update(heldout(W, cfg, data, tokens, n_train))
                save(args, cfg, Wv, W, {"vtv_config": json.dumps(cfg), "stage": "mae-partial", "steps": step + 1})
            log.log(**rec)
        if args.stop_after and step + 1 >= args.stop_after:
            print(f"stopping at step {step + 1}: --stop-after", flush=True)
            break
        if args.max_minutes and time.time() - t0 > args.max_minutes * 60:
            print(f"stopping at step {step + 1}: --max-minutes {args.max_minutes} reached", flush=True)
            break
    meta = {"vtv_config": json.dumps(cfg), "stage": "mae", "steps": step + 1, "total_steps": start_steps + step + 1,
            "init_from": os.path.basename(args.init_from) if args.init_from else "", "batch": args.batch, "lr": args.lr,
            "weight_decay": args.weight_decay, "modes": args.modes, "task_weights": args.task_weights, "merge_codes": args.merge_codes, "seed": args.seed, "data_seed": data.meta["seed"],
            "canvases": data.n, "holdout": args.holdout, "wall_s": round(time.time() - t0, 1),
            "vqgan_steps": vmeta.get("steps"), "vqgan_wall_s": vmeta.get("wall_s"), "commit": common.git_commit()}
    meta.update(heldout(W, cfg, data, tokens, n_train))
    save(args, cfg, Wv, W, meta)
    with open(os.path.join(args.out, "mae_run.json"), "w") as f:
        json.dump(meta, f, indent=1)
    print(f"saved {args.out}/mae-vqgan-mini.safetensors after {step + 1} steps, {time.time() - t0:.0f} s", flush=True)


def save(args, cfg, Wv, W, meta):
    """The MAE and the VQGAN in one file under the engine's key names (the VQGAN's keys keep 'vae.')."""
    full = dict(Wv)
    full.update(W)
    common.save_safetensors(os.path.join(args.out, "mae-vqgan-mini.safetensors"), full, meta)


def heldout(W, cfg, data, tokens, n_train):
    """Quadrant-mask loss and token accuracy on the output cell of held-out canvases, per task."""
    idx = np.arange(n_train, data.n)[:200]
    with torch.no_grad():
        x = common.u8_to_normalised(data.batch_u8(idx))
        ids, keep = make_shuffle("quadrant", len(idx), None)
        logits = mae_train_forward(W, cfg, x, ids, keep)[:, OUTPUT_IDS]
        tgt = tokens[idx][:, OUTPUT_IDS]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1)).item()
        acc = (logits.argmax(-1) == tgt).float()
    per_task = {}
    for t, name in enumerate(data.meta["tasks"]):
        sel = torch.from_numpy(data.tasks[idx] == t)
        if sel.any():
            per_task[name] = round(acc[sel].mean().item(), 3)
    return {"heldout_loss": round(loss, 4), "heldout_acc": round(acc.mean().item(), 3), "heldout_acc_per_task": per_task}


if __name__ == "__main__":
    main()
