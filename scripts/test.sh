#!/usr/bin/env bash
# The README's test command (`npm test` runs this): build the native engine, its C++ tests and the
# addon in build/ (cmake-js), compile the TypeScript, run ctest (one entry per gtest case) and vitest,
# then the CUDA tests on the CPU CUDA emulator (build-emu/), and print "N passed, N failed, N skipped"
# over all three as the last line (a skip not listed in test/expected-skips.json counts as a failure, and
# the line before says whether there was one).
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
jobs=$(nproc 2>/dev/null || echo 2)

# configure explicitly: an earlier `npm install` may have configured build/ without the tests.
if ! { npx cmake-js configure --out build --CDVTV_TESTS=ON --CDVTV_BENCH=ON &&
       npx cmake-js build --out build --parallel "$jobs"; } > build/build.log 2>&1; then
  tail -n 60 build/build.log
  echo "native build failed (full log: build/build.log)"
  echo "0 passed, 1 failed"
  exit 1
fi
if ! npx tsc -p tsconfig.json; then
  echo "TypeScript build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# The CUDA backend on the CPU CUDA emulator (tools/cuda-emulator/README.md): the same kernel sources
# built as C++, with its C++ tests and an addon of its own (build-emu/), so that every kernel is checked
# against its CPU counterpart, and the CLI runs the cuda backend end to end, without a GPU.
emu_built=0
if { npx cmake-js configure --out build-emu --CDVTV_CUDA=EMULATE --CDVTV_TESTS=ON --CDVTV_BENCH=OFF &&
     npx cmake-js build --out build-emu --parallel "$jobs"; } > build-emu.log 2>&1; then
  emu_built=1
  export VTV_EMULATED_ADDON="$PWD/build-emu/Release/vtv.node"  # test/cli-cuda-emulated.test.ts uses it
else
  tail -n 60 build-emu.log
  echo "CUDA emulator build failed (full log: build-emu.log)"
fi

rm -f build/ctest-junit.xml build/vitest-report.json build-emu/ctest-junit.xml
(cd build && ctest --output-on-failure --output-junit ctest-junit.xml -j "$jobs")
ctest_status=$?
npx vitest run
vitest_status=$?

# The CUDA tests once more, on the emulator, with the emulator's own tests (ctest names "emulator.*",
# tools/cuda-emulator/tests/); ctest runs them one at a time (each uses every core).
emu_status=1
if [ $emu_built = 1 ]; then
  (cd build-emu && ctest --output-on-failure --output-junit ctest-junit.xml)
  emu_status=$?
fi

node scripts/count-results.mjs build/ctest-junit.xml build-emu/ctest-junit.xml build/vitest-report.json
count_status=$?
if [ $ctest_status -ne 0 ] || [ $vitest_status -ne 0 ] || [ $emu_status -ne 0 ] || [ $count_status -ne 0 ]; then
  exit 1
fi
exit 0
