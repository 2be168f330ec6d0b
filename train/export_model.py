"""Writes the shipped model: a trained checkpoint's tensors in bf16 (half the size; the engine widens
them once at load) with its training record in the metadata.

The record is the checkpoint's own metadata (its last stage) plus `lineage`: one entry per training
stage that led to it, read from the run records passed with --stage (JSON files written by the
trainers, or the stage's checkpoint, whose metadata holds the same), oldest first.

Run: python3 train/export_model.py CHECKPOINT OUT.safetensors [--stage earlier.safetensors ...]
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from common import safetensors_io  # noqa: E402


def stage_record(path):
    if path.endswith(".json"):
        with open(path) as f:
            return json.load(f)
    return safetensors_io.load_metadata(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    ap.add_argument("--stage", action="append", default=[], help="an earlier stage's run record or checkpoint, oldest first")
    args = ap.parse_args()
    tensors, meta = common.load_safetensors(args.checkpoint)
    lineage = []
    for p in args.stage + [args.checkpoint]:
        rec = {k: v for k, v in stage_record(p).items() if k != "vtv_config"}
        rec["file"] = os.path.basename(p)
        lineage.append(rec)
    out_meta = {k: str(v) for k, v in meta.items()}
    out_meta["lineage"] = json.dumps(lineage)
    out_meta["dtype"] = "bf16"
    tmp = f"{args.out}.tmp-{os.getpid()}"
    safetensors_io.save_file({k: tensors[k].to(torch.bfloat16) for k in sorted(tensors)}, tmp, out_meta)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}: {len(tensors)} tensors in bf16, {os.path.getsize(args.out)} bytes, {len(lineage)} stages")


if __name__ == "__main__":
    main()
