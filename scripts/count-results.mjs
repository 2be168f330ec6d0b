#!/usr/bin/env node
// Adds up ctest's JUnit reports and vitest's JSON report into the one line CI reads: "N passed, N failed".
// A missing report counts as one failure: a runner that produced nothing did not pass.
import { existsSync, readFileSync } from 'node:fs';

// Arguments: any number of ctest JUnit reports (*.xml), then vitest's JSON report (*.json).
const args = process.argv.slice(2);
const junitPaths = args.filter((a) => a.endsWith('.xml'));
const vitestPath = args.find((a) => a.endsWith('.json'));
let passed = 0;
let failed = 0;
let skipped = 0;

for (const junitPath of junitPaths) {
  if (!existsSync(junitPath)) {
    console.error(`count-results: no ctest report at ${junitPath}`);
    failed++;
    continue;
  }
  const xml = readFileSync(junitPath, 'utf8');
  if (!/<testcase\b/.test(xml)) {
    console.error(`count-results: ctest ran no test for ${junitPath} (were the C++ tests built? apt-get install libgtest-dev)`);
    failed++;
  }
  for (const m of xml.matchAll(/<testcase\b[^>]*?(\/>|>([\s\S]*?)<\/testcase>)/g)) {
    const body = m[2] ?? '';
    const status = /status="([a-z]+)"/.exec(m[0])?.[1];
    if (/<failure|<error/.test(body) || status === 'fail') failed++;
    else if (/<skipped/.test(body) || status === 'notrun' || status === 'disabled') skipped++;
    else passed++;
  }
}

if (vitestPath && existsSync(vitestPath)) {
  const r = JSON.parse(readFileSync(vitestPath, 'utf8'));
  passed += r.numPassedTests ?? 0;
  failed += r.numFailedTests ?? 0;
  // A file that failed to load has no failed test in it, but it did fail.
  for (const file of r.testResults ?? []) {
    const anyFailed = (file.assertionResults ?? []).some((a) => a.status === 'failed');
    if (file.status === 'failed' && !anyFailed) failed++;
  }
  skipped += (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
  if ((r.numTotalTests ?? 0) === 0) failed++;
} else {
  console.error(`count-results: no vitest report at ${vitestPath}`);
  failed++;
}

console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
