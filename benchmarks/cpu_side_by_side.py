"""Python side of benchmarks/cpu_vs_ort.ts: the shared inputs, the ONNX export of the reference forward,
and the PyTorch side of the timing, all from the plain reference test/reference/mae_vqgan_ref.py.

The forward is the search's: MAE-VQGAN zero-shot with per-sample head patching, argmax tokens
(duplicated), VQGAN decode, quadrant MSE, fp32.

  /usr/bin/python3 benchmarks/cpu_side_by_side.py inputs --config C --weights W --batch B --out inputs.safetensors
  /usr/bin/python3 benchmarks/cpu_side_by_side.py export --config C --weights W --batch B --out model.onnx
  /usr/bin/python3 benchmarks/cpu_side_by_side.py serve --config C --weights W --threads T

inputs: canvases f32 [B,3,224,224] (the parity tests' random prompt canvases), means_enc/means_dec
  (0.5 x standard normal, one-shot positions), patch_mask u8 [B, patch bytes] (the engine's packed bits:
  30% of the (layer, head) pairs patched at every position, drawn per sample), and the same mask unpacked
  as enc_patch u8 [B,encDepth,encHeads,50], dec_patch u8 [B,decDepth,decHeads,99] for the ONNX model.
export: torch.onnx.export (opset 17, fixed batch B) of mae_vqgan_ref.full_forward with those inputs
  (masks as bool tensors, means as inputs); outputs tokens i32 [B,196], pixels f32 [B,3,224,224], mse f32 [B].
serve: loads the weights once, then answers one JSON line per command line on stdin:
  {"cmd": "run", "inputs": PATH, "out": PATH or null} -> {"seconds": s}; with "out", writes the outputs
  (tokens, pixels, mse) there as safetensors. {"cmd": "quit"} ends it.
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
from make_parity_case import random_canvases  # noqa: E402
from safetensors_io import load_file, load_metadata, save_file  # noqa: E402


def load_weights(path, cfg):
    meta = load_metadata(path)
    if "vtv_config" in meta:
        stored = json.loads(meta["vtv_config"])
        if {k: v for k, v in stored.items() if k != "name"} != {k: v for k, v in cfg.items() if k != "name"}:
            raise SystemExit(f"{path}: its vtv_config ({stored.get('name')}) differs from --config {cfg['name']}")
    shapes = ref.weight_shapes(cfg, include_vqgan_encoder=False)
    W = load_file(path, keys=set(shapes))
    for k, (_, shape) in shapes.items():
        if list(W[k].shape) != list(shape):
            raise SystemExit(f"{path}: key {k} has shape {list(W[k].shape)}, expected {shape}")
        W[k] = W[k].float()
    return W


def head_masks(cfg, batch, rng, density=0.3):
    """30% of the (layer, head) pairs, patched at every zero-shot position, drawn per sample."""
    ne, nd = ref.enc_tokens("zero-shot"), ref.dec_tokens("zero-shot")
    enc = rng.random_sample((batch, cfg["encDepth"], cfg["encHeads"])) < density
    dec = rng.random_sample((batch, cfg["decDepth"], cfg["decHeads"])) < density
    enc = np.repeat(enc[..., None], ne, axis=3)
    dec = np.repeat(dec[..., None], nd, axis=3)
    bits = np.zeros((batch, ref.patch_bytes(cfg, "zero-shot") * 8), dtype=bool)
    bits[:, :enc[0].size] = enc.reshape(batch, -1)
    bits[:, enc[0].size:enc[0].size + dec[0].size] = dec.reshape(batch, -1)
    packed = np.packbits(bits, axis=1, bitorder="little")
    return torch.from_numpy(packed), torch.from_numpy(enc.astype(np.uint8)), torch.from_numpy(dec.astype(np.uint8))


def cmd_inputs(args, cfg):
    g = torch.Generator().manual_seed(args.seed + 1)
    canvases = random_canvases(args.batch, g)
    means_enc = 0.5 * torch.randn(cfg["encDepth"], 148, cfg["encDim"], generator=g)
    means_dec = 0.5 * torch.randn(cfg["decDepth"], 197, cfg["decDim"], generator=g)
    packed, enc, dec = head_masks(cfg, args.batch, np.random.RandomState(args.seed + 2))
    # The packed mask must say the same as the unpacked one, by the reference's own unpacking.
    e2, d2 = ref.unpack_patch_mask(cfg, "zero-shot", packed)
    assert torch.equal(e2, enc.bool()) and torch.equal(d2, dec.bool())
    save_file({"canvases": canvases.contiguous(), "means_enc": means_enc, "means_dec": means_dec, "patch_mask": packed,
               "enc_patch": enc, "dec_patch": dec}, args.out, ref.config_metadata(cfg))
    print(json.dumps({"inputs": args.out, "batch": args.batch}))


class _Forward(torch.nn.Module):
    """full_forward with the patch masks given unpacked (bool tensors), so the masks are graph inputs."""

    def __init__(self, W, cfg):
        super().__init__()
        self.W, self.cfg = W, cfg

    def forward(self, canvases, enc_patch, dec_patch, means_enc, means_dec):
        out = ref.full_forward(self.W, self.cfg, canvases, "zero-shot", (enc_patch, dec_patch), means_enc, means_dec)
        return out["tokens"], out["pixels"], out["mse"]


def cmd_export(args, cfg):
    W = load_weights(args.weights, cfg)
    inputs = load_file(args.inputs)
    # mae_forward unpacks the engine's packed mask bytes with numpy; here the masks are already bool
    # tensors (graph inputs), so its unpacking is the identity for the export.
    ref.unpack_patch_mask = lambda cfg_, mode, m: m
    model = _Forward(W, cfg).eval()
    example = (inputs["canvases"], inputs["enc_patch"].bool(), inputs["dec_patch"].bool(), inputs["means_enc"],
               inputs["means_dec"])
    t0 = time.time()
    with torch.no_grad():
        torch.onnx.export(model, example, args.out, opset_version=17, do_constant_folding=True,
                          input_names=["canvases", "enc_patch", "dec_patch", "means_enc", "means_dec"],
                          output_names=["tokens", "pixels", "mse"])
    print(json.dumps({"onnx": args.out, "batch": args.batch, "seconds": round(time.time() - t0, 1),
                      "bytes": os.path.getsize(args.out), "torch": torch.__version__}))


def cmd_serve(args, cfg):
    torch.set_num_threads(args.threads)
    W = load_weights(args.weights, cfg)
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    cache = {}
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            break
        path = req["inputs"]
        if path not in cache:
            cache.clear()
            cache[path] = load_file(path)
        x = cache[path]
        with torch.no_grad():
            t = time.perf_counter()
            out = ref.full_forward(W, cfg, x["canvases"], "zero-shot", x["patch_mask"], x["means_enc"], x["means_dec"])
            seconds = time.perf_counter() - t
        if req.get("out"):
            save_file({"tokens": out["tokens"].contiguous(), "pixels": out["pixels"].contiguous(),
                       "mse": out["mse"].contiguous()}, req["out"])
        print(json.dumps({"seconds": seconds}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["inputs", "export", "serve"])
    ap.add_argument("--config", default="mae-vqgan-vit-large", choices=sorted(ref.PRESETS))
    ap.add_argument("--weights", required=True)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--inputs", help="export: the inputs file made by `inputs` (example tensors)")
    ap.add_argument("--out")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = ref.preset(args.config)
    if args.cmd == "inputs":
        cmd_inputs(args, cfg)
    elif args.cmd == "export":
        cmd_export(args, cfg)
    else:
        cmd_serve(args, cfg)


if __name__ == "__main__":
    main()
