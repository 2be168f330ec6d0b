"""PyTorch CPU reference for native/bench/bench_cpu_kernels.cc: the same Linear and VQGAN conv shapes,
the same labels and GFLOP/s, so the two outputs can be compared line by line.

Run with Debian's torch:  /usr/bin/python3 benchmarks/cpu_kernels_torch.py [threads=2] [min_seconds=0.3] [filter]
Upsampling convolutions are timed as the VQGAN runs them in PyTorch: F.interpolate(nearest, x2) + conv.
VTV_BENCH_CLOCK=cpu measures process CPU time / threads instead of wall time, as the C++ bench does: on a
shared machine it discounts time other processes hold the cores (meaningful with 1 thread; with more,
spinning OpenMP workers count as busy).
"""
import os
import sys
import time

import torch
import torch.nn.functional as F


CLOCK_THREADS = 1


def now():
    if os.environ.get("VTV_BENCH_CLOCK") == "cpu":
        return time.process_time() / CLOCK_THREADS
    return time.perf_counter()


def time_call(fn, min_seconds):
    """Best (minimum) seconds per call, after one warm-up call, as the C++ bench."""
    fn()
    best, reps = float("inf"), 0
    start = now()
    while now() - start < min_seconds or reps < 3:
        t0 = now()
        fn()
        best = min(best, now() - t0)
        reps += 1
    return best


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    min_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
    filt = sys.argv[3] if len(sys.argv) > 3 else ""
    global CLOCK_THREADS
    CLOCK_THREADS = max(1, threads)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    print(f"# torch {torch.__version__}, threads={torch.get_num_threads()}")
    print(f"{'shape':<44} {'ms':>10} {'GFLOP/s':>9}")
    linears = []
    for m in (50, 400, 1600):
        for name, k, n in (("enc.qkv", 1024, 3072), ("enc.proj", 1024, 1024), ("enc.fc1", 1024, 4096), ("enc.fc2", 4096, 1024)):
            linears.append((name, m, k, n))
    for m in (99, 792):
        for name, k, n in (("dec.qkv", 512, 1536), ("dec.proj", 512, 512), ("dec.fc1", 512, 2048), ("dec.fc2", 2048, 512)):
            linears.append((name, m, k, n))
    with torch.no_grad():
        for name, m, k, n in linears:
            label = f"linear {name} M={m} K={k} N={n}"
            if filt and filt not in label:
                continue
            x, w, b = torch.rand(m, k) * 2 - 1, torch.rand(n, k) * 2 - 1, torch.rand(n) * 2 - 1
            if "fc1" in name:
                fn = lambda: F.gelu(F.linear(x, w, b))
            else:
                fn = lambda: F.linear(x, w, b)
            t = time_call(fn, min_seconds)
            print(f"{label:<44} {t * 1e3:10.3f} {2 * m * k * n / t * 1e-9:9.1f}", flush=True)

        convs = [(512, 14, 512, False), (512, 14, 512, True), (512, 28, 256, False), (256, 28, 256, False),
                 (256, 28, 256, True), (256, 56, 256, False), (256, 56, 256, True), (256, 112, 128, False),
                 (128, 112, 128, False), (128, 112, 128, True), (128, 224, 128, False)]
        for ci, h, co, up in convs:
            oh = 2 * h if up else h
            label = f"conv3x3{' up2x' if up else ''} {oh}x{oh} {ci}->{co}"
            if filt and filt not in label:
                continue
            x, w, b = torch.rand(1, ci, h, h) * 2 - 1, torch.rand(co, ci, 3, 3) * 2 - 1, torch.rand(co) * 2 - 1
            if up:
                fn = lambda: F.conv2d(F.interpolate(x, scale_factor=2.0, mode="nearest"), w, b, padding=1)
            else:
                fn = lambda: F.conv2d(x, w, b, padding=1)
            t = time_call(fn, min_seconds)
            print(f"{label:<44} {t * 1e3:10.3f} {2 * co * ci * 9 * oh * oh / t * 1e-9:9.1f}", flush=True)


if __name__ == "__main__":
    main()
