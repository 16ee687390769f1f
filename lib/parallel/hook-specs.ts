/**
 * What the kit's hook factories were built from, so that evaluation workers can rebuild the same hooks in their own
 * threads (functions cannot cross a thread boundary; their data can). `loraHooks`, `tomeHooks` and `pyraHooks`
 * register their result here; lib/parallel/ship.ts reads it. No imports: the factories depend on this file only.
 */

/** A registered hook: the factory's name and its arguments (live objects, packed by ship.ts). */
export interface HookSpec {
  kind: 'lora' | 'tome' | 'pyra';
  args: unknown;
}

const specs = new WeakMap<object, HookSpec>();

/** Record how `fn` was made (called by the hook factories). Returns `fn`. */
export function registerHook<F extends object>(fn: F, spec: HookSpec): F {
  specs.set(fn, spec);
  return fn;
}

/** How `fn` was made, or undefined for a hook the kit did not make. */
export function hookSpec(fn: object): HookSpec | undefined {
  return specs.get(fn);
}
