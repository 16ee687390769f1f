/**
 * A small validator for plain-data configurations (recipe files): each check takes a value and the key path it sits
 * at, returns the value typed (defaults filled in), and throws a `RecipeError` that names the path, what was expected
 * and what came:
 *
 *   recipe.optimizer.betas[1]: expected a number in [0, 1), got "0.9"
 *   recipe.adapters.rnak: unknown key; valid keys: kind, notation, overrides
 *
 * `obj<T>({...})` must list a check for every key of `T` (a missing one is a compile error), so a schema cannot drift
 * from the interface it validates. `tagged('kind', {...})` checks discriminated unions by their tag.
 */

/** A validation error naming the key path. */
export class RecipeError extends Error {
  constructor(
    readonly path: string,
    readonly problem: string,
  ) {
    super(`${path}: ${problem}`);
    this.name = 'RecipeError';
  }
}

/** Validates `v` found at `path`; returns it typed (defaults filled in) or throws a `RecipeError`. */
export type Check<T> = (v: unknown, path: string) => T;

/** A field that may be absent (then `dflt`, copied, is used). */
export interface Optional<T> {
  readonly optional: true;
  readonly check: Check<T>;
  readonly dflt: T;
}

export type Field<T> = Check<T> | Optional<T>;

/** JSON rendering of a received value for messages (strings quoted, long values cut). */
export function shown(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'number' && !Number.isFinite(v)) return String(v);
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'bigint') return `${v}n`;
  let s: string;
  try {
    s = JSON.stringify(v);
  } catch {
    s = String(v);
  }
  if (s === undefined) s = String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

function fail(path: string, problem: string): never {
  throw new RecipeError(path, problem);
}

export interface NumberRule {
  /** Inclusive lower bound. */
  min?: number;
  /** Inclusive upper bound. */
  max?: number;
  /** Exclusive lower bound. */
  gt?: number;
  /** Exclusive upper bound. */
  lt?: number;
  int?: boolean;
}

/** The expected-value text of a number rule: `a number in [0, 1)`, `an integer ≥ 1`, `a number > 0`. */
export function numberText(r: NumberRule): string {
  const what = r.int ? 'an integer' : 'a number';
  const lo = r.min !== undefined ? { v: r.min, open: false } : r.gt !== undefined ? { v: r.gt, open: true } : null;
  const hi = r.max !== undefined ? { v: r.max, open: false } : r.lt !== undefined ? { v: r.lt, open: true } : null;
  if (lo && hi) return `${what} in ${lo.open ? '(' : '['}${lo.v}, ${hi.v}${hi.open ? ')' : ']'}`;
  if (lo) return `${what} ${lo.open ? '>' : '≥'} ${lo.v}`;
  if (hi) return `${what} ${hi.open ? '<' : '≤'} ${hi.v}`;
  return what;
}

/** A finite number (optionally an integer) within bounds. */
export function num(r: NumberRule = {}): Check<number> {
  return (v, path) => {
    const ok =
      typeof v === 'number' &&
      Number.isFinite(v) &&
      (!r.int || Number.isInteger(v)) &&
      (r.min === undefined || v >= r.min) &&
      (r.max === undefined || v <= r.max) &&
      (r.gt === undefined || v > r.gt) &&
      (r.lt === undefined || v < r.lt);
    if (!ok) fail(path, `expected ${numberText(r)}, got ${shown(v)}`);
    return v as number;
  };
}

/** An integer (shorthand for `num({int: true, ...})`). */
export function int(r: Omit<NumberRule, 'int'> = {}): Check<number> {
  return num({ ...r, int: true });
}

/** A string, optionally matching a pattern (`what` describes it in the message). */
export function str(o: { pattern?: RegExp; what?: string; nonEmpty?: boolean } = {}): Check<string> {
  return (v, path) => {
    if (typeof v !== 'string') fail(path, `expected ${o.what ?? 'a string'}, got ${shown(v)}`);
    if (o.nonEmpty && v === '') fail(path, `expected ${o.what ?? 'a non-empty string'}, got ""`);
    if (o.pattern && !o.pattern.test(v)) fail(path, `expected ${o.what ?? `a string matching ${o.pattern}`}, got ${shown(v)}`);
    return v;
  };
}

export const bool: Check<boolean> = (v, path) => {
  if (typeof v !== 'boolean') fail(path, `expected true or false, got ${shown(v)}`);
  return v;
};

/** One of the given literal values. */
export function oneOf<const T extends string | number | boolean>(values: readonly T[]): Check<T> {
  return (v, path) => {
    if (!values.includes(v as T)) fail(path, `expected one of ${values.map((x) => shown(x)).join(', ')}, got ${shown(v)}`);
    return v as T;
  };
}

/** An array of items (`[i]` in the path), optionally of a given length range. */
export function arr<T>(item: Check<T>, o: { min?: number; max?: number } = {}): Check<T[]> {
  return (v, path) => {
    if (!Array.isArray(v)) fail(path, `expected an array, got ${shown(v)}`);
    if (o.min !== undefined && v.length < o.min) fail(path, `expected at least ${o.min} item(s), got ${v.length}`);
    if (o.max !== undefined && v.length > o.max) fail(path, `expected at most ${o.max} item(s), got ${v.length}`);
    return v.map((x, i) => item(x, `${path}[${i}]`));
  };
}

