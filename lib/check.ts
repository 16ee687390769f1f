/**
 * Small runtime checks with error messages that name the thing, what was expected and what came.
 */
import * as tf from '@tensorflow/tfjs';

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

/**
 * Assert a tensor's shape. `null` entries in `expected` match anything.
 * @example assertShape(x, [null, 197, 768], 'block input')
 */
export function assertShape(t: tf.Tensor | tf.TensorInfo, expected: ReadonlyArray<number | null>, what: string): void {
  const s = t.shape;
  const ok = s.length === expected.length && expected.every((e, i) => e === null || e === s[i]);
  if (!ok) {
    const exp = expected.map((e) => (e === null ? '*' : String(e))).join(', ');
    throw new Error(`${what}: expected shape [${exp}], got [${s.join(', ')}]`);
  }
}

/** Throw unless `cond`, with a lazily built message. */
export function invariant(cond: unknown, msg: () => string): asserts cond {
  if (!cond) throw new Error(msg());
}
