#!/usr/bin/env bash
# The GPU machine's run, from the device kit that tools/device/kit.sh built and packed elsewhere (no
# build here, no Node.js needed for the C++ parts). Within RUN_BUDGET_S seconds (default 470, under 8
# minutes), each stage capped, everything written under $OUT (default: $RUN_WORK/out):
#   1. parity       every CUDA test (cuda_*_test: kernels, MAE, VQGAN decoder and encoder, the engine
#                   against the CPU backend), with VTV_GRAPH_CAPTURE=strict (a failed graph capture fails)
#   2. sanitizer    compute-sanitizer memcheck, racecheck and synccheck on the kernel tests (the kernel
#                   suites of cuda_kernels_test and cuda_vqgan_test, the NHWC decoder's kernels and conv_nhwc
#                   variants, RUN_SANITIZE_FILTER), 20 s each
# The stages' caps keep room for the later ones; the search gets what is left (at 1,000 forwards/s its
# 160,000 forwards take 160 s) and, cut short, still leaves its per-step log in $OUT.
#   3. kernels      the kernel variant table: every bench_cuda_* binary of the kit
#   4. engine       bench_engine_gpu at batch 320 (bf16 and fp32, a search-like loop)
#   5. torch        torch_baseline.py: the same forward in PyTorch, eager and torch.compile, bf16, batch 320
#   6. search       search-e2e.sh: vtv collect + vtv search 500 steps x 320 samples (the kit's node bundle)
# and a summary table last (also $OUT/summary.txt). With cuobjdump on the machine it also writes the kit's
# sm_90 and sm_90a SASS ($OUT/sass-sm90.txt) for tools/perf-model. Exit status 0 when every stage that ran passed.
#
#   bash tools/device/run.sh [--dry-run] [--kit FILE]   (default kit: .device-kit/vtv-device-kit.tar.xz)
#
# --dry-run rehearses the same script on a machine without a GPU, end to end, in about a minute: the
# parity stage runs a few CUDA tests built for the CPU CUDA emulator (build-emu/, from scripts/test.sh),
# the GPU-only stages print "skipped: no GPU", torch runs the tiny model on the CPU and the search runs
# 2 steps x 4 samples of the tiny model on the cpu backend with this checkout's node and addon. No kit
# is needed. test/device-run.test.ts runs it in CI.
set -uo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
dry=0
kit_file="$root/.device-kit/vtv-device-kit.tar.xz"
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --kit) kit_file="$2"; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
  esac
  shift
done
t0=$(date +%s)
budget="${RUN_BUDGET_S:-470}"
deadline=$(( t0 + budget ))
work="${RUN_WORK:-/tmp/vtv-device-run}"
out="${OUT:-$work/out}"
mkdir -p "$work" "$out"
export PATH="$PATH:/usr/local/cuda/bin"
python="${RUN_PYTHON:-$(command -v python3 || true)}"
log() { printf '[run %3ds] %s\n' "$(( $(date +%s) - t0 ))" "$*" | tee -a "$out/run.log"; }
# Seconds a stage may take: its own cap, or what is left of the budget less `reserve` for later stages.
cap() {
  local want=$1 reserve=${2:-0} left
  left=$(( deadline - $(date +%s) - reserve ))
  (( left < want )) && want=$left
  (( want < 5 )) && want=5
  echo "$want"
}
stages=(parity sanitizer kernels engine torch search)
declare -A status seconds
for s in "${stages[@]}"; do status[$s]="not run"; seconds[$s]=0; done
verdict() {  # stage exit-code seconds
  case $2 in
    0) status[$1]=ok ;;
    124|137) status[$1]="TIMEOUT" ;;
    *) status[$1]="FAILED ($2)" ;;
  esac
  seconds[$1]=$3
}
skip() { status[$1]="skipped: $2"; log "$1: skipped: $2"; }

gpu=""
if [ $dry = 0 ] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  gpu="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
fi
log "run.sh $([ $dry = 1 ] && echo '--dry-run ')in $root, out $out, budget ${budget}s; GPU: ${gpu:-none}"

# ---- the binaries: the kit's, or the emulator build's for a dry run ----------------------------------------
bin="" node_bundle=""
if [ $dry = 1 ]; then
  [ -x "$root/build-emu/cuda_kernels_test" ] && bin="$root/build-emu"
