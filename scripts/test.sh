#!/usr/bin/env bash
# The README's test command (`npm test` runs this): build the native engine, its C++ tests and the
# addon in build/ (cmake-js), compile the TypeScript, run ctest (one entry per gtest case) and vitest,
# and print "N passed, N failed" over both as the last line.
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

rm -f build/ctest-junit.xml build/vitest-report.json
(cd build && ctest --output-on-failure --output-junit ctest-junit.xml -j "$jobs")
ctest_status=$?
npx vitest run
vitest_status=$?

node scripts/count-results.mjs build/ctest-junit.xml build/vitest-report.json
count_status=$?
if [ $ctest_status -ne 0 ] || [ $vitest_status -ne 0 ] || [ $count_status -ne 0 ]; then exit 1; fi
exit 0
