// A pickle *reader* that never executes anything. Python's unpickler imports and calls whatever
// globals a file names; this one hands every GLOBAL to a caller-supplied resolver, which returns
// either a TypeScript implementation of a known-harmless constructor (SafeCallable), a marker for an
// unknown class (PickleGlobal: calling it only records the arguments in an InertObject), or throws to
// refuse the file. Values map to JS as: dict -> Map, list/tuple -> Array, str -> string,
// bytes -> Buffer, int -> number (bigint beyond 2^53), float -> number, None -> null, set -> Set.

import { InputError } from '../errors.js';

export class PickleError extends InputError {}

/** A global the resolver does not implement; calling it yields an InertObject. */
export class PickleGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** The would-be result of calling an unimplemented class: its name, arguments and state, as data. */
export class InertObject {
  state: unknown = undefined;
  readonly listItems: unknown[] = [];
  readonly dictItems: Array<[unknown, unknown]> = [];
  constructor(
    readonly cls: string,
    readonly args: unknown[],
    readonly known: boolean,
  ) {}
}

/** A resolver-provided implementation of a global: builds a JS value from the pickled arguments. */
export class SafeCallable {
  constructor(
    readonly qualifiedName: string,
    readonly call: (args: unknown[]) => unknown,
  ) {}
}

export interface UnpickleOptions {
  /** Maps (module, name) to a SafeCallable, a PickleGlobal (inert), or any constant; throws to refuse. */
  resolveGlobal(module: string, name: string): unknown;
  /** Resolves a persistent id (torch: the storage tuple); absent -> persistent ids are refused. */
  persistentLoad?(pid: unknown): unknown;
  /** A name for error messages (e.g. "ckpt.pth:archive/data.pkl"). */
  source?: string;
}

/** Object states set by BUILD on values that have no slot of their own (e.g. an OrderedDict's _metadata). */
export const pickleState = new WeakMap<object, unknown>();

const decoder = new TextDecoder('utf-8', { fatal: true });

/** Bounds on what a pickle may build: far beyond any checkpoint's, far below what would exhaust memory. */
export const PICKLE_LIMITS = {
  /** Values on the stack at once (MARK-separated groups included). */
  stack: 4_000_000,
  /** Open MARKs. */
  marks: 100_000,
  /** Memo entries. */
  memo: 4_000_000,
  /** Bytes of one integer (LONG1/LONG4, or digits of a text INT/LONG). */
  intBytes: 4096,
};

export function unpickle(data: Uint8Array, opts: UnpickleOptions): unknown {
  try {
    return unpickleUnbounded(data, opts);
  } catch (e) {
    // Whatever the bounds miss (a structure nested past the JS stack) is still the file's fault.
    if (e instanceof RangeError) throw new PickleError(`${opts.source ?? 'pickle'}: the pickle is too large or too deeply nested to read (${e.message})`);
    throw e;
  }
}

