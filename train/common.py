"""Shared pieces of the small model's training (train/README.md): the model is the engine's own
architecture, run through the plain-PyTorch reference in test/reference/mae_vqgan_ref.py (the file the
parity tests compare the engine with), so what trains here is exactly what the engine runs."""
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "reference"))
import mae_vqgan_ref as ref  # noqa: E402
import safetensors_io  # noqa: E402

IMAGENET_MEAN = torch.tensor(ref.IMAGENET_MEAN).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor(ref.IMAGENET_STD).view(1, 3, 1, 1)


def git_commit():
    try:
        return subprocess.check_output(["git", "-C", ROOT, "rev-parse", "HEAD"], text=True).strip()
    except Exception:
        return "unknown"


class Canvases:
    """The canvases written by train/make_data.ts: uint8 [N,224,224,3], memory-mapped."""

    def __init__(self, folder):
        meta_path = os.path.join(folder, "canvases.json")
        with open(meta_path) as f:
            self.meta = json.load(f)
        n = self.meta["count"]
        path = os.path.join(folder, "canvases.u8")
        size = os.path.getsize(path)
        if size != n * 224 * 224 * 3:
            raise ValueError(f"{path}: {size} bytes, expected {n} canvases of 224x224x3 ({n * 224 * 224 * 3} bytes)")
        self.u8 = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, 224, 224, 3))
        self.tasks = np.array([c["task"] for c in self.meta["canvases"]], dtype=np.int64)
        self.n = n

    def batch_u8(self, idx):
        """uint8 [B,3,224,224] as a float tensor of 0..255."""
        return torch.from_numpy(np.ascontiguousarray(self.u8[np.sort(idx)])).permute(0, 3, 1, 2).float()


def u8_to_unit(x255):
    """0..255 -> [-1, 1], the VQGAN's input range (map_pixels of the normalised canvas)."""
    return x255 / 127.5 - 1.0


def u8_to_normalised(x255):
    """0..255 -> ImageNet-normalised, as the canvas builder does."""
    return (x255 / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def init_weights(cfg, keys, seed):
    """Standard initialisation for training from scratch: xavier-uniform linears (as MAE), PyTorch's
    default conv init, unit norms, zero biases, N(0, 0.02) tokens, fixed sin-cos position embeddings."""
    g = torch.Generator().manual_seed(seed)
    shapes = ref.weight_shapes(cfg)
    W = {}
    for key in keys:
        kind, shape = shapes[key]
        if kind == "pos":
            W[key] = ref.sincos_pos_embed(shape[-1]).unsqueeze(0)
            continue
        if kind == "norm_w":
            t = torch.ones(shape)
        elif kind == "bias":
            t = torch.zeros(shape)
        elif kind == "token":
            t = 0.02 * torch.randn(shape, generator=g)
        elif kind == "code":
            t = torch.empty(shape).uniform_(-1.0 / shape[0], 1.0 / shape[0], generator=g)
        else:
            fan_out, fan_in = shape[0], int(np.prod(shape[1:]))
            if len(shape) == 2 or key == "patch_embed.proj.weight":
                bound = math.sqrt(6.0 / (fan_in + fan_out))  # xavier uniform
            else:
                bound = 1.0 / math.sqrt(fan_in)  # kaiming uniform with a = sqrt(5)
            t = torch.empty(shape).uniform_(-bound, bound, generator=g)
        W[key] = t
    return W


def save_safetensors(path, tensors, metadata):
    """Write a safetensors file (fp32, keys sorted) atomically, with the reference's writer."""
    tmp = f"{path}.tmp-{os.getpid()}"
    safetensors_io.save_file({k: tensors[k].detach().float() for k in sorted(tensors)}, tmp, metadata)
    os.replace(tmp, path)


def load_safetensors(path):
    """{key: tensor}, metadata."""
    return safetensors_io.load_file(path), safetensors_io.load_metadata(path)


class Logger:
    """One JSON line per logged step, plus a human line on stdout."""

    def __init__(self, path):
        self.f = open(path, "a")
        self.t0 = time.time()

    def log(self, **rec):
        rec["wall_s"] = round(time.time() - self.t0, 1)
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        print(" ".join(f"{k}={v}" for k, v in rec.items()), flush=True)


def cosine_lr(step, total, base, warmup):
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
