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

/** Resolve `name` in a registry, throwing an error listing the valid names. */
export function lookup<T>(what: string, registry: Readonly<Record<string, T>>, name: string): T {
  if (!Object.prototype.hasOwnProperty.call(registry, name)) {
    throw new Error(`unknown ${what} '${name}'; valid: ${Object.keys(registry).join(', ')}`);
  }
  return registry[name];
}