function unpickleUnbounded(data: Uint8Array, opts: UnpickleOptions): unknown {
  const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const src = opts.source ?? 'pickle';
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;

  const fail = (msg: string): never => {
    throw new PickleError(`${src}: ${msg} (at byte ${pos} of ${buf.length})`);
  };
  const push = (v: unknown) => {
    if (stack.length >= PICKLE_LIMITS.stack) fail(`more than ${PICKLE_LIMITS.stack} values on the stack`);
    stack.push(v);
  };
  const memoSet = (k: number, v: unknown) => {
    if (!Number.isSafeInteger(k) || k < 0) fail(`bad memo key ${k}`);
    if (memo.size >= PICKLE_LIMITS.memo && !memo.has(k)) fail(`more than ${PICKLE_LIMITS.memo} memo entries`);
    memo.set(k, v);
  };
  const need = (n: number) => {
    if (n < 0 || pos + n > buf.length) fail(`truncated pickle: needs ${n} more bytes`);
  };
  const u8 = () => {
    need(1);
    return buf[pos++];
  };
  const u16 = () => {
    need(2);
    const v = buf.readUInt16LE(pos);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = buf.readUInt32LE(pos);
    pos += 4;
    return v;
  };
  const i32 = () => {
    need(4);
    const v = buf.readInt32LE(pos);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = buf.readBigUInt64LE(pos);
    pos += 8;
    if (v > BigInt(buf.length)) fail(`length ${v} exceeds the pickle size`);
    return Number(v);
  };
  const bytes = (n: number) => {
    need(n);
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const utf8 = (n: number) => {
    const b = bytes(n);
    try {
      return decoder.decode(b);
    } catch {
      return fail('invalid UTF-8 in a string');
    }
  };
  const line = () => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail('truncated pickle: unterminated text line');
    const s = buf.toString('latin1', pos, end);
    pos = end + 1;
    return s;
  };
  const pop = () => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) fail('stack underflow');
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail('MARK expected');
    return stack.splice(m as number);
  };
  const memoGet = (i: number) => {
    if (!memo.has(i)) fail(`memo key ${i} is not defined`);
    return memo.get(i);
  };
  const signedLE = (b: Buffer): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const global = (module: string, name: string) => opts.resolveGlobal(module, name);
  const instantiate = (cls: unknown, args: unknown[]): unknown => {
    if (cls instanceof SafeCallable) return cls.call(args);
    if (cls instanceof PickleGlobal) return new InertObject(cls.qualifiedName, args, false);
    return fail(`cannot call a value of type ${describe(cls)}`);
  };
  const setItems = (target: unknown, kv: unknown[]) => {
    if (kv.length % 2) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < kv.length; i += 2) {
      if (target instanceof Map) target.set(hashable(kv[i]), kv[i + 1]);
      else if (target instanceof InertObject) target.dictItems.push([kv[i], kv[i + 1]]);
      else fail(`SETITEM on a ${describe(target)}`);
    }
  };
  const appendItems = (target: unknown, items: unknown[]) => {
    // One at a time: spreading 300k items into push() overflows the call stack.
    const into = Array.isArray(target) ? target : target instanceof InertObject ? target.listItems : fail(`APPEND on a ${describe(target)}`);
    for (const x of items) into.push(x);
  };
  const hashable = (k: unknown) => (Array.isArray(k) ? JSON.stringify(k, (_, v) => (typeof v === 'bigint' ? v.toString() : v)) : k);

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: {
        // PROTO
        const p = u8();
        if (p > 5) fail(`unsupported pickle protocol ${p}`);
        break;
      }
      case 0x95:
        u64();
        break; // FRAME: a framing hint, the content follows inline
      case 0x2e: {
        // STOP
        if (stack.length !== 1 || marks.length) fail(`STOP with ${stack.length} values on the stack`);
        return stack[0];
      }
      case 0x28:
        if (marks.length >= PICKLE_LIMITS.marks) fail(`more than ${PICKLE_LIMITS.marks} open MARKs`);
        marks.push(stack.length);
        break; // MARK
      case 0x30:
        pop();
        break; // POP
      case 0x31:
        popMark();
        break; // POP_MARK
      case 0x32:
        push(top());
        break; // DUP
      case 0x4e:
        push(null);
        break; // NONE
      case 0x88:
        push(true);
        break; // NEWTRUE
      case 0x89:
        push(false);
        break; // NEWFALSE
      case 0x4a:
        push(i32());
        break; // BININT
      case 0x4b:
        push(u8());
        break; // BININT1
      case 0x4d:
        push(u16());
        break; // BININT2
      case 0x8a:
        push(signedLE(bytes(u8())));
        break; // LONG1 (at most 255 bytes)
      case 0x8b: {
        // LONG4
        const n = i32();
        if (n < 0) fail('negative LONG4 length');
        if (n > PICKLE_LIMITS.intBytes) fail(`LONG4 of ${n} bytes (at most ${PICKLE_LIMITS.intBytes})`);
        push(signedLE(bytes(n)));
        break;
      }
      case 0x49: {
        // INT (text); "01"/"00" are protocol-0 booleans
        const s = line();
        if (s === '01' || s === '00') push(s === '01');
        else {
          if (!/^[-+]?\d+$/.test(s) || s.length > PICKLE_LIMITS.intBytes) fail(`bad INT literal '${s.slice(0, 40)}'`);
          const v = BigInt(s);
          push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        }
        break;
      }
      case 0x4c: {
        // LONG (text)
        const s = line().replace(/L$/, '');
        if (!/^[-+]?\d+$/.test(s) || s.length > PICKLE_LIMITS.intBytes) fail(`bad LONG literal '${s.slice(0, 40)}'`);
        const v = BigInt(s);
        push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: {
        need(8);
        push(buf.readDoubleBE(pos));
        pos += 8;
        break;
      } // BINFLOAT
      case 0x46: {
        // FLOAT (text)
        const s = line().trim();
        const v = s === 'inf' ? Infinity : s === '-inf' ? -Infinity : Number(s);
        if (Number.isNaN(v) && s !== 'nan') fail(`bad FLOAT literal '${s}'`);
        push(v);
        break;
      }
      case 0x58:
        push(utf8(u32()));
        break; // BINUNICODE
      case 0x8c:
        push(utf8(u8()));
        break; // SHORT_BINUNICODE
      case 0x8d:
        push(utf8(u64()));
        break; // BINUNICODE8
      case 0x56: {
        // UNICODE (raw-unicode-escape text)
        const s = line().replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a, b) => {
          const cp = parseInt(a ?? b, 16);
          if (cp > 0x10ffff) fail(`bad \\U escape \\U${b} in a UNICODE string: code point beyond U+10FFFF`);
          return String.fromCodePoint(cp);
        });
        push(s);
        break;
      }
      case 0x42:
        push(Buffer.from(bytes(u32())));
        break; // BINBYTES
      case 0x43:
        push(Buffer.from(bytes(u8())));
        break; // SHORT_BINBYTES
      case 0x8e:
        push(Buffer.from(bytes(u64())));
        break; // BINBYTES8
      case 0x96:
        push(Buffer.from(bytes(u64())));
        break; // BYTEARRAY8
      // Python 2 str: kept as a latin-1 JS string (torch never writes these in protocol 2+).
      case 0x54: {
        const n = i32();
        if (n < 0) fail('negative BINSTRING length');
        push(bytes(n).toString('latin1'));
        break;
      }
      case 0x55:
        push(bytes(u8()).toString('latin1'));
        break; // SHORT_BINSTRING
      case 0x53:
        fail('protocol-0 STRING opcode is not supported');
        break;
      case 0x7d:
        push(new Map());
        break; // EMPTY_DICT
      case 0x5d:
        push([]);
        break; // EMPTY_LIST
      case 0x29:
        push([]);
        break; // EMPTY_TUPLE
      case 0x8f:
        push(new Set());
        break; // EMPTY_SET
      case 0x85:
        push([pop()]);
        break; // TUPLE1
      case 0x86: {
        const b = pop();
        const a = pop();
        push([a, b]);
        break;
      } // TUPLE2
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        push([a, b, c]);
        break;
      } // TUPLE3
      case 0x74:
        push(popMark());
        break; // TUPLE
      case 0x6c:
        push(popMark());
        break; // LIST
      case 0x64: {
        const kv = popMark();
        const d = new Map();
        setItems(d, kv);
        push(d);
        break;
      } // DICT
      case 0x91:
        push(new Set(popMark()));
        break; // FROZENSET
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail(`ADDITEMS on a ${describe(s)}`);
        for (const x of items) (s as Set<unknown>).add(x);
        break;
      }
      case 0x61: {
        const v = pop();
        appendItems(top(), [v]);
        break;
      } // APPEND
      case 0x65: {
        const items = popMark();
        appendItems(top(), items);
        break;
      } // APPENDS
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      } // SETITEM
      case 0x75: {
        const kv = popMark();
        setItems(top(), kv);
        break;
      } // SETITEMS
      case 0x71:
        memoSet(u8(), top());
        break; // BINPUT
      case 0x72:
        memoSet(u32(), top());
        break; // LONG_BINPUT
      case 0x94:
        memoSet(memo.size, top());
        break; // MEMOIZE
      case 0x70:
        memoSet(Number(line()), top());
        break; // PUT
      case 0x68:
        push(memoGet(u8()));
        break; // BINGET
      case 0x6a:
        push(memoGet(u32()));
        break; // LONG_BINGET
      case 0x67:
        push(memoGet(Number(line())));
        break; // GET
      case 0x63: {
        const module = line();
        const name = line();
        push(global(module, name));
        break;
      } // GLOBAL
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        if (!Array.isArray(args)) fail(`REDUCE arguments are a ${describe(args)}, not a tuple`);
        push(instantiate(fn, args as unknown[]));
        break;
      }
      case 0x81: {
        // NEWOBJ: cls.__new__(cls, *args)
        const args = pop();
        const cls = pop();
        if (!Array.isArray(args)) fail('NEWOBJ arguments are not a tuple');
        push(instantiate(cls, args as unknown[]));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX: keyword arguments are appended as a Map
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        if (!Array.isArray(args)) fail('NEWOBJ_EX arguments are not a tuple');
        push(instantiate(cls, kwargs instanceof Map && kwargs.size ? [...(args as unknown[]), kwargs] : (args as unknown[])));
        break;
      }
      case 0x69: {
        // INST: module/name on text lines, arguments since MARK
        const module = line();
        const name = line();
        const args = popMark();
        push(instantiate(global(module, name), args));
        break;
      }
      case 0x6f: {
        // OBJ: class and arguments since MARK
        const items = popMark();
        if (items.length === 0) fail('OBJ without a class');
        push(instantiate(items[0], items.slice(1)));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof InertObject) obj.state = state;
        else if (obj !== null && typeof obj === 'object') {
          pickleState.set(obj, state);
        } else fail(`BUILD on a ${describe(obj)}`);
        break;
      }
      case 0x51: // BINPERSID
      case 0x50: {
        // PERSID (text)
        const pid = op === 0x51 ? pop() : line();
        const load = opts.persistentLoad;
        if (!load) return fail('persistent id without a loader');
        push(load(pid));
        break;
      }
      case 0x82:
      case 0x83:
      case 0x84:
        fail('extension-registry opcodes (EXT1/2/4) are not supported');
        break;
      case 0x97:
      case 0x98:
        fail('out-of-band buffers (protocol 5 NEXT_BUFFER/READONLY_BUFFER) are not supported');
        break;
      default:
        fail(`unknown opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }
}

export function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof InertObject) return `object of class ${v.cls}`;
  if (v instanceof PickleGlobal) return `global ${v.qualifiedName}`;
  if (v instanceof SafeCallable) return `global ${v.qualifiedName}`;
  if (Array.isArray(v)) return 'tuple/list';
  if (v instanceof Map) return 'dict';
  if (Buffer.isBuffer(v)) return 'bytes';
  if (typeof v === 'object') return v.constructor?.name ?? 'object';
  return typeof v;
}
