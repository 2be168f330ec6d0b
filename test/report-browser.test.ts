// The report rendered in a real headless browser (Debian's chromium through playwright-core, no browser
// download): the page loads without console errors or failed requests, every <img> decodes
// (naturalWidth > 0), and a full-page screenshot is written under the run directory.
// Set VTV_REPORT_KEEP=1 to keep the run directories (their path is printed) and look at the screenshots.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { decode } from 'fast-png';
import { type BrowserContext, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeReport } from '../src/report/report.js';
import { makeCompleteRun, makeInterruptedRun } from './report-fixture.js';

const CHROMIUM = process.env.VTV_CHROMIUM ?? '/usr/bin/chromium';
// Without these, chromium tries to reach the network (updates, sync, QUIC probes) on a machine that has none.
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

// Whether the browser checks run depends on whether chromium is installed, not on the environment. Under
// .ci/run (which installs chromium and sets VTV_CI=1) a missing browser is a failure; elsewhere it is a
// skip listed in test/expected-skips.json.
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.VTV_CI) {
  throw new Error(`report-browser: ${CHROMIUM} not found, and this is a CI run (VTV_CI is set); .ci/run installs Debian's chromium`);
}
if (!haveChromium) console.warn(`report-browser: ${CHROMIUM} not found (install Debian's chromium or set VTV_CHROMIUM); browser checks skipped`);

let base: string;
let browser: BrowserContext | undefined;
let userData: string;

beforeAll(async () => {
  base = mkdtempSync(join(tmpdir(), 'vtv-report-browser-'));
  if (!haveChromium) return;
  userData = mkdtempSync(join(tmpdir(), 'vtv-chromium-profile-'));
  // A persistent context is the way to give chromium a fresh user-data dir of our own.
  browser = await chromium.launchPersistentContext(userData, { executablePath: CHROMIUM, args: ARGS, headless: true, viewport: { width: 1300, height: 900 } });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  if (userData) rmSync(userData, { recursive: true, force: true });
  if (process.env.VTV_REPORT_KEEP) console.log(`report-browser: run directories kept in ${base}`);
  else rmSync(base, { recursive: true, force: true });
});

async function renderAndCheck(runDir: string): Promise<string> {
  const res = writeReport(runDir);
  const page = await browser!.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} (${r.failure()?.errorText})`));
  // Anything not under the report folder would make it non-self-contained.
  const outside: string[] = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(pathToFileURL(res.outDir).href)) outside.push(r.url());
  });
  await page.goto(pathToFileURL(res.html).href, { waitUntil: 'load' });
  const imgs = await page.$$eval('img', (els) =>
    els.map((e) => ({ src: e.getAttribute('src'), w: (e as HTMLImageElement).naturalWidth, complete: (e as HTMLImageElement).complete })),
  );
  expect(imgs.length).toBeGreaterThan(0);
  for (const i of imgs) {
    expect(i.complete, `${i.src} did not finish loading`).toBe(true);
    expect(i.w, `${i.src} did not decode`).toBeGreaterThan(0);
  }
  const shot = join(runDir, 'report', 'screenshot.png');
  await page.screenshot({ path: shot, fullPage: true });
  await page.close();
  expect(problems).toEqual([]);
  expect(outside.filter((u) => !u.startsWith('data:'))).toEqual([]);
  const png = decode(readFileSync(shot));
  expect(png.width).toBeGreaterThanOrEqual(1000);
  expect(png.height).toBeGreaterThan(900);
  return shot;
}

describe.skipIf(!haveChromium)('report in headless chromium', () => {
  it('a finished run: loads cleanly, every image decodes, screenshot written', async () => {
    const dir = join(base, 'complete');
    makeCompleteRun(dir);
    const shot = await renderAndCheck(dir);
    expect(existsSync(shot)).toBe(true);
  });

  it('an interrupted run: loads cleanly, every image decodes, screenshot written', async () => {
    const dir = join(base, 'interrupted');
    makeInterruptedRun(dir);
    const shot = await renderAndCheck(dir);
    expect(existsSync(shot)).toBe(true);
  });
});