else
  if [ ! -f "$kit_file" ]; then
    echo "run.sh: no kit at $kit_file (build it with tools/device/kit.sh and carry .device-kit)" >&2
    exit 2
  fi
  rm -rf "$work/kit" && tar -C "$work" -xJf "$kit_file" || { echo "run.sh: cannot unpack $kit_file" >&2; exit 2; }
  bin="$work/kit/bin"
  cp "$work/kit/manifest.txt" "$work/kit/ptxas.txt" "$out/" 2>/dev/null
  log "kit: $(tr '\n' ';' <"$work/kit/manifest.txt")"
  [ -f "$work/kit/vtv-node.tar.xz" ] && node_bundle="$work/kit/vtv-node.tar.xz"
  [ -n "$gpu" ] || log "warning: nvidia-smi sees no GPU; the CUDA tests will skip and the benchmarks exit 2"
  # The SASS for the performance model (tools/perf-model: --sass), where the toolkit has cuobjdump: every
  # architecture of the kit (sm_90, and sm_90a where the wgmma kernels are real; the model picks the
  # section by its "code for sm_..." line).
  if command -v cuobjdump >/dev/null && [ -x "$bin/cuda_kernels_test" ]; then
    timeout 60 cuobjdump -sass "$bin/cuda_kernels_test" >"$out/sass-sm90.txt" 2>&1 &&
      log "sass: $out/sass-sm90.txt (python3 tools/perf-model/perf_model.py --sass $out/sass-sm90.txt --ptxas $out/ptxas.txt)"
  fi
fi

# ---- 1. parity ----------------------------------------------------------------------------------------------
report="$out/cuda-report.tsv"
rm -f "$report"
if [ -z "$bin" ]; then
  skip parity "no emulator build (build-emu/: scripts/test.sh makes it)"
else
  s0=$(date +%s) rc=0
  filter="${RUN_PARITY_FILTER:-*}"
  [ $dry = 1 ] && filter="${RUN_PARITY_FILTER:-CudaGraphCache.*:CudaLayerNorm.*:CudaArgmax.TiesPickTheFirstColumnAndGridsFollowTheMode}"
  for t in "$bin"/cuda_*_test; do
    name=$(basename "$t")
    c=$(cap 100 350)
    log "parity: $name (cap $c s)"
    VTV_GRAPH_CAPTURE=strict VTV_CUDA_REPORT="$report" timeout "$c" "$t" --gtest_filter="$filter" \
      --gtest_output="xml:$out/$name.xml" >"$out/$name.log" 2>&1
    r=$?
    [ $r -ne 0 ] && { rc=$r; grep -E -A6 ": Failure$" "$out/$name.log" | head -30; }
    grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$out/$name.log" | sed "s/^/  $name /"
  done
  verdict parity $rc $(( $(date +%s) - s0 ))
  # On the GPU machine every test must run: a skip means the device was not usable for it.
  ran=$(cat "$out"/cuda_*_test.log 2>/dev/null | grep -c "^\[       OK \]")
  skipped=$(cat "$out"/cuda_*_test.log 2>/dev/null | grep -E "^\[  SKIPPED \] .* ms\)" -c)
  if [ $dry = 0 ] && [ "${status[parity]}" = ok ] && { [ "$ran" -eq 0 ] || [ "$skipped" -gt 0 ]; }; then
    status[parity]="NOT RUN ($skipped skipped: no usable GPU)"
    grep -h -E "no usable CUDA GPU|not compiled into this build" "$out"/cuda_*_test.log | head -1
  fi
fi

# ---- 2. compute-sanitizer on the kernel tests (small shapes) --------------------------------------------------
if [ $dry = 1 ] || [ -z "$gpu" ]; then
  skip sanitizer "no GPU"
elif ! command -v compute-sanitizer >/dev/null; then
  skip sanitizer "compute-sanitizer not found"
