/**
 * A safe reader of Python pickle streams (protocols 0–5, CPython's Lib/pickle.py opcode set) that interprets them as
 * **data only**. Nothing is ever imported or called: a `GLOBAL` / `STACK_GLOBAL` names a Python object, and the
 * reader only accepts names in an explicit table of data constructors (an `OrderedDict`, a tensor rebuild record, …)
 * that are re-implemented here in JS. Any other name is refused at the opcode that names it, before a `REDUCE` could
 * use it, with an error naming the global (`posix.system`, `builtins.eval`, a model class, …). `INST`/`OBJ` and
 * the extension registry (`EXT1/2/4`) are refused the same way; out-of-band buffers (protocol 5) are refused.
 *
 * Values: None → null, bool → boolean, int → number (bigint beyond 2^53), float → number, str → string,
 * bytes/bytearray → Uint8Array, list → Array, tuple → PyTuple, dict → PyDict (insertion-ordered Map), set → Set.
 * Unknown objects never appear: the only objects are what the allowed constructors return.
 *
 * Limits: every length is checked against the bytes left (a truncated stream is an error naming the byte offset), the
 * memo and the stack are bounded, and opcodes are validated (stack underflow, missing MARK, bad memo index).
 */

/** A Python tuple (kept distinct from a list). */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

/** A Python dict / OrderedDict: keys in insertion order. `attrs` holds instance state set by BUILD (`_metadata`). */
export class PyDict {
  readonly map = new Map<unknown, unknown>();
  attrs: Record<string, unknown> | null = null;
  constructor(readonly kind: 'dict' | 'OrderedDict' = 'dict') {}
}

/** An allowed global, as pushed by GLOBAL / STACK_GLOBAL. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly spec: GlobalSpec,
  ) {}
  get path(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A plain-data object of an allowed class (e.g. `argparse.Namespace`): its class path and its state (BUILD). */
export class PyObject {
  state: unknown = null;
  constructor(
    readonly cls: string,
    readonly args: unknown[],
  ) {}
}

/** How an allowed global behaves. Exactly the operations listed are possible; anything else is an error. */
export interface GlobalSpec {
  /** `REDUCE` with these positional args → value. */
  reduce?: (args: unknown[], at: string) => unknown;
  /** `NEWOBJ` (cls.__new__(cls, *args)) → value. */
  newobj?: (args: unknown[], at: string) => unknown;
  /** `BUILD` on an object this global made (default: refused unless the object is a PyObject / PyDict). */
  build?: (obj: unknown, state: unknown, at: string) => unknown;
  /** The global used as a plain value (e.g. a dtype or storage type), when not called. */
  value?: unknown;
}

export interface PickleOptions {
  /** Allowed globals by `module.name` (after Python-2 name mapping). */
  globals: Readonly<Record<string, GlobalSpec>>;
  /** `persistent_load(pid)`: torch stores tensors' storages this way. Without it, persistent ids are refused. */
  persistentLoad?: (pid: unknown, at: string) => unknown;
  /** Names the stream in errors (file and entry). */
  source?: string;
  /** Start offset in the buffer (the legacy torch format has several pickles back to back). */
  offset?: number;
  /** Hint appended to the refusal of an unknown global (e.g. how to allow inert classes), given its path. */
  refuseHint?: (path: string) => string;
}

/** Result of one pickle: its value and the offset just after its STOP. */
export interface Unpickled {
  value: unknown;
  end: number;
}

/** Python 2 names, as protocol-0–2 pickles written by Python 3 (`fix_imports`) or Python 2 spell them. */
const MODULE_MAP: Record<string, string> = { __builtin__: 'builtins', copy_reg: 'copyreg', _abcoll: 'collections.abc' };

const MAX_MEMO = 50_000_000;
const MAX_STACK = 10_000_000;

