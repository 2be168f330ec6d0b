#!/usr/bin/env bash
# The speed GPU speed measurements, for a fresh GPU machine (written for the H200: CUDA toolkit with
# cuBLASLt, CMake, g++, Python with torch; no Node.js needed). In order, each stage capped so that the whole
# run stays inside PERF_BUDGET_S seconds (default 560):
#   1. correctness first: tools/device/check.sh (builds the engine and the CUDA tests, runs the
#      CUDA-vs-CPU parity tests, prints its table); PERF_PARITY=0 skips it and builds without tests;
#   2. builds the benchmarks (bench_engine_gpu, bench_cuda_kernels; cuBLASLt when CMake finds it);
#   3. bench_engine_gpu: Engine::forward bf16 and fp32 at batch 320, where its time goes, and a search-like
#      loop of PERF_SEARCH_STEPS steps (default 20) extrapolated to the reference's 500;
#   4. tools/device/torch_baseline.py: the same forward in PyTorch, eager and torch.compile;
#   5. bench_cuda_kernels: every kernel variant on the real shapes against measured ceilings;
# and prints a final table with the ratios. Logs go to $OUT when it is set (else <build>/perf-logs).
#
#   tools/device/perf.sh [build-dir]          (default: build-device in the repository root)
#
# A dry run on a machine without a GPU (the benchmarks exit 2 saying so; torch runs the tiny model):
#   PERF_PARITY=0 PERF_PYTHON=/usr/bin/python3 PERF_TORCH_ARGS="--config tiny --batch 4 --repeats 1 --dtype fp32" \
#     tools/device/perf.sh build-perf
#
# Exit status: 0 when every stage ran and passed, 1 otherwise (the table says which).
set -uo pipefail
t0=$(date +%s)
root="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-$root/build-device}"
logs="${OUT:-$build/perf-logs}"
mkdir -p "$build" "$logs"
budget="${PERF_BUDGET_S:-560}"
deadline=$(( t0 + budget ))
jobs="$(nproc 2>/dev/null || echo 8)"
python="${PERF_PYTHON:-$(command -v python3 || command -v python || true)}"
export PATH="$PATH:/usr/local/cuda/bin"
log() { printf '[perf %3ds] %s\n' "$(( $(date +%s) - t0 ))" "$*"; }
# Seconds a stage may take: its own cap, or what is left of the budget less `reserve` for later stages.
cap() {
  local want=$1 reserve=${2:-0} left
  left=$(( deadline - $(date +%s) - reserve ))
  (( left < want )) && want=$left
  (( want < 10 )) && want=10
  echo "$want"
}
declare -A status
status[parity]=skipped; status[build]=-; status[engine]=-; status[torch]=-; status[kernels]=-
stage_status() {  # name exit-code
  case $2 in
    0) status[$1]=ok ;;
    124|137) status[$1]="TIMEOUT" ;;
    2) status[$1]="no GPU / not built (2)" ;;
    *) status[$1]="FAILED ($2)" ;;
  esac
}

log "repository $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), build $build, logs $logs, budget ${budget}s"
command -v nvidia-smi >/dev/null && log "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>&1 | head -1)"

# ---- 1. correctness (check.sh builds the engine and the tests) -------------------------------------------
if [ "${PERF_PARITY:-1}" != 0 ]; then
  log "parity: tools/device/check.sh (cap $(cap 300 200) s)"
  timeout "$(cap 300 200)" bash "$root/tools/device/check.sh" "$build" >"$logs/check.out" 2>&1
  rc=$?
  stage_status parity $rc
  tail -40 "$logs/check.out"
  log "parity: ${status[parity]}"
fi

# ---- 2. build the benchmarks -------------------------------------------------------------------------------
log "building the benchmarks"
tests_flag=-DVTV_TESTS=ON
[ "${PERF_PARITY:-1}" = 0 ] && tests_flag=-DVTV_TESTS=OFF
if cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DVTV_CUDA=ON -DVTV_CUDA_ARCHITECTURES=90 -DVTV_BENCH=ON \
     "$tests_flag" >"$logs/perf-configure.log" 2>&1 &&
   timeout "$(cap 240 150)" cmake --build "$build" -j "$jobs" --target bench_engine_gpu bench_cuda_kernels \
     >"$logs/perf-build.log" 2>&1; then
  status[build]=ok
  grep -E "cuBLASLt" "$logs/perf-configure.log" | sed 's/^-- //'
else
  status[build]=FAILED
  grep -E "error|Error" "$logs/perf-build.log" "$logs/perf-configure.log" | head -30
fi
log "build: ${status[build]}"