else
  s0=$(date +%s) rc=0 parts=""
  sfilter="${RUN_SANITIZE_FILTER:-CudaLinear.*:CudaLayerNorm.*:CudaAttention.*:CudaArgmax.*:CudaPatchEmbed.*:CudaTokenScores.*:CudaVqganKernels.*:CudaNhwcKernels.*:CudaVariants.EveryConvNhwcVariantMatchesCpuOn3x3And1x1}"
  for tool in memcheck racecheck synccheck; do
    for t in "$bin/cuda_kernels_test" "$bin/cuda_vqgan_test" "$bin/cuda_nhwc_kernels_test" "$bin/cuda_variants_test"; do
      [ -x "$t" ] || continue
      c=$(cap 20 290)
      log "sanitizer: $tool $(basename "$t") (cap $c s)"
      timeout "$c" compute-sanitizer --tool "$tool" --error-exitcode 3 "$t" --gtest_filter="$sfilter" \
        >"$out/sanitizer-$tool-$(basename "$t").log" 2>&1
      r=$?
      if [ $r -ne 0 ]; then
        rc=$r
        grep -E "^========= " "$out/sanitizer-$tool-$(basename "$t").log" | head -15
      fi
    done
    parts="$parts $tool:$([ $rc -eq 0 ] && echo clean || echo "rc $rc")"
  done
  verdict sanitizer $rc $(( $(date +%s) - s0 ))
  log "sanitizer:$parts"
fi

# ---- 3. the kernel variant table ------------------------------------------------------------------------------
shopt -s nullglob
kernel_benches=()
[ -n "$bin" ] && kernel_benches=("$bin"/bench_cuda_*)
if [ $dry = 1 ] || [ -z "$gpu" ]; then
  skip kernels "no GPU"
