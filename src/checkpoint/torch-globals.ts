// The globals a torch checkpoint may name, and what reading one does. Nothing here imports or runs
// Python: every global resolves to one of
//   1. a TypeScript implementation (SafeCallable) for the constructors a state dict is made of:
//      collections.OrderedDict, torch._utils._rebuild_tensor(_v2), _rebuild_parameter(_with_state),
//      torch._tensor._rebuild_from_type_v2, the torch.*Storage types, torch dtypes, _codecs.encode
//      (protocol-2 bytes), builtins set/frozenset/bytearray, torch.Size;
//   2. a known inert class (argparse.Namespace, pathlib paths, numpy scalars/arrays/dtypes, torch.device,
//      copyreg._reconstructor ...): calling it records its arguments in an InertObject;
//   3. an unknown global (any other module.name): also an InertObject, but marked unknown;
//   4. a refused global: anything from a module that can run code (os, subprocess, builtins other than
//      the plain containers, importlib, pickle, ...) makes the whole file unreadable, wherever it sits.
// Inert objects are harmless to hold but are never acceptable where weights are needed: the converter
// refuses a state dict that contains one (see findInert), naming its class.

import { STORAGE_DTYPES, TORCH_DTYPE_NAMES, type TorchDType } from './dtype.js';
import { InertObject, PickleError, PickleGlobal, SafeCallable } from './pickle.js';

export class UnsafePickleError extends PickleError {}

/** A storage type global (torch.FloatStorage ...): identifies the element type of a persistent storage. */
export class StorageType {
  constructor(
    readonly name: string,
    readonly dtype: TorchDType,
  ) {}
}

/** A torch dtype global (torch.float32 ...). */
export class TorchDTypeValue {
  constructor(
    readonly name: string,
    readonly dtype: TorchDType,
  ) {}
}

/** A storage in the archive: `data/<key>` holding `dtype` elements. */
export interface StorageRef {
  key: string;
  dtype: TorchDType;
  location: string;
}

/** A tensor described by the pickle: a strided view of `offset`.. elements of a storage. */
export class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: number[],
    readonly stride: number[],
  ) {}
  get numel(): number {
    return this.size.reduce((a, b) => a * b, 1);
  }
}

const KNOWN_INERT = new Set([
  'argparse.Namespace',
  'pathlib.Path',
  'pathlib.PosixPath',
  'pathlib.WindowsPath',
  'pathlib.PurePath',
  'pathlib.PurePosixPath',
  'pathlib.PureWindowsPath',
  'numpy.core.multiarray.scalar',
  'numpy._core.multiarray.scalar',
  'numpy.core.multiarray._reconstruct',
  'numpy._core.multiarray._reconstruct',
  'numpy.dtype',
  'numpy.ndarray',
  'numpy.dtypes.Float64DType',
  'numpy.dtypes.Float32DType',
  'numpy.dtypes.Int64DType',
  'torch.device',
  'copyreg._reconstructor',
  'builtins.object',
  'builtins.slice',
  'builtins.complex',
  'datetime.datetime',
  'datetime.date',
  'datetime.timedelta',
  'datetime.timezone',
  'decimal.Decimal',
]);

/** Modules whose globals can run code or touch the system: a file naming any of them is refused. */
const REFUSED_MODULES = new Set([
  'os',
  'posix',
  'nt',
  'posixpath',
  'ntpath',
  'subprocess',
  'sys',
  'builtins',
  '__builtin__',
  'shutil',
  'socket',
  'importlib',
  'runpy',
  'pickle',
  '_pickle',
  'marshal',
  'types',
  'code',
  'codeop',
  'ctypes',
  'pty',
  'webbrowser',
  'functools',
  'operator',
  'multiprocessing',
  'threading',
  'signal',
  'io',
  'tempfile',
  'commands',
  'platform',
  'asyncio',
  'urllib',
  'http',
  'requests',
  'pdb',
  'timeit',
  'inspect',
  'gc',
]);
const PY2_MODULES: Record<string, string> = { __builtin__: 'builtins', copy_reg: 'copyreg', commands: 'subprocess', cPickle: 'pickle' };
const SAFE_BUILTINS = new Set(['set', 'frozenset', 'bytes', 'bytearray', 'slice', 'complex', 'object']);

function int(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new PickleError(`${what} is not an integer (${String(v)})`);
  return v;
}
function ints(v: unknown, what: string): number[] {
  if (!Array.isArray(v)) throw new PickleError(`${what} is not a tuple`);
  return v.map((x, i) => int(x, `${what}[${i}]`));
}

