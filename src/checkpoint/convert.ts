// `vtv convert`: released MAE-VQGAN .pth (+ optional VQGAN last.ckpt) -> one safetensors file with
// the engine's key names, streamed tensor by tensor so memory stays bounded by the largest tensor.
import { existsSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { type ModelConfig, ModelConfigSchema, PRESETS } from '../config.js';
import { InputError, UsageError } from '../errors.js';
import { readJsonFile } from '../run/json-file.js';
import { f32ToBf16 } from './dtype.js';
import { dimMismatches, inferConfig, inferDims } from './infer-config.js';
import { maeKeys, type Shape, VQ_MODULES, vqDecodeKeys, vqEncodeKeys } from './keys.js';
import { describe } from './pickle.js';
import { SafetensorsWriter, type TensorSpec } from './safetensors.js';
import { CheckpointError, TorchCheckpoint } from './torch-checkpoint.js';
import { findInert, TensorRef } from './torch-globals.js';

export interface ConvertOptions {
  /** The MAE-VQGAN .pth (torch.save zip): `{'model': state_dict, ...}`, or a bare state dict. */
  mae: string;
  /** The VQGAN Lightning `last.ckpt` (weights under 'state_dict'); needed when the .pth has no vae.* keys. */
  vqgan?: string;
  /** Output safetensors path; written to "<out>.tmp-<pid>" and renamed when complete. */
  out: string;
  /** Stored element type; default 'fp32'. 'bf16' rounds to nearest even, as torch's .to(bfloat16). */
  dtype?: 'fp32' | 'bf16';
  /**
   * A preset name (see src/config.ts), a path to a JSON ModelConfig, or a ModelConfig. Default: the
   * preset whose shape-determined fields match the checkpoint (head counts cannot be read from shapes).
   * Either way every tensor's shape is checked against the config.
   */
  config?: string | ModelConfig;
  /** Which source wins when both give a VQGAN key; default 'pth' (its vae.*), with a warning. */
  prefer?: 'pth' | 'ckpt';
  /** Replace an existing output file (never one of the inputs); default false: an existing --out is refused. */
  overwrite?: boolean;
  /** Called after each tensor is written. */
  onProgress?: (done: number, total: number, key: string) => void;
}

export interface ConvertSummary {
  out: string;
  keys: number;
  /** Size of the written file. */
  bytes: number;
  seconds: number;
  config: ModelConfig;
  dtype: 'fp32' | 'bf16';
  /** Whether the optional VQGAN encoder (vae.encoder.*, vae.quant_conv.*) was written. */
  encoder: boolean;
  warnings: string[];
}

interface Source {
  ckpt: TorchCheckpoint;
  key: string; // key inside the source state dict
  ref: TensorRef;
}

const FIRST = 5;
const listFirst = (xs: string[]) => xs.slice(0, FIRST).join(', ') + (xs.length > FIRST ? `, ... (${xs.length} in all)` : '');

function asMap(v: unknown, what: string): Map<unknown, unknown> {
  if (!(v instanceof Map)) throw new CheckpointError(`${what} is a ${describe(v)}, not a dict`);
  return v;
}

/** The tensors of a state dict; refuses inert (unknown-class) objects anywhere inside it. */
function stateDictTensors(sd: Map<unknown, unknown>, ckpt: TorchCheckpoint, where: string, warnings: string[]): Map<string, Source> {
  const inert = findInert(sd, where);
  if (inert.length) {
    const f = inert[0];
    throw new CheckpointError(
      `${ckpt.path}: refused: ${f.path} is an object of class '${f.cls}', which is not a tensor and is not on the allowlist (${inert.length} such object(s) in ${where})`,
    );
  }
  const out = new Map<string, Source>();
  const other: string[] = [];
  for (const [k, v] of sd) {
    if (typeof k !== 'string') throw new CheckpointError(`${ckpt.path}: ${where} has a non-string key ${String(k)}`);
    if (v instanceof TensorRef) out.set(k, { ckpt, key: k, ref: v });
    else other.push(k);
  }
  if (other.length) warnings.push(`${ckpt.path}: ignored ${other.length} non-tensor entr${other.length === 1 ? 'y' : 'ies'} in ${where}: ${listFirst(other)}`);
  return out;
}

function modelStateDict(ckpt: TorchCheckpoint): { sd: Map<unknown, unknown>; where: string } {
  const root = asMap(ckpt.root, `${ckpt.path}: top-level object`);
  for (const k of ['model', 'state_dict']) {
    if (root.has(k)) return { sd: asMap(root.get(k), `${ckpt.path}: '${k}'`), where: k };
  }
  if ([...root.values()].length && [...root.values()].every((v) => v instanceof TensorRef)) return { sd: root, where: '(state dict)' };
  throw new CheckpointError(`${ckpt.path}: no 'model' or 'state_dict' entry (top-level keys: ${listFirst([...root.keys()].map(String))})`);
}

function resolveConfig(c: string | ModelConfig): ModelConfig {
  if (typeof c !== 'string') return ModelConfigSchema.parse(c);
  if (PRESETS[c]) return structuredClone(PRESETS[c]);
  if (existsSync(c)) {
    const r = ModelConfigSchema.safeParse(readJsonFile(c, 'model config'));
    if (!r.success) throw new InputError(`config file ${c} is not a model config: ${r.error.issues[0]?.path.join('.')}: ${r.error.issues[0]?.message}`);
    return r.data;
  }
  throw new InputError(`config '${c}' is neither a preset (${Object.keys(PRESETS).join(', ')}) nor an existing JSON file`);
}

/** Same file: same device and inode (a link or another spelling of the path is the same file). */
function sameFile(a: string, b: string): boolean {
  try {
    const sa = statSync(a);
    const sb = statSync(b);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}

/** The output never replaces an input, and replaces an existing file only when asked to. */
function checkOutput(opts: ConvertOptions): void {
  for (const [flag, input] of [
    ['--mae', opts.mae],
    ['--vqgan', opts.vqgan],
  ] as const) {
    if (input !== undefined && (resolve(input) === resolve(opts.out) || sameFile(input, opts.out))) {
      throw new UsageError(`--out ${opts.out} is the ${flag} input: converting would replace the checkpoint it reads; choose another --out`);
    }
  }
  if (existsSync(opts.out) && !opts.overwrite) {
    throw new UsageError(`${opts.out} exists: pass --force to replace it (it is replaced only once the new file is complete), or choose another --out`);
  }
}

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

/**
 * Converts the released checkpoints to the engine's safetensors file.
 *
 * Output keys: the MAE state-dict keys exactly as the released checkpoint has them (398 for ViT-L), and the VQGAN under "vae."
 * — the codebook, post_quant_conv and decoder are required; the encoder and quant_conv are written only
 * when complete. VQGAN keys come from the .pth's own vae.* and/or last.ckpt's state_dict (quantize,
 * post_quant_conv, decoder, encoder, quant_conv; loss.* is dropped). Metadata: vtv_config (JSON),
 * vtv_format "1", source (input file names), dtype.
 *
 * Pickles are never executed (see torch-globals.ts for what each global resolves to); a state dict
 * holding an object of a class outside the allowlist is refused with its class named. Missing keys,
 * shape mismatches, truncated or corrupted files throw errors naming the file and key.
 */
export async function convertCheckpoints(opts: ConvertOptions): Promise<ConvertSummary> {
  const t0 = performance.now();
  const dtype = opts.dtype ?? 'fp32';
  if (dtype !== 'fp32' && dtype !== 'bf16') throw new UsageError(`dtype must be 'fp32' or 'bf16', got '${dtype}'`);
  const prefer = opts.prefer ?? 'pth';
  checkOutput(opts);
  const warnings: string[] = [];
  const opened: TorchCheckpoint[] = [];
  try {
    const mae = TorchCheckpoint.open(opts.mae);
    opened.push(mae);
    const { sd, where } = modelStateDict(mae);
    const maeTensors = stateDictTensors(sd, mae, where, warnings);

    const maeSrc = new Map<string, Source>();
    const vqFromPth = new Map<string, Source>();
    const dropped: string[] = [];
    for (const [k, s] of maeTensors) {
      if (k.startsWith('vae.')) {
        const inner = k.slice(4);
        if (VQ_MODULES.includes(inner.split('.')[0])) vqFromPth.set(inner, s);
        else if (!inner.startsWith('loss.')) dropped.push(k);
      } else maeSrc.set(k, s);
    }
    const vqFromCkpt = new Map<string, Source>();
    if (opts.vqgan) {
      const vq = TorchCheckpoint.open(opts.vqgan);
      opened.push(vq);
      const root = asMap(vq.root, `${vq.path}: top-level object`);
      if (!root.has('state_dict'))
        throw new CheckpointError(
          `${vq.path}: no 'state_dict' entry; is this a Lightning checkpoint? (top-level keys: ${listFirst([...root.keys()].map(String))})`,
        );
      for (const [k, s] of stateDictTensors(asMap(root.get('state_dict'), `${vq.path}: 'state_dict'`), vq, 'state_dict', warnings)) {
        if (VQ_MODULES.includes(k.split('.')[0])) vqFromCkpt.set(k, s);
        else if (!k.startsWith('loss.')) dropped.push(`${basename(vq.path)}:${k}`);
      }
    }
    const vqSrc = new Map(prefer === 'pth' ? vqFromCkpt : vqFromPth);
    const dup: string[] = [];
    for (const [k, s] of prefer === 'pth' ? vqFromPth : vqFromCkpt) {
      if (vqSrc.has(k)) dup.push(k);
      vqSrc.set(k, s);
    }
    if (dup.length) {
      const [winner, loser] = prefer === 'pth' ? [opts.mae, opts.vqgan] : [opts.vqgan, opts.mae];
      warnings.push(`${dup.length} VQGAN key(s) are in both files; used ${winner}'s, ignored ${loser}'s duplicate (e.g. ${listFirst(dup)})`);
    }

    const shapes = (m: Map<string, Source>) => new Map([...m].map(([k, s]) => [k, s.ref.size]));
    const dims = inferDims(shapes(maeSrc), shapes(vqSrc));
    let config: ModelConfig;
    if (opts.config !== undefined) {
      config = resolveConfig(opts.config);
      const bad = dimMismatches(config, dims);
      if (bad.length) throw new CheckpointError(`${opts.mae}: checkpoint does not match config '${config.name}': ${bad.join('; ')}`);
    } else config = inferConfig(dims, opts.mae);

    const sources = `${opts.mae}${opts.vqgan ? ` or ${opts.vqgan}` : ''}`;
    const wanted = new Map<string, { shape: Shape; src: Source | undefined }>();
    for (const [k, shape] of maeKeys(config)) wanted.set(k, { shape, src: maeSrc.get(k) });
    for (const [k, shape] of vqDecodeKeys(config)) wanted.set(`vae.${k}`, { shape, src: vqSrc.get(k) });
    const missing = [...wanted].filter(([, w]) => !w.src).map(([k]) => k);
    if (missing.length) {
      const hint = missing.some((k) => k.startsWith('vae.')) && !opts.vqgan ? ' (the .pth has no complete vae.*; pass the VQGAN last.ckpt)' : '';
      throw new CheckpointError(`missing ${missing.length} key(s) for config '${config.name}' in ${sources}: ${listFirst(missing)}${hint}`);
    }
    const enc = vqEncodeKeys(config);
    const encPresent = [...enc.keys()].filter((k) => vqSrc.has(k));
    const encoder = encPresent.length === enc.size;
    if (encoder) for (const [k, shape] of enc) wanted.set(`vae.${k}`, { shape, src: vqSrc.get(k) });
    else if (encPresent.length)
      warnings.push(
        `VQGAN encoder is incomplete (${encPresent.length} of ${enc.size} keys; missing e.g. ${listFirst([...enc.keys()].filter((k) => !vqSrc.has(k)))}); not written`,
      );

    const badShapes: string[] = [];
    for (const [k, w] of wanted) {
      const got = w.src?.ref.size ?? [];
      if (JSON.stringify(got) !== JSON.stringify(w.shape))
        badShapes.push(`${k}: config '${config.name}' expects [${w.shape}], ${w.src?.ckpt.path} has [${got}]`);
    }
    if (badShapes.length) throw new CheckpointError(`shape mismatch: ${listFirst(badShapes)}`);

    const usedVq = new Set([...wanted.keys()].filter((k) => k.startsWith('vae.')).map((k) => k.slice(4)));
    const unusedMae = [...maeSrc.keys()].filter((k) => !wanted.has(k));
    const unusedVq = [...vqSrc.keys()].filter((k) => !usedVq.has(k) && !enc.has(k));
    const unused = [...unusedMae, ...unusedVq.map((k) => `vae.${k}`), ...dropped];
    if (unused.length) warnings.push(`ignored ${unused.length} key(s) the engine does not use: ${listFirst(unused)}`);

    const stDtype = dtype === 'bf16' ? 'BF16' : 'F32';
    const specs = new Map<string, TensorSpec>([...wanted].map(([k, w]) => [k, { dtype: stDtype, shape: w.shape }]));
    const metadata = {
      vtv_config: JSON.stringify(config),
      vtv_format: '1',
      source: [opts.mae, opts.vqgan]
        .filter(Boolean)
        .map((p) => basename(p as string))
        .join(' + '),
      dtype,
    };
    const writer = new SafetensorsWriter(opts.out, specs, metadata);
    try {
      const order = writer.keys();
      // One f32 and one bf16 buffer sized for the largest tensor, reused: memory stays flat.
      const largest = Math.max(0, ...[...wanted.values()].map((w) => w.shape.reduce((a, b) => a * b, 1)));
      const f32Buf = new Float32Array(largest);
      const bf16Buf = new Uint16Array(dtype === 'bf16' ? largest : 0);
      for (let i = 0; i < order.length; i++) {
        const k = order[i];
        const src = wanted.get(k)?.src as Source;
        const f32 = src.ckpt.readF32(src.ref, src.key, f32Buf);
        if (dtype === 'bf16') {
          const bf = bf16Buf.subarray(0, f32.length);
          f32ToBf16(f32, bf);
          writer.write(k, bf);
        } else writer.write(k, f32);
        opts.onProgress?.(i + 1, order.length, k);
        if (i % 16 === 15) await yieldToEventLoop();
      }
      writer.close();
    } catch (e) {
      writer.abort();
      throw e;
    }
    return {
      out: opts.out,
      keys: specs.size,
      bytes: statSync(opts.out).size,
      seconds: (performance.now() - t0) / 1000,
      config,
      dtype,
      encoder,
      warnings,
    };
  } finally {
    for (const c of opened) c.close();
  }
}