/** Data constructors that are always allowed: containers and bytes helpers only. */
export const BASE_GLOBALS: Readonly<Record<string, GlobalSpec>> = Object.freeze({
  'collections.OrderedDict': {
    reduce: (args: unknown[], at: string) => {
      const d = new PyDict('OrderedDict');
      if (args.length > 0 && args[0] !== null) {
        const items = args[0] instanceof PyTuple ? args[0].items : args[0];
        if (!Array.isArray(items)) throw new Error(`${at}: OrderedDict(...) argument is not a list of pairs`);
        for (const kv of items) {
          const pair = kv instanceof PyTuple ? kv.items : kv;
          if (!Array.isArray(pair) || pair.length !== 2) throw new Error(`${at}: OrderedDict(...) item is not a pair`);
          d.map.set(keyOf(pair[0], at), pair[1]);
        }
      }
      return d;
    },
    build: (obj: unknown, state: unknown, at: string) => setAttrs(obj, state, at),
  },
  'builtins.set': { reduce: (args: unknown[]) => new Set(Array.isArray(args[0]) ? args[0] : args[0] instanceof PyTuple ? args[0].items : []) },
  'builtins.frozenset': { reduce: (args: unknown[]) => new Set(Array.isArray(args[0]) ? args[0] : args[0] instanceof PyTuple ? args[0].items : []) },
  'builtins.bytearray': {
    reduce: (args: unknown[], at: string) => {
      if (args.length === 0) return new Uint8Array(0);
      if (args[0] instanceof Uint8Array) return args[0];
      if (typeof args[0] === 'string' && args[1] === 'latin-1') return latin1(args[0]);
      throw new Error(`${at}: bytearray(...) with unsupported arguments`);
    },
  },
  // Python 3 bytes in protocol ≤ 2 pickles: _codecs.encode(str, 'latin1')
  '_codecs.encode': {
    reduce: (args: unknown[], at: string) => {
      const [s, enc] = args;
      if (typeof s !== 'string') throw new Error(`${at}: _codecs.encode(...) of a non-string`);
      if (enc === 'latin1' || enc === 'latin-1' || enc === 'iso-8859-1') return latin1(s);
      if (enc === undefined || enc === 'utf-8' || enc === 'utf8') return new Uint8Array(Buffer.from(s, 'utf8'));
      throw new Error(`${at}: _codecs.encode(...) with encoding ${String(enc)}`);
    },
  },
});

function latin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

function keyOf(k: unknown, at: string): unknown {
  if (k === null || ['string', 'number', 'bigint', 'boolean'].includes(typeof k)) return k;
  if (k instanceof PyTuple) return k; // tuples compare by identity only
  throw new Error(`${at}: unhashable dict key of type ${pyTypeName(k)}`);
}

function setAttrs(obj: unknown, state: unknown, at: string): unknown {
  if (!(obj instanceof PyDict)) throw new Error(`${at}: BUILD on ${pyTypeName(obj)}`);
  // (dict_state, slots_state) or dict_state
  const parts = state instanceof PyTuple ? state.items : [state];
  for (const p of parts) {
    if (p === null) continue;
    if (!(p instanceof PyDict)) throw new Error(`${at}: BUILD state of an OrderedDict is ${pyTypeName(p)}`);
    obj.attrs = obj.attrs ?? {};
    for (const [k, v] of p.map) obj.attrs[String(k)] = v;
  }
  return obj;
}

/** A short type description for errors. */
export function pyTypeName(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof PyGlobal) return `global ${v.path}`;
  if (v instanceof PyTuple) return `tuple(${v.items.length})`;
  if (v instanceof PyDict) return v.kind;
  if (v instanceof PyObject) return `object ${v.cls}`;
  if (v instanceof Uint8Array) return `bytes(${v.length})`;
  if (Array.isArray(v)) return `list(${v.length})`;
  if (v instanceof Set) return 'set';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

const MARK = Symbol('mark');

/**
 * Interpret one pickle stream in `buf` from `opts.offset` to its STOP opcode.
 * @throws naming the source, the byte offset and the opcode on anything refused or malformed.
 */