elif [ ${#kernel_benches[@]} -eq 0 ]; then
  skip kernels "no bench_cuda_* in the kit"
else
  s0=$(date +%s) rc=0
  for b in "${kernel_benches[@]}"; do
    c=$(cap 60 230)
    log "kernels: $(basename "$b") (cap $c s)"
    timeout "$c" "$b" >"$out/$(basename "$b").out" 2>&1 || rc=$?
    grep -v '^VTV_JSON' "$out/$(basename "$b").out"
  done
  verdict kernels $rc $(( $(date +%s) - s0 ))
fi

# ---- 4. the engine at batch 320 -------------------------------------------------------------------------------
if [ $dry = 1 ] || [ -z "$gpu" ]; then
  skip engine "no GPU"
elif [ ! -x "$bin/bench_engine_gpu" ]; then
  skip engine "no bench_engine_gpu in the kit"
else
  s0=$(date +%s) c=$(cap 45 185)
  log "engine: bench_engine_gpu --batch 320 (cap $c s)"
  timeout "$c" "$bin/bench_engine_gpu" --batch 320 --search-steps "${RUN_SEARCH_STEPS:-20}" >"$out/engine.out" 2>&1
  verdict engine $? $(( $(date +%s) - s0 ))
  grep -v '^VTV_JSON' "$out/engine.out" | tail -20
fi

# ---- 5. PyTorch eager and torch.compile -----------------------------------------------------------------------
if [ -z "$python" ] || ! "$python" -c "import torch" >/dev/null 2>&1; then
  skip torch "no python3 with torch"
else
  s0=$(date +%s) c=$(cap 110 75)
  args=()
  [ $dry = 1 ] && args=(--config tiny --batch 2 --repeats 1 --warmup 1 --dtype fp32 --no-compile --device cpu)
  log "torch: torch_baseline.py ${args[*]} (cap $c s)"
  timeout "$c" "$python" "$root/tools/device/torch_baseline.py" "${args[@]}" >"$out/torch.out" 2>"$out/torch.err"
  verdict torch $? $(( $(date +%s) - s0 ))
  tail -3 "$out/torch.err"
  cat "$out/torch.out"
fi

# ---- 6. vtv search end to end -----------------------------------------------------------------------------------
if [ $dry = 1 ]; then
  addon="${VTV_ADDON:-$root/build/Release/vtv.node}"  # the CLI loads VTV_ADDON when set
  if [ -f "$root/dist/src/cli/main.js" ] && [ -f "$addon" ] && command -v node >/dev/null; then
    s0=$(date +%s) c=$(cap 120 5)
    log "search: search_e2e.mjs, tiny model, cpu fp32, 2 steps x 4 samples, this checkout's node (cap $c s)"
    rm -rf "$work/e2e"
    timeout "$c" node "$root/tools/device/search_e2e.mjs" --app "$root" --work "$work/e2e" --steps 2 --samples 4 \
      --precision fp32 --model tiny --backend cpu --episodes 8 >"$out/search.out" 2>&1
    verdict search $? $(( $(date +%s) - s0 ))
    grep -E "^\[e2e\]" "$out/search.out" | tail -4
  else
    skip search "no dist/ or build/Release/vtv.node here (npm run compile)"
  fi
elif [ -z "$node_bundle" ]; then
  skip search "the kit has no node bundle (kit.sh makes one when dist/ is built)"
else
  s0=$(date +%s) c=$(cap 300 5)
  mkdir -p "$root/.device-node"
  cp "$node_bundle" "$root/.device-node/vtv-node.tar.xz"
  log "search: search-e2e.sh, 500 steps x 320 samples (cap $c s)"
  E2E_WORK="$work/e2e" OUT="$out" timeout "$c" bash "$root/tools/device/search-e2e.sh" >"$out/search.out" 2>&1
  verdict search $? $(( $(date +%s) - s0 ))
  cp "$work/e2e"/run/search/*/log.jsonl "$out/" 2>/dev/null  # the per-step log, also of a search cut short
  grep -E "^\[e2e\]" "$out/search.out" | tail -4
fi

# ---- the summary, last ------------------------------------------------------------------------------------------
{
  echo
  echo "device run $([ $dry = 1 ] && echo '(dry run, no GPU) ')in $(( $(date +%s) - t0 )) s; GPU: ${gpu:-none}"
  printf '%-10s %-44s %6s\n' stage status seconds
  for s in "${stages[@]}"; do printf '%-10s %-44s %6s\n' "$s" "${status[$s]}" "${seconds[$s]}"; done
  if [ -n "$python" ] && "$python" -c "" 2>/dev/null; then
    "$python" - "$out" <<'EOF'
import glob, json, os, sys
out = sys.argv[1]
def last_json(name, prefix):
    try:
        lines = open(os.path.join(out, name)).read().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        if line.startswith(prefix):
            try:
                return json.loads(line[len(prefix):])
            except ValueError:
                return {}
    return {}
passed = failed = skipped = 0
for log in glob.glob(os.path.join(out, "cuda_*_test.log")):
    for line in open(log, errors="replace"):
        if line.startswith("[       OK ]"): passed += 1
        elif line.startswith("[  FAILED  ]") and " ms)" in line: failed += 1
        elif line.startswith("[  SKIPPED ]") and " ms)" in line: skipped += 1
print(f"parity tests: {passed} passed, {failed} failed, {skipped} skipped")
eng, tor, e2e = last_json("engine.out", "VTV_JSON "), last_json("torch.out", ""), last_json("search.out", "VTV_JSON ")
GF = 114.7 * 2e9 / 1e12  # forwards/s x GF = TFLOP/s, for ViT-L (the dry run's tiny model gets none)
if tor.get("config", "mae-vqgan-vit-large") != "mae-vqgan-vit-large":
    GF = float("nan")
comp = tor.get("compile_fps")
rows = [("torch eager", tor.get("eager_fps")), ("torch.compile", comp)]
for p in ("bf16", "fp32"):
    rows.append((f"engine {p}", eng.get("engine", {}).get(p, {}).get("fps")))
print(f"{'forward, batch ' + str(eng.get('batch', tor.get('batch', '?'))):<24}{'forwards/s':>12}{'TFLOP/s':>10}{'vs torch.compile':>18}")
for name, fps in rows:
    if fps:
        print(f"{name:<24}{fps:>12.0f}{fps * GF:>10.1f}{(f'{fps / comp:.2f}x' if comp else '-'):>18}")
    else:
        print(f"{name:<24}{'-':>12}{'-':>10}{'-':>18}")
if e2e.get("search_s"):
    print(f"vtv search {e2e['steps']} x {e2e['samples']} ({e2e['model']}, {e2e['backend']} {e2e['precision']}): "
          f"{e2e['search_s']:.1f} s, {e2e['sample_forwards_per_s']:.0f} sample forwards/s")
EOF
  fi
} | tee "$out/summary.txt"
for s in "${stages[@]}"; do
  case "${status[$s]}" in ok|skipped:*) ;; *) exit 1 ;; esac
done
exit 0
