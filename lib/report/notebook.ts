/**
 * Notebook ergonomics: re-runnable cells and the scale switch (ci / smoke / workstation / paper).
 *
 * `slot(name, factory)` keeps one value per name for the whole kernel session. Re-running the cell disposes the
 * previous value before building the new one, so re-running "build the model" neither leaks tensors nor fights over
 * variable names (every tree has its own variable scope, see tree.ts):
 *
 *   const vit = slot('vit', () => createVit('vit_small_patch16_224', {numClasses: 10}));
 *
 * The registry lives on `globalThis` so it survives the kit being loaded twice in one process.
 */
import * as tf from '@tensorflow/tfjs';

type Disposer<T> = (old: T) => void;
interface Slot {
  value: unknown;
  dispose: Disposer<unknown>;
}

const SLOTS_KEY = Symbol.for('vitpeft.report.slots');
function slots(): Map<string, Slot> {
  const g = globalThis as unknown as Record<symbol, Map<string, Slot> | undefined>;
  return (g[SLOTS_KEY] ??= new Map());
}

function isPlainContainer(x: object): boolean {
  if (Array.isArray(x) || x instanceof Map || x instanceof Set) return true;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

/**
 * The default disposer: tensors (and variables) are disposed; objects with a `dispose()` method have it called;
 * plain objects, arrays, Maps and Sets are walked. Other class instances are left alone (they may share tensors).
 * Pass your own disposer to `slot` when a value shares tensors with something that must live on.
 */
export function disposeValue(v: unknown): void {
  const seen = new Set<unknown>();
  const walk = (x: unknown): void => {
    if (x === null || typeof x !== 'object' || seen.has(x)) return;
    seen.add(x);
    if (x instanceof tf.Tensor) {
      if (!x.isDisposed) x.dispose();
      return;
    }
    const d = (x as { dispose?: unknown }).dispose;
    if (typeof d === 'function') {
      (d as () => void).call(x);
      return;
    }
    if (!isPlainContainer(x)) return;
    if (x instanceof Map) x.forEach((val) => walk(val));
    else if (x instanceof Set) x.forEach((val) => walk(val));
    else Object.values(x).forEach(walk);
  };
  walk(v);
}

/**
 * The value of slot `name`: disposes the value a previous run of the cell stored there, then builds a new one with
 * `factory` (which may return a promise; the resolved value is what gets disposed next time).
 */
export function slot<T>(name: string, factory: () => T, dispose: Disposer<Awaited<T>> = disposeValue): T {
  if (!name) throw new Error('slot: a name is required');
  releaseSlot(name);
  const value = factory();
  const entry: Slot = { value, dispose: dispose as Disposer<unknown> };
  slots().set(name, entry);
  if (value && typeof (value as { then?: unknown }).then === 'function') {
    entry.value = undefined;
    (value as unknown as Promise<unknown>).then(
      (v) => {
        if (slots().get(name) === entry) entry.value = v;
        else (dispose as Disposer<unknown>)(v); // the slot was replaced while this factory ran
      },
      () => {
        if (slots().get(name) === entry) slots().delete(name);
      },
    );
  }
  return value;
}

/** Dispose and forget slot `name` (no-op when empty). */
export function releaseSlot(name: string): void {
  const old = slots().get(name);
  if (!old) return;
  slots().delete(name);
  if (old.value !== undefined) old.dispose(old.value);
}

/** Dispose every slot (e.g. at the end of a notebook). */
export function releaseAllSlots(): void {
  for (const name of [...slots().keys()]) releaseSlot(name);
}

/** Names of the live slots. */
export function slotNames(): string[] {
  return [...slots().keys()];
}

/** The kit's notebook scales, smallest first (see `notebookScale`). */
export type NotebookScale = 'ci' | 'smoke' | 'workstation' | 'paper';
export const NOTEBOOK_SCALES: readonly NotebookScale[] = ['ci', 'smoke', 'workstation', 'paper'];

/**
 * The notebook's scale: `VITPEFT_SCALE` when set (the runner's `--scale`), else `fallback` (what the notebook's first
 * cell says). Throws naming the valid values.
 *
 * Scales (`NOTEBOOK_SCALES`):
 * - `ci`: the test suite's run: every cell executes, with the smallest budgets, so the suite stays well under 15 min;
 * - `smoke` (default): ≤ 15 minutes per notebook on 2 CPU cores, the embedded data and tiny models — the README's
 *   main job; big enough to show a large effect, often too small to resolve the papers' few-point effects;
 * - `workstation`: about an hour per notebook on a 16-core CPU (tfjs-node) or one GPU: a ViT-S-sized model
 *   (D 384, 12 blocks), larger images (64–96 px), several times more data, ≥ 3 seeds — the scale at which the papers'
 *   qualitative claims should show clearly. Each notebook defines it in its scale table;
 * - `paper`: the paper's models, data and schedules (real weights and datasets; a GPU job).
 *
 * A notebook that defines only some scales passes its own `valid` list.
 */
export function notebookScale<S extends string = NotebookScale>(fallback: S, valid: readonly S[] = NOTEBOOK_SCALES as unknown as S[]): S {
  const raw = process.env.VITPEFT_SCALE || fallback;
  if (!(valid as readonly string[]).includes(raw)) {
    throw new Error(`scale: '${raw}'${process.env.VITPEFT_SCALE ? ' (from VITPEFT_SCALE)' : ''} is not one of ${valid.join(', ')}`);
  }
  return raw as S;
}
