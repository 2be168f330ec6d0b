#!/usr/bin/env node
// Adds up ctest's JUnit reports and vitest's JSON report into the one line CI reads:
// "N passed, N failed, N skipped as expected, no unexpected skip".
// A missing report counts as one failure: a runner that produced nothing did not pass. A skipped test
// must be listed in test/expected-skips.json (with its reason); any other skip counts as a failure, so
// a test that silently stopped running fails the run.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

// Arguments: [--expected-skips FILE], any number of ctest JUnit reports (*.xml), then vitest's JSON report (*.json).
const argv = process.argv.slice(2);
let skipsPath = join(dirname(fileURLToPath(import.meta.url)), '..', 'test', 'expected-skips.json');
const at = argv.indexOf('--expected-skips');
if (at >= 0) {
  skipsPath = argv[at + 1];
  argv.splice(at, 2);
}
const junitPaths = argv.filter((a) => a.endsWith('.xml'));
const vitestPath = argv.find((a) => a.endsWith('.json'));

function loadExpectedSkips(path) {
  let list;
  try {
    list = JSON.parse(readFileSync(path, 'utf8')).skips;
  } catch (e) {
    console.error(`count-results: cannot read the expected-skip list ${path}: ${e.message}`);
    process.exit(1);
  }
  if (!Array.isArray(list)) {
    console.error(`count-results: ${path} has no "skips" array`);
    process.exit(1);
  }
  return list.map((s, i) => {
    for (const k of ['runner', 'name', 'reason']) {
      if (typeof s[k] !== 'string' || !s[k]) {
        console.error(`count-results: ${path}: skips[${i}] has no ${k}`);
        process.exit(1);
      }
    }
    if (s.runner !== 'ctest' && s.runner !== 'vitest') {
      console.error(`count-results: ${path}: skips[${i}].runner is '${s.runner}' (expected ctest or vitest)`);
      process.exit(1);
    }
    const pattern = new RegExp(
      `^${s.name
        .split('*')
        .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*')}$`,
    );
    return { ...s, pattern, active: !(s.unlessEnv && process.env[s.unlessEnv]), seen: 0 };
  });
}

const expectedSkips = loadExpectedSkips(skipsPath);
let passed = 0;
let failed = 0;
const unexpected = [];
let expectedCount = 0;

function skippedTest(runner, name) {
  const entry = expectedSkips.find((s) => s.active && s.runner === runner && s.pattern.test(name));
  if (entry) {
    entry.seen++;
    expectedCount++;
  } else {
    unexpected.push(`${runner}: ${name}`);
  }
}

const unescapeXml = (s) =>
  s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');

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
    const name = unescapeXml(/\bname="([^"]*)"/.exec(m[0])?.[1] ?? '?');
    if (/<failure|<error/.test(body) || status === 'fail') failed++;
    else if (/<skipped/.test(body) || status === 'notrun' || status === 'disabled') skippedTest('ctest', name);
    else passed++;
  }
}

if (vitestPath && existsSync(vitestPath)) {
  const r = JSON.parse(readFileSync(vitestPath, 'utf8'));
  passed += r.numPassedTests ?? 0;
  failed += r.numFailedTests ?? 0;
  for (const file of r.testResults ?? []) {
    const assertions = file.assertionResults ?? [];
    // A file that failed to load has no failed test in it, but it did fail.
    if (file.status === 'failed' && !assertions.some((a) => a.status === 'failed')) failed++;
    const rel = relative(process.cwd(), file.name ?? '?');
    for (const a of assertions) {
      if (a.status === 'skipped' || a.status === 'pending' || a.status === 'todo' || a.status === 'disabled') {
        skippedTest('vitest', [rel, ...(a.ancestorTitles ?? []), a.title].join(' > '));
      }
    }
  }
  if ((r.numTotalTests ?? 0) === 0) failed++;
} else {
  console.error(`count-results: no vitest report at ${vitestPath}`);
  failed++;
}

for (const s of expectedSkips) {
  if (s.seen) console.log(`expected skip: ${s.seen} x ${s.runner} ${s.name}: ${s.reason}`);
}
for (const u of unexpected) console.error(`count-results: UNEXPECTED SKIP (not in ${relative(process.cwd(), skipsPath)}): ${u}`);
failed += unexpected.length;
// The summary line CI reads is the plain "N passed, N failed, N skipped" (every skip counted there is an
// expected one: an unexpected skip is counted as failed); the line before says which is which.
console.log(
  unexpected.length
    ? `${unexpected.length} unexpected skip${unexpected.length > 1 ? 's' : ''} (counted as failed), ${expectedCount} expected`
    : `no unexpected skip (${expectedCount} expected, listed above)`,
);
console.log(`${passed} passed, ${failed} failed, ${expectedCount} skipped`);
process.exit(failed > 0 ? 1 : 0);
