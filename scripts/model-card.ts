// Writes (or, with --check, verifies) the record of a shipped model: models/<name>.json holds the file's
// SHA-256 and size, every tensor's shape and dtype, and the training record the trainer stored in the
// file's metadata (config, steps, seeds, wall time, commit). test/shipped_model.test.ts checks the
// shipped file against it, so a changed or truncated file cannot pass as the documented model.
// Run: npx tsx scripts/model-card.ts models/mae-vqgan-mini.safetensors [--check]
import { createHash } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { readSafetensorsHeader } from '../src/checkpoint/safetensors.js';

export interface ModelRecord {
  format: 'vtv-model-record';
  version: 1;
  file: string;
  bytes: number;
  sha256: string;
  tensors: Record<string, { dtype: string; shape: number[] }>;
  metadata: Record<string, string>;
}

export function modelRecord(path: string): ModelRecord {
  const h = readSafetensorsHeader(path);
  const tensors: ModelRecord['tensors'] = {};
  for (const [k, t] of [...h.tensors.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) tensors[k] = { dtype: t.dtype, shape: [...t.shape] };
  return {
    format: 'vtv-model-record',
    version: 1,
    file: path.split('/').pop() as string,
    bytes: statSync(path).size,
    sha256: createHash('sha256').update(readFileSync(path)).digest('hex'),
    tensors,
    metadata: h.metadata,
  };
}

if (process.argv[1]?.endsWith('model-card.ts')) {
  const path = process.argv[2];
  if (!path) throw new Error('usage: npx tsx scripts/model-card.ts <model.safetensors> [--check]');
  const recordPath = path.replace(/\.safetensors$/, '.json');
  const rec = modelRecord(path);
  if (process.argv.includes('--check')) {
    const want = JSON.parse(readFileSync(recordPath, 'utf8')) as ModelRecord;
    if (want.sha256 !== rec.sha256) throw new Error(`${path}: SHA-256 ${rec.sha256} differs from ${recordPath}'s ${want.sha256}`);
    console.log(`${path}: matches ${recordPath}`);
  } else {
    writeFileSync(recordPath, `${JSON.stringify(rec, null, 1)}\n`);
    console.log(`wrote ${recordPath} (${Object.keys(rec.tensors).length} tensors, sha256 ${rec.sha256.slice(0, 16)}...)`);
  }
}
