/**
 * Small runtime checks with error messages that name the thing, what was expected and what came.
 */

/**
 * Throw if `obj` has keys outside `valid`. `what` names the config in the message.
 * @example checkKeys('VitConfig', {embedDm: 3}, ['embedDim']) // Error: VitConfig: unknown key 'embedDm'; valid keys: embedDim
 */
export function checkKeys(what: string, obj: object, valid: readonly string[]): void {
  const bad = Object.keys(obj).filter((k) => !valid.includes(k));
  if (bad.length) {
    throw new Error(
      `${what}: unknown key${bad.length > 1 ? 's' : ''} ${bad.map((k) => `'${k}'`).join(', ')}; valid keys: ${[...valid].sort().join(', ')}`,
    );
  }
}

/**
 * A value as an error message should show it: strings quoted and marked as strings (so '224' is not mistaken for the
 * number 224), NaN / Infinity / undefined as such, arrays and objects as JSON.
 * @example fmtValue('1e-6') // "'1e-6' (a string)"
 */
export function fmtValue(v: unknown): string {
  if (typeof v === 'string') return `'${v}' (a string)`;
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  if (typeof v === 'bigint') return `${v}n (a bigint)`;
  if (typeof v === 'function' || typeof v === 'symbol') return `a ${typeof v}`;
  try {
    return JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? String(x) : x)) ?? String(v);
  } catch {
    return Object.prototype.toString.call(v);
  }
}

/** Resolve `name` in a registry, throwing an error listing the valid names. */
export function lookup<T>(what: string, registry: Readonly<Record<string, T>>, name: string): T {
  if (!Object.prototype.hasOwnProperty.call(registry, name)) {
    throw new Error(`unknown ${what} '${name}'; valid: ${Object.keys(registry).join(', ')}`);
  }
  return registry[name];
}

/** Bounds for `checkNumber`: `min`/`max` inclusive, `gt`/`lt` exclusive; `integer` for whole numbers. */
export interface NumberRule {
  integer?: boolean;
  min?: number;
  max?: number;
  gt?: number;
  lt?: number;
}

/** What a rule accepts, in words: "an integer ≥ 1", "a finite number in [0, 1)". */
export function describeNumberRule(r: NumberRule): string {
  const base = r.integer ? 'an integer' : 'a finite number';
  const lo = r.min !== undefined ? `[${r.min}` : r.gt !== undefined ? `(${r.gt}` : null;
  const hi = r.max !== undefined ? `${r.max}]` : r.lt !== undefined ? `${r.lt})` : null;
  if (lo && hi) return `${base} in ${lo}, ${hi}`;
  if (r.min !== undefined) return `${base} ≥ ${r.min}`;
  if (r.gt !== undefined) return `${base} > ${r.gt}`;
  if (r.max !== undefined) return `${base} ≤ ${r.max}`;
  if (r.lt !== undefined) return `${base} < ${r.lt}`;
  return base;
}

/**
 * Throw unless `v` is a number (never a numeric string), finite, and within the rule; returns it.
 * @example checkNumber('LoaderOptions.concurrency', 0, {integer: true, min: 1}) // Error: LoaderOptions.concurrency: expected an integer ≥ 1, got 0
 */
export function checkNumber(what: string, v: unknown, r: NumberRule = {}): number {
  const ok =
    typeof v === 'number' &&
    Number.isFinite(v) &&
    (!r.integer || Number.isInteger(v)) &&
    (r.min === undefined || v >= r.min) &&
    (r.max === undefined || v <= r.max) &&
    (r.gt === undefined || v > r.gt) &&
    (r.lt === undefined || v < r.lt);
  if (!ok) throw new Error(`${what}: expected ${describeNumberRule(r)}, got ${fmtValue(v)}`);
  return v as number;
}

/** Throw unless `v` is one of `valid` (strings quoted in the message). */
export function checkOneOf<T>(what: string, v: unknown, valid: readonly T[]): T {
  if (!valid.includes(v as T)) throw new Error(`${what}: expected one of ${valid.map((x) => (typeof x === 'string' ? `'${x}'` : String(x))).join(', ')}, got ${fmtValue(v)}`);
  return v as T;
}

/** Throw unless `v` is a boolean (never the string 'false'). */
export function checkBoolean(what: string, v: unknown): boolean {
  if (typeof v !== 'boolean') throw new Error(`${what}: expected true or false, got ${fmtValue(v)}`);
  return v;
}

/**
 * Throw naming the first value that JSON cannot store faithfully (functions, bigints, symbols, class instances, cycles,
 * and — unless `opts.allowNonFinite`, for records that store them as null on purpose — NaN and ±Infinity, which
 * JSON.stringify would silently turn into null). `what` names the record.
 */
export function assertJsonable(what: string, v: unknown, at = what, opts: { allowNonFinite?: boolean } = {}, seen: Set<unknown> = new Set()): void {
  if (v === null || typeof v === 'string' || typeof v === 'boolean' || v === undefined) return;
  if (typeof v === 'number') {
    if (!Number.isFinite(v) && !opts.allowNonFinite) throw new Error(`${what}: '${at}' is ${v}, which JSON cannot store (it would become null)`);
    return;
  }
  if (typeof v === 'function' || typeof v === 'bigint' || typeof v === 'symbol') {
    throw new Error(`${what}: '${at}' is a ${typeof v}, which a JSON record cannot store`);
  }
  if (seen.has(v)) throw new Error(`${what}: '${at}' is a circular reference`);
  seen.add(v);
  const proto = Object.getPrototypeOf(v);
  if (!Array.isArray(v) && proto !== Object.prototype && proto !== null) {
    throw new Error(`${what}: '${at}' is a ${(v as object).constructor?.name ?? 'class instance'}; store plain data (numbers, strings, arrays, objects)`);
  }
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) assertJsonable(what, x, `${at}.${k}`, opts, seen);
  seen.delete(v);
}