/** A fixed-length array with a check per position. */
export function tuple<A, B>(a: Check<A>, b: Check<B>): Check<[A, B]> {
  return (v, path) => {
    if (!Array.isArray(v) || v.length !== 2) fail(path, `expected an array of 2 items, got ${shown(v)}`);
    return [a(v[0], `${path}[0]`), b(v[1], `${path}[1]`)];
  };
}

/** `null` or a value. */
export function nullable<T>(c: Check<T>): Check<T | null> {
  return (v, path) => (v === null ? null : c(v, path));
}

/** The first check that accepts the value; the message lists what each expected. */
export function either<A, B>(a: Check<A>, b: Check<B>, what: string): Check<A | B> {
  return (v, path) => {
    try {
      return a(v, path);
    } catch (ea) {
      if (!(ea instanceof RecipeError)) throw ea;
      try {
        return b(v, path);
      } catch (eb) {
        if (!(eb instanceof RecipeError)) throw eb;
        // Prefer the error from inside an object of the right shape over "expected X, got an object".
        const deeper = [ea, eb].find((e) => e.path !== path);
        if (deeper) throw deeper;
        fail(path, `expected ${what}, got ${shown(v)}`);
      }
    }
  };
}

/** A plain object (not an array, not null, not a class instance). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

/** A string-keyed record of values of one kind (keys optionally restricted by a pattern). */
export function record<T>(val: Check<T>, o: { key?: RegExp; what?: string } = {}): Check<Record<string, T>> {
  return (v, path) => {
    if (!isPlainObject(v)) fail(path, `expected an object${o.what ? ` (${o.what})` : ''}, got ${shown(v)}`);
    const out: Record<string, T> = {};
    for (const [k, x] of Object.entries(v)) {
      if (o.key && !o.key.test(k)) fail(`${path}.${k}`, `key does not match ${o.key}`);
      out[k] = val(x, `${path}.${k}`);
    }
    return out;
  };
}

/** A field that may be left out (then `dflt`). */
export function opt<T>(check: Check<T>, dflt: T): Optional<T> {
  return { optional: true, check, dflt };
}

function isOptional<T>(f: Field<T>): f is Optional<T> {
  return typeof f === 'object' && f !== null && (f as Optional<T>).optional === true;
}

/** Deep copy of plain data (defaults are copied so a resolved object never shares them). */
function copy<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

/** Fields of an object type: a check for every key (required keys use `Check`, optional ones `opt`). */
export type Fields<T> = { [K in keyof T]-?: Field<T[K]> };

/**
 * An object with exactly these keys: unknown keys are errors (listing the valid ones), missing required keys are
 * errors, absent optional keys take their default. The result has the keys in the schema's order.
 */
export function obj<T>(fields: Fields<T>): Check<T> {
  const keys = Object.keys(fields) as Array<keyof T & string>;
  return (v, path) => {
    if (!isPlainObject(v)) fail(path, `expected an object with keys ${keys.join(', ')}, got ${shown(v)}`);
    for (const k of Object.keys(v)) {
      if (!(k in fields)) fail(`${path}.${k}`, `unknown key; valid keys: ${keys.join(', ')}`);
    }
    const out = {} as T;
    for (const k of keys) {
      const f = fields[k] as Field<T[typeof k]>;
      const at = `${path}.${k}`;
      if (v[k] === undefined) {
        // an optional field whose default is `undefined` stays absent (a resolved object has no `k: undefined` keys)
        if (isOptional(f)) {
          if (f.dflt !== undefined) out[k] = copy(f.dflt);
        } else fail(at, 'missing (required)');
      } else {
        out[k] = isOptional(f) ? f.check(v[k], at) : f(v[k], at);
      }
    }
    return out;
  };
}

/**
 * A discriminated union on `tag`: the variant check of the value's tag (each variant check sees the whole object,
 * tag included).
 */
export function tagged<T extends Record<Tag, string>, Tag extends string = 'kind'>(
  tag: Tag,
  variants: { [K in T[Tag]]: Check<Extract<T, Record<Tag, K>>> },
): Check<T> {
  const names = Object.keys(variants);
  return (v, path) => {
    if (!isPlainObject(v)) fail(path, `expected an object with ${tag} ${names.map((n) => `'${n}'`).join(' | ')}, got ${shown(v)}`);
    const t = v[tag];
    if (typeof t !== 'string' || !Object.prototype.hasOwnProperty.call(variants, t)) {
      fail(`${path}.${tag}`, `expected one of ${names.map((n) => `'${n}'`).join(', ')}, got ${shown(t)}`);
    }
    return (variants as Record<string, Check<T>>)[t](v, path);
  };
}

/** Check a literal tag value inside a variant (`kind: lit('mae')`). */
export function lit<const T extends string>(value: T): Check<T> {
  return (v, path) => {
    if (v !== value) fail(path, `expected '${value}', got ${shown(v)}`);
    return value;
  };
}

/**
 * Run a check that throws plain `Error`s (a kit validator such as `vitConfig`) and report its message at `path`.
 */
export function delegate<T>(what: string, f: (v: unknown) => T): Check<T> {
  return (v, path) => {
    try {
      return f(v);
    } catch (e) {
      if (e instanceof RecipeError) throw e;
      fail(path, `${what}: ${(e as Error).message}`);
    }
  };
}
