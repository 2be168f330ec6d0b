// scripts/count-results.mjs, the line CI reads: passes, failures, and skips checked against
// test/expected-skips.json (a skip not listed there fails the run).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'vtv-count-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const testcase = (name: string, status: 'run' | 'notrun' | 'fail') =>
  `<testcase name="${name}" classname="${name}" time="0.1" status="${status}">${status === 'notrun' ? '<skipped message="SKIP_REGULAR_EXPRESSION_MATCHED"/>' : ''}${status === 'fail' ? '<failure message="x"/>' : ''}</testcase>`;

function junit(file: string, cases: [string, 'run' | 'notrun' | 'fail'][]) {
  const path = join(dir, file);
  writeFileSync(path, `<?xml version="1.0"?><testsuite>${cases.map(([n, s]) => testcase(n, s)).join('')}</testsuite>`);
  return path;
}

function vitestReport(file: string, tests: { file: string; titles: string[]; status: string }[]) {
  const path = join(dir, file);
  const passed = tests.filter((t) => t.status === 'passed').length;
  const failed = tests.filter((t) => t.status === 'failed').length;
  const byFile = [...new Set(tests.map((t) => t.file))].map((f) => ({
    name: join(process.cwd(), f),
    status: tests.some((t) => t.file === f && t.status === 'failed') ? 'failed' : 'passed',
    assertionResults: tests
      .filter((t) => t.file === f)
      .map((t) => ({ ancestorTitles: t.titles.slice(0, -1), title: t.titles.at(-1), fullName: t.titles.join(' '), status: t.status })),
  }));
  writeFileSync(
    path,
    JSON.stringify({
      numPassedTests: passed,
      numFailedTests: failed,
      numPendingTests: tests.length - passed - failed,
      numTotalTests: tests.length,
      testResults: byFile,
    }),
  );
  return path;
}

function count(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ['scripts/count-results.mjs', ...args], { encoding: 'utf8', env: { ...process.env, VTV_CI: '', ...env } });
  const lines = r.stdout.trim().split('\n');
  return { status: r.status, last: lines.at(-1), stdout: r.stdout, stderr: r.stderr };
}

const browser = { file: 'test/report-browser.test.ts', titles: ['report in headless chromium', 'a finished run'], status: 'skipped' };
const plain = { file: 'test/x.test.ts', titles: ['a', 'b'], status: 'passed' };

describe('count-results', () => {
  it('passes with only listed skips, and says so on its last line', () => {
    const x = junit('ok.xml', [
      ['EngineTest.A', 'run'],
      ['CudaMae.TinyModelMatchesCpu', 'notrun'],
    ]);
    const e = junit('emu.xml', [
      ['emulated.CudaMae.TinyModelMatchesCpu', 'run'],
      ['emulated.CudaMaeSpeed.FullDepthVitLargeBatch320', 'notrun'],
    ]);
    const r = count([x, e, vitestReport('ok.json', [plain, browser])]);
    expect(r.last).toBe('3 passed, 0 failed, 3 skipped');
    expect(r.stdout).toContain('no unexpected skip (3 expected, listed above)');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/expected skip: 1 x ctest emulated\.CudaMaeSpeed\.FullDepthVitLargeBatch320: .*emulator/);
  });

  it('fails on a skip that is not listed, naming it', () => {
    const x = junit('bad.xml', [
      ['EngineTest.A', 'run'],
      ['EngineTest.B', 'notrun'],
      ['emulated.CudaMae.TinyModelMatchesCpu', 'notrun'], // the emulated tiny test must run
    ]);
    const r = count([x, vitestReport('bad.json', [plain, { ...plain, titles: ['a', 'c'], status: 'skipped' }])]);
    expect(r.status).toBe(1);
    expect(r.last).toBe('2 passed, 3 failed, 0 skipped');
    expect(r.stdout).toContain('3 unexpected skips (counted as failed), 0 expected');
    expect(r.stderr).toContain('UNEXPECTED SKIP (not in test/expected-skips.json): ctest: EngineTest.B');
    expect(r.stderr).toContain('vitest: test/x.test.ts > a > c');
  });

  it('does not expect the browser skip in a CI run (VTV_CI set)', () => {
    const r = count([junit('ci.xml', [['EngineTest.A', 'run']]), vitestReport('ci.json', [plain, browser])], { VTV_CI: '1' });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/1 unexpected skip \(counted as failed\)/);
  });

  it('counts failures, missing reports and a malformed skip list', () => {
    const r = count([junit('f.xml', [['EngineTest.A', 'fail']]), join(dir, 'missing.json')]);
    expect(r.status).toBe(1);
    expect(r.last).toBe('0 passed, 2 failed, 0 skipped');
    const list = join(dir, 'skips.json');
    writeFileSync(list, JSON.stringify({ skips: [{ runner: 'ctest', name: 'X*' }] }));
    const bad = count(['--expected-skips', list, junit('g.xml', [['EngineTest.A', 'run']]), vitestReport('g.json', [plain])]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain('skips[0] has no reason');
  });

  it('the repository list gives every entry a reason', () => {
    const list = JSON.parse(readFileSync('test/expected-skips.json', 'utf8')).skips as { name: string; reason: string }[];
    expect(list.length).toBeGreaterThan(0);
    for (const s of list) expect(s.reason.length, s.name).toBeGreaterThan(20);
  });
});
