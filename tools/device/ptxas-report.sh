#!/usr/bin/env bash
# Compiles every CUDA source of the engine with `ptxas -v` and writes the per-kernel resource table
# (registers, static shared memory, stack frame, spill stores/loads) to ptxas-report.txt beside this
# script. Needs only nvcc (no GPU): run it after changing a kernel, before spending GPU time.
#   tools/device/ptxas-report.sh [arch ...]     (default: 90 80)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
nvcc="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
filt="$(command -v c++filt || command -v cu++filt || echo cat)"
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(90 80)
raw="$(mktemp)"
trap 'rm -f "$raw"' EXIT
for arch in "${archs[@]}"; do
  for src in "$root"/native/src/cuda/*.cu; do
    echo "## sm_$arch $(basename "$src")" >>"$raw"
    "$nvcc" -std=c++17 -O3 -arch="sm_$arch" -Xptxas=-v --expt-relaxed-constexpr -I"$root/native/include" \
      -I"$root/native/src" -c "$src" -o /dev/null 2>>"$raw"
  done
done
out="$here/ptxas-report.txt"
{
  echo "# ptxas resource report ($("$nvcc" --version | tail -1)); regenerate with tools/device/ptxas-report.sh"
  echo "# arch  kernel  registers  smem(static bytes)  stack  spill-stores  spill-loads"
  /usr/bin/env python3 - "$raw" "$filt" <<'PY'
import re, subprocess, sys
raw, filt = sys.argv[1], sys.argv[2]
rows, arch, name, props = [], None, None, {}
def demangle(n):
    try:
        return subprocess.run([filt], input=n + "\n", capture_output=True, text=True).stdout.strip() or n
    except OSError:
        return n
for line in open(raw):
    m = re.match(r"## sm_(\d+)", line)
    if m: arch = m.group(1); continue
    m = re.search(r"Compiling entry function '([^']+)' for 'sm_(\d+)'", line)
    if m: name, props = m.group(1), {}; continue
    m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
    if m and name: props.update(stack=m.group(1), st=m.group(2), ld=m.group(3)); continue
    m = re.search(r"Used (\d+) registers(?:, used \d+ barriers)?(?:, (\d+) bytes smem)?", line)
    if m and name:
        d = demangle(name)
        d = re.sub(r"^void ", "", d)
        d = re.sub(r"vtv::cuda::\(anonymous namespace\)::", "", d)
        d = re.sub(r"\(.*", "", d)
        rows.append((arch, d, m.group(1), m.group(2) or "0", props.get("stack", "?"), props.get("st", "?"), props.get("ld", "?")))
        name = None
for r in rows:
    print("sm_%-4s %-24s %4s regs  %6s smem  %4s stack  %4s spill-st  %4s spill-ld" % r)
bad = [r for r in rows if r[5] not in ("0", "?") or r[6] not in ("0", "?")]
print("# spills: " + ("none" if not bad else ", ".join("%s %s" % (r[0], r[1]) for r in bad)))
print("# dynamic shared memory (not in the table): mha_kernel<DH> takes 4*(N*(2*DH+1) + 8*DH + 8*N) bytes,")
print("#   e.g. 110,004 for N=197, DH=64; 83,152 for N=148, DH=64; 58,548 for N=197, DH=32 (sm_80 allows 163 KB, sm_90 227 KB)")
print("# conv_out_kernel takes 4*29*Ci bytes of dynamic shared memory: 14,848 at Ci = 128 (the decoder's conv_out)")
PY
} >"$out"
cat "$out"