# ---- 3. the engine -------------------------------------------------------------------------------------------
if [ "${status[build]}" = ok ]; then
  c=$(cap 180 150)
  log "bench_engine_gpu (cap $c s)"
  timeout "$c" "$build/bench_engine_gpu" --search-steps "${PERF_SEARCH_STEPS:-20}" >"$logs/engine.out" 2>&1
  stage_status engine $?
  grep -v '^VTV_JSON' "$logs/engine.out" | tail -25
fi

# ---- 4. PyTorch --------------------------------------------------------------------------------------------
if [ -n "$python" ]; then
  c=$(cap 200 45)
  log "torch_baseline.py (cap $c s)"
  # shellcheck disable=SC2086  # PERF_TORCH_ARGS: extra arguments, e.g. for a dry run on a CPU machine
  timeout "$c" "$python" "$root/tools/device/torch_baseline.py" ${PERF_TORCH_ARGS:-} >"$logs/torch.out" 2>"$logs/torch.err"
  stage_status torch $?
  tail -5 "$logs/torch.err"
  cat "$logs/torch.out"
else
  status[torch]="no python"
fi

# ---- 5. the kernels ----------------------------------------------------------------------------------------
if [ "${status[build]}" = ok ]; then
  c=$(cap 150 0)
  log "bench_cuda_kernels (cap $c s)"
  timeout "$c" "$build/bench_cuda_kernels" >"$logs/kernels.out" 2>&1
  stage_status kernels $?
  grep -v '^VTV_JSON' "$logs/kernels.out"
fi

# ---- the table ------------------------------------------------------------------------------------------------
echo
log "stages: parity ${status[parity]}, build ${status[build]}, engine ${status[engine]}, torch ${status[torch]}, kernels ${status[kernels]}"
if [ -n "$python" ]; then
  "$python" - "$logs" <<'EOF' | tee "$logs/summary.txt"
import json, os, sys
logs = sys.argv[1]
def last_json(name, prefix):
    try:
        lines = open(os.path.join(logs, name)).read().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        if line.startswith(prefix):
            try:
                return json.loads(line[len(prefix):])
            except ValueError:
                return {}
    return {}
eng = last_json("engine.out", "VTV_JSON ")
tor = last_json("torch.out", "")
ker = last_json("kernels.out", "VTV_JSON ")
GF = 114.7 * 2e9 / 1e12
comp = tor.get("compile_fps")
rows = [("torch eager bf16", tor.get("eager_fps")), ("torch.compile bf16", comp)]
for p in ("bf16", "fp32"):
    rows.append((f"engine {p}", eng.get("engine", {}).get(p, {}).get("fps")))
print(f"zero-shot patched forward + decode + MSE, batch {eng.get('batch', tor.get('batch', 320))}, {eng.get('device', tor.get('device', '?'))}")
print(f"{'implementation':<24}{'forwards/s':>12}{'TFLOP/s':>10}{'vs torch.compile':>18}")
for name, fps in rows:
    if fps:
        ratio = f"{fps / comp:.2f}x" if comp else "-"
        print(f"{name:<24}{fps:>12.0f}{fps * GF:>10.1f}{ratio:>18}")
    else:
        print(f"{name:<24}{'-':>12}{'-':>10}{'-':>18}")
print("targets: engine bf16 >= 1.5x torch.compile (goal 2x); bound ~3,440 forwards/s at 790 TFLOP/s")
s = eng.get("engine", {}).get("search")
if s:
    how = "extrapolated from %d steps" % s["steps"] if s.get("extrapolated") else "measured"
    print(f"search-like loop: {s['fps']:.0f} forwards/s, 500 x 320 in {s['seconds_500_steps']:.1f} s ({how}; target < 60 s)")
cmp_ = eng.get("components_bf16_ms")
if cmp_:
    print("engine bf16 components (ms per batch): " + ", ".join(f"{k} {v:.1f}" for k, v in cmp_.items()))
if tor.get("compile_mae_ms"):
    print(f"torch.compile parts (ms per batch): mae {tor['compile_mae_ms']}, vqgan+mse {tor['compile_vqgan_ms']}; compile {tor.get('compile_seconds')} s")
c = ker.get("ceilings")
if c:
    print(f"ceilings: DRAM {c['bw_gbs']:.0f} GB/s, fp32 {c['fp32_tflops']:.1f} TFLOP/s, mma.sync {c['mma_tflops']:.1f} TFLOP/s, cuBLASLt {c['cublaslt_tflops']:.1f} TFLOP/s")
for p, b in ker.get("breakdown", {}).items():
    print(f"kernel time per batch, {p}: {b['ms_per_batch']:.1f} ms (MAE {b['mae_ms']:.1f}, VQGAN {b['vqgan_ms']:.1f}); bounds {b['bound_ms']:.1f} ms")
EOF
fi
log "done in $(( $(date +%s) - t0 )) s; logs in $logs"
for s in parity build engine torch kernels; do
  case "${status[$s]}" in ok|skipped) ;; *) exit 1 ;; esac
done
exit 0
