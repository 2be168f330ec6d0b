import { defineConfig } from 'vitest/config';

// Native addon tests run in forked processes: a crash in the addon must fail one test file, not the runner.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ['default', 'json'],
    outputFile: { json: 'build/vitest-report.json' },
  },
});