export function unpickle(buf: Uint8Array, opts: PickleOptions): Unpickled {
  const src = opts.source ?? '<pickle>';
  const data = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = opts.offset ?? 0;
  const stack: unknown[] = [];
  const marks: number[] = [];
  // BUILD dispatch: which allowed global produced an object
  const builtBy = new WeakMap<object, PyGlobal>();
  const made = (v: unknown, g: PyGlobal): unknown => {
    if (v !== null && typeof v === 'object') builtBy.set(v as object, g);
    return v;
  };
  const memo = new Map<number, unknown>();
  let opAt = pos;
  const where = (): string => `${src}: pickle byte ${opAt}`;
  const need = (n: number): void => {
    if (n < 0 || pos + n > data.length) throw new Error(`${where()}: needs ${n} more bytes but the stream ends at ${data.length} (truncated)`);
  };
  const readLine = (): string => {
    const nl = data.indexOf(0x0a, pos);
    if (nl < 0) throw new Error(`${where()}: unterminated line (truncated)`);
    const s = data.toString('latin1', pos, nl);
    pos = nl + 1;
    return s;
  };
  const push = (v: unknown): void => {
    if (stack.length >= MAX_STACK) throw new Error(`${where()}: stack grows past ${MAX_STACK} items`);
    stack.push(v);
  };
  const pop = (): unknown => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) throw new Error(`${where()}: stack underflow`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) throw new Error(`${where()}: stack underflow`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    if (!marks.length) throw new Error(`${where()}: no MARK on the stack`);
    const m = marks.pop()!;
    return stack.splice(m);
  };
  const resolve = (modIn: string, name: string): PyGlobal => {
    const module = MODULE_MAP[modIn] ?? modIn;
    const path = `${module}.${name}`;
    const spec = Object.prototype.hasOwnProperty.call(opts.globals, path) ? opts.globals[path] : undefined;
    if (!spec) {
      throw new Error(
        `${where()}: refused global '${path}' — loading never runs code, and '${path}' is not a data type this reader knows` +
          (opts.refuseHint ? ` (${opts.refuseHint(path)})` : ''),
      );
    }
    return new PyGlobal(module, name, spec);
  };
  const setMemo = (i: number, v: unknown): void => {
    if (memo.size >= MAX_MEMO && !memo.has(i)) throw new Error(`${where()}: memo grows past ${MAX_MEMO} entries`);
    memo.set(i, v);
  };
  const getMemo = (i: number): unknown => {
    if (!memo.has(i)) throw new Error(`${where()}: memo index ${i} was never stored`);
    return memo.get(i);
  };
  const str = (n: number, enc: 'utf8' | 'latin1'): string => {
    need(n);
    const s = data.toString(enc, pos, pos + n);
    pos += n;
    return s;
  };
  const bytes = (n: number): Uint8Array => {
    need(n);
    const b = new Uint8Array(data.subarray(pos, pos + n)); // copy: the stream buffer may be reused
    pos += n;
    return b;
  };
  const u64len = (): number => {
    need(8);
    const v = data.readBigUInt64LE(pos);
    pos += 8;
    if (v > BigInt(data.length)) throw new Error(`${where()}: length ${v} exceeds the stream (truncated)`);
    return Number(v);
  };
  const callable = (fn: unknown, what: string): PyGlobal => {
    if (!(fn instanceof PyGlobal)) throw new Error(`${where()}: ${what} on ${pyTypeName(fn)} (only allowed globals can be called)`);
    return fn;
  };
  const argsOf = (a: unknown, what: string): unknown[] => {
    if (a instanceof PyTuple) return a.items;
    throw new Error(`${where()}: ${what} arguments are ${pyTypeName(a)}, not a tuple`);
  };
  const decodeLong = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const parseInt0 = (s: string): number | bigint | boolean => {
    const t = s.trim().replace(/L$/, '');
    if (t === '00' && s.startsWith('0')) return false;
    if (t === '01' && s.startsWith('0')) return true;
    if (!/^[-+]?\d+$/.test(t)) throw new Error(`${where()}: bad integer literal '${s}'`);
    const b = BigInt(t);
    return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
  };
  const quoted = (s: string): string => {
    const m = /^(['"])(.*)\1$/s.exec(s.trim());
    if (!m) throw new Error(`${where()}: bad string literal`);
    return m[2].replace(/\\x([0-9a-fA-F]{2})|\\(['"\\nrt])/g, (_x, hex: string | undefined, c: string | undefined) =>
      hex ? String.fromCharCode(parseInt(hex, 16)) : ({ n: '\n', r: '\r', t: '\t' } as Record<string, string>)[c!] ?? c!,
    );
  };

  for (;;) {
    opAt = pos;
    need(1);
    const op = data[pos++];
    switch (op) {
      case 0x80: // PROTO
        need(1);
        if (data[pos] > 5) throw new Error(`${where()}: unsupported pickle protocol ${data[pos]}`);
        pos += 1;
        break;
      case 0x95: // FRAME
        need(8);
        pos += 8;
        break;
      case 0x2e: // STOP
        if (stack.length !== 1 || marks.length) throw new Error(`${where()}: STOP with ${stack.length} values on the stack`);
        return { value: stack[0], end: pos };
      // ---- constants and numbers
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x4a: need(4); push(data.readInt32LE(pos)); pos += 4; break; // BININT
      case 0x4b: need(1); push(data[pos]); pos += 1; break; // BININT1
      case 0x4d: need(2); push(data.readUInt16LE(pos)); pos += 2; break; // BININT2
      case 0x8a: { need(1); const n = data[pos]; pos += 1; push(decodeLong(bytes(n))); break; } // LONG1
      case 0x8b: { need(4); const n = data.readInt32LE(pos); pos += 4; if (n < 0) throw new Error(`${where()}: negative LONG4 length`); push(decodeLong(bytes(n))); break; } // LONG4
      case 0x49: push(parseInt0(readLine())); break; // INT
      case 0x4c: push(parseInt0(readLine())); break; // LONG
      case 0x47: need(8); push(data.readDoubleBE(pos)); pos += 8; break; // BINFLOAT
      case 0x46: { const s = readLine(); const f = Number(s); if (Number.isNaN(f) && !/nan/i.test(s)) throw new Error(`${where()}: bad float literal '${s}'`); push(f); break; } // FLOAT
      // ---- strings and bytes
      case 0x58: { need(4); const n = data.readUInt32LE(pos); pos += 4; push(str(n, 'utf8')); break; } // BINUNICODE
      case 0x8c: { need(1); const n = data[pos]; pos += 1; push(str(n, 'utf8')); break; } // SHORT_BINUNICODE
      case 0x8d: push(str(u64len(), 'utf8')); break; // BINUNICODE8
      case 0x56: push(readLine().replace(/\\u([0-9a-fA-F]{4})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)))); break; // UNICODE
      case 0x54: { need(4); const n = data.readInt32LE(pos); pos += 4; if (n < 0) throw new Error(`${where()}: negative BINSTRING length`); push(str(n, 'latin1')); break; } // BINSTRING
      case 0x55: { need(1); const n = data[pos]; pos += 1; push(str(n, 'latin1')); break; } // SHORT_BINSTRING
      case 0x53: push(quoted(readLine())); break; // STRING
      case 0x42: { need(4); const n = data.readUInt32LE(pos); pos += 4; push(bytes(n)); break; } // BINBYTES
      case 0x43: { need(1); const n = data[pos]; pos += 1; push(bytes(n)); break; } // SHORT_BINBYTES
      case 0x8e: push(bytes(u64len())); break; // BINBYTES8
      case 0x96: push(bytes(u64len())); break; // BYTEARRAY8
      case 0x97: // NEXT_BUFFER
      case 0x98: // READONLY_BUFFER
        throw new Error(`${where()}: out-of-band buffers (pickle protocol 5) are not supported`);
      // ---- containers
      case 0x29: push(new PyTuple([])); break; // EMPTY_TUPLE
      case 0x5d: push([]); break; // EMPTY_LIST
      case 0x7d: push(new PyDict()); break; // EMPTY_DICT
      case 0x8f: push(new Set()); break; // EMPTY_SET
      case 0x28: marks.push(stack.length); break; // MARK
      case 0x74: push(new PyTuple(popMark())); break; // TUPLE
      case 0x85: push(new PyTuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); push(new PyTuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); push(new PyTuple([a, b, c])); break; } // TUPLE3
      case 0x6c: push(popMark()); break; // LIST
      case 0x64: { // DICT
        const items = popMark();
        if (items.length % 2) throw new Error(`${where()}: DICT with an odd number of items`);
        const d = new PyDict();
        for (let i = 0; i < items.length; i += 2) d.map.set(keyOf(items[i], where()), items[i + 1]);
        push(d);
        break;
      }
      case 0x91: push(new Set(popMark())); break; // FROZENSET
      case 0x61: { // APPEND
        const v = pop();
        const l = top();
        if (!Array.isArray(l)) throw new Error(`${where()}: APPEND to ${pyTypeName(l)}`);
        l.push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const l = top();
        if (!Array.isArray(l)) throw new Error(`${where()}: APPENDS to ${pyTypeName(l)}`);
        for (const v of items) l.push(v);
        break;
      }
      case 0x73: { // SETITEM
        const v = pop();
        const k = pop();
        const d = top();
        if (!(d instanceof PyDict)) throw new Error(`${where()}: SETITEM on ${pyTypeName(d)}`);
        d.map.set(keyOf(k, where()), v);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        const d = top();
        if (!(d instanceof PyDict)) throw new Error(`${where()}: SETITEMS on ${pyTypeName(d)}`);
        if (items.length % 2) throw new Error(`${where()}: SETITEMS with an odd number of items`);
        for (let i = 0; i < items.length; i += 2) d.map.set(keyOf(items[i], where()), items[i + 1]);
        break;
      }
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) throw new Error(`${where()}: ADDITEMS on ${pyTypeName(s)}`);
        for (const v of items) s.add(v);
        break;
      }
      // ---- stack and memo
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP
      case 0x71: { need(1); const i = data[pos]; pos += 1; setMemo(i, top()); break; } // BINPUT
      case 0x72: { need(4); const i = data.readUInt32LE(pos); pos += 4; setMemo(i, top()); break; } // LONG_BINPUT
      case 0x70: { const i = Number(readLine()); if (!Number.isInteger(i)) throw new Error(`${where()}: bad PUT index`); setMemo(i, top()); break; } // PUT
      case 0x94: setMemo(memo.size, top()); break; // MEMOIZE
      case 0x68: { need(1); const i = data[pos]; pos += 1; push(getMemo(i)); break; } // BINGET
      case 0x6a: { need(4); const i = data.readUInt32LE(pos); pos += 4; push(getMemo(i)); break; } // LONG_BINGET
      case 0x67: { const i = Number(readLine()); if (!Number.isInteger(i)) throw new Error(`${where()}: bad GET index`); push(getMemo(i)); break; } // GET
      // ---- globals and calls (the only places code could run; here they map to the allowed table)
      case 0x63: { // GLOBAL
        const module = readLine();
        const name = readLine();
        push(resolve(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw new Error(`${where()}: STACK_GLOBAL needs two strings`);
        push(resolve(module, name));
        break;
      }
      case 0x52: { // REDUCE
        const args = argsOf(pop(), 'REDUCE');
        const fn = callable(pop(), 'REDUCE');
        if (!fn.spec.reduce) throw new Error(`${where()}: '${fn.path}' cannot be called (REDUCE)`);
        push(made(fn.spec.reduce(args, `${where()} (${fn.path})`), fn));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = argsOf(pop(), 'NEWOBJ');
        const cls = callable(pop(), 'NEWOBJ');
        if (!cls.spec.newobj) throw new Error(`${where()}: '${cls.path}' cannot be instantiated (NEWOBJ)`);
        push(made(cls.spec.newobj(args, `${where()} (${cls.path})`), cls));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop();
        const args = argsOf(pop(), 'NEWOBJ_EX');
        const cls = callable(pop(), 'NEWOBJ_EX');
        if (!(kwargs instanceof PyDict) || kwargs.map.size) throw new Error(`${where()}: NEWOBJ_EX with keyword arguments on '${cls.path}'`);
        if (!cls.spec.newobj) throw new Error(`${where()}: '${cls.path}' cannot be instantiated (NEWOBJ_EX)`);
        push(made(cls.spec.newobj(args, `${where()} (${cls.path})`), cls));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        const owner = builtBy.get(obj as object);
        if (owner?.spec.build) {
          stack[stack.length - 1] = owner.spec.build(obj, state, `${where()} (${owner.path})`);
        } else if (obj instanceof PyObject) {
          obj.state = state;
        } else if (obj instanceof PyDict) {
          setAttrs(obj, state, where());
        } else {
          throw new Error(`${where()}: BUILD on ${pyTypeName(obj)} is not allowed`);
        }
        break;
      }
      case 0x69: { // INST
        const module = readLine();
        const name = readLine();
        throw new Error(`${where()}: refused INST of '${MODULE_MAP[module] ?? module}.${name}' — loading never runs code`);
      }
      case 0x6f: { // OBJ
        const items = popMark();
        throw new Error(`${where()}: refused OBJ of ${items.length ? pyTypeName(items[0]) : 'nothing'} — loading never runs code`);
      }
      case 0x82: // EXT1
      case 0x83: // EXT2
      case 0x84: // EXT4
        throw new Error(`${where()}: refused extension-registry global (EXT opcode) — loading never runs code`);
      case 0x51: { // BINPERSID
        const pid = pop();
        if (!opts.persistentLoad) throw new Error(`${where()}: persistent id without a persistent_load`);
        push(opts.persistentLoad(pid, where()));
        break;
      }
      case 0x50: { // PERSID
        const pid = readLine();
        if (!opts.persistentLoad) throw new Error(`${where()}: persistent id without a persistent_load`);
        push(opts.persistentLoad(pid, where()));
        break;
      }
      default:
        throw new Error(`${where()}: unknown pickle opcode 0x${op.toString(16).padStart(2, '0')} (not a pickle, or a damaged one)`);
    }
  }
}