function rebuildTensor(args: unknown[]): TensorRef {
  const [storage, offset, size, stride] = args;
  if (!storage || typeof storage !== 'object' || !('key' in storage) || !('dtype' in storage)) {
    throw new PickleError('_rebuild_tensor: first argument is not a persistent storage');
  }
  const sz = ints(size, 'tensor size');
  const st = ints(stride, 'tensor stride');
  if (sz.length !== st.length) throw new PickleError(`tensor size ${JSON.stringify(sz)} and stride ${JSON.stringify(st)} differ in rank`);
  if (sz.some((d) => d < 0) || st.some((s) => s < 0)) throw new PickleError('negative tensor size or stride');
  return new TensorRef(storage as StorageRef, int(offset, 'storage offset'), sz, st);
}

function orderedDict(args: unknown[]): Map<unknown, unknown> {
  const m = new Map<unknown, unknown>();
  const pairs = args[0];
  if (Array.isArray(pairs)) for (const p of pairs) if (Array.isArray(p) && p.length === 2) m.set(p[0], p[1]);
  // An OrderedDict's BUILD state (a state dict's `_metadata`) lands in pickle.ts's pickleState map.
  return m;
}

const SAFE: Record<string, SafeCallable> = {};
const safe = (name: string, call: (args: unknown[]) => unknown) => {
  SAFE[name] = new SafeCallable(name, call);
};
safe('collections.OrderedDict', orderedDict);
safe('torch._utils._rebuild_tensor', rebuildTensor);
safe('torch._utils._rebuild_tensor_v2', rebuildTensor);
safe('torch._utils._rebuild_parameter', (a) => a[0]);
safe('torch._utils._rebuild_parameter_with_state', (a) => a[0]);
safe('torch._tensor._rebuild_from_type_v2', (a) => {
  const [fn, , args] = a;
  if (!(fn instanceof SafeCallable) || !Array.isArray(args)) throw new PickleError('_rebuild_from_type_v2 with an unsupported rebuild function');
  return fn.call(args);
});
safe('torch.Size', (a) => (Array.isArray(a[0]) ? [...a[0]] : []));
safe('_codecs.encode', (a) => {
  if (typeof a[0] !== 'string') throw new PickleError('_codecs.encode of a non-string');
  const enc = String(a[1] ?? 'utf-8').toLowerCase();
  return Buffer.from(a[0], enc === 'latin1' || enc === 'latin-1' ? 'latin1' : 'utf8');
});
safe('builtins.set', (a) => new Set(Array.isArray(a[0]) ? a[0] : []));
safe('builtins.frozenset', (a) => new Set(Array.isArray(a[0]) ? a[0] : []));
safe('builtins.bytes', (a) =>
  a.length === 0
    ? Buffer.alloc(0)
    : Buffer.isBuffer(a[0])
      ? Buffer.from(a[0])
      : (() => {
          throw new PickleError('builtins.bytes with unsupported arguments');
        })(),
);
safe('builtins.bytearray', (a) => (Buffer.isBuffer(a[0]) ? Buffer.from(a[0]) : Buffer.alloc(0)));

/** Resolves one GLOBAL of a torch checkpoint pickle (see the file comment for the four outcomes). */
export function resolveTorchGlobal(pickledModule: string, name: string, source: string): unknown {
  // Protocols 0-2 name Python 3 modules by their Python 2 names (pickle's fix_imports).
  const module = PY2_MODULES[pickledModule] ?? pickledModule;
  const q = `${module}.${name}`;
  const safeOne = SAFE[q];
  if (safeOne) return safeOne;
  if (module === 'torch' && STORAGE_DTYPES[name]) return new StorageType(name, STORAGE_DTYPES[name]);
  if (module === 'torch' && TORCH_DTYPE_NAMES[name]) return new TorchDTypeValue(name, TORCH_DTYPE_NAMES[name]);
  if (KNOWN_INERT.has(q)) return new SafeCallable(q, (args) => new InertObject(q, args, true));
  const top = module.split('.')[0];
  if (REFUSED_MODULES.has(top) && !(top === 'builtins' && SAFE_BUILTINS.has(name) && !module.includes('.'))) {
    throw new UnsafePickleError(
      `${source}: refused: the pickle names the global '${q}', which could run code; this converter never executes pickle code and only reads plain tensor data`,
    );
  }
  return new PickleGlobal(module, name);
}

/** Paths of every inert (unimplemented-class) object inside `v`, e.g. [{path: "model.foo", cls: "a.B"}]. */
export function findInert(
  v: unknown,
  path: string,
  out: Array<{ path: string; cls: string }> = [],
  seen = new Set<unknown>(),
): Array<{ path: string; cls: string }> {
  if (v === null || typeof v !== 'object' || seen.has(v)) return out;
  seen.add(v);
  if (v instanceof InertObject) out.push({ path, cls: v.cls });
  else if (v instanceof PickleGlobal) out.push({ path, cls: v.qualifiedName });
  else if (v instanceof Map) for (const [k, x] of v) findInert(x, `${path}.${String(k)}`, out, seen);
  else if (Array.isArray(v)) for (let i = 0; i < v.length; i++) findInert(v[i], `${path}[${i}]`, out, seen);
  return out;
}
