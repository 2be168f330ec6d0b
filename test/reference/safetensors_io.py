"""A minimal safetensors reader/writer (the `safetensors` package is not installed here).

Format (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, then N
bytes of JSON {key: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
then the raw little-endian tensor bytes; offsets are relative to the end of the header. The header is
padded with spaces so the data starts 8-byte aligned (the engine maps fp32 tensors in place).
"""
import json
import mmap
import struct

import numpy as np
import torch

_NP_BY_DTYPE = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U8": np.uint8, "BOOL": np.bool_,
}
_DTYPE_BY_TORCH = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


def _tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:  # numpy has no bf16: ship the raw 16-bit patterns
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes()


def save_file(tensors, path, metadata=None):
    """Writes {name: torch.Tensor} to `path`. Tensors are written one at a time (ViT-L is 1.6 GB)."""
    header = {}
    offset = 0
    order = list(tensors.keys())
    for name in order:
        t = tensors[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"safetensors save {path}: value of key '{name}' is {type(t).__name__}, not a torch.Tensor")
        if t.dtype not in _DTYPE_BY_TORCH:
            raise TypeError(f"safetensors save {path}: key '{name}' has unsupported dtype {t.dtype}")
        nbytes = t.numel() * t.element_size()
        header[name] = {"dtype": _DTYPE_BY_TORCH[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * ((8 - (8 + len(blob)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name in order:
            f.write(_tensor_bytes(tensors[name]))


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict, data start offset)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"safetensors {path}: file shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        text = f.read(n)
        if len(text) != n:
            raise ValueError(f"safetensors {path}: header length {n} runs past the end of the file")
    header = json.loads(text.decode("utf-8"))
    metadata = header.pop("__metadata__", {}) or {}
    return header, metadata, 8 + n


def load_file(path, keys=None):
    """Reads {name: torch.Tensor} (copies, writable). `keys` limits which tensors are read."""
    header, _, start = read_header(path)
    out = {}
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for name, info in header.items():
            if keys is not None and name not in keys:
                continue
            b, e = info["data_offsets"]
            shape = info["shape"]
            if start + e > len(mm):
                raise ValueError(f"safetensors {path}: key '{name}' data [{b},{e}) runs past the end of the file")
            dtype = info["dtype"]
            if dtype == "BF16":
                arr = np.frombuffer(mm, dtype="<i2", count=(e - b) // 2, offset=start + b).copy()
                t = torch.from_numpy(arr).view(torch.bfloat16)
            elif dtype in _NP_BY_DTYPE:
                np_dtype = np.dtype(_NP_BY_DTYPE[dtype]).newbyteorder("<")
                arr = np.frombuffer(mm, dtype=np_dtype, count=(e - b) // np_dtype.itemsize, offset=start + b).copy()
                t = torch.from_numpy(arr.astype(np_dtype.newbyteorder("=")))
            else:
                raise ValueError(f"safetensors {path}: key '{name}' has unsupported dtype {dtype}")
            expected = int(np.prod(shape)) if shape else 1
            if t.numel() != expected:
                raise ValueError(f"safetensors {path}: key '{name}' shape {shape} needs {expected} elements, data has {t.numel()}")
            out[name] = t.reshape(shape)
    if keys is not None:
        missing = [k for k in keys if k not in out]
        if missing:
            raise KeyError(f"safetensors {path}: missing keys {missing}")
    return out


def load_metadata(path):
    return read_header(path)[1]
