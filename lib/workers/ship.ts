/**
 * A ViT and its hooks as plain data for evaluation workers: the config, every parameter packed into one
 * SharedArrayBuffer (each worker copies it once into its own wasm heap; nothing is copied per batch), and the hooks
 * the kit made (`loraHooks` adapters, `tomeHooks` schedule, `pyraHooks` parameters — see hook-specs.ts) rebuilt on
 * the other side. Hooks the kit did not make cannot be rebuilt: that is an error naming the hook.
 */
import * as tf from '@tensorflow/tfjs';
import { Vit, createVit, disposeVit } from '../vit/params';
import { VitConfig } from '../vit/config';
import { VitHooks } from '../vit/forward';
import { ParamTree, flattenTree } from '../tree';
import { LoraAdapters, LoraModule, loraHooks } from '../peft/lora';
import { Pyra, PyraBlockParams, PyraParams, PyraVariant } from '../tome/pyra';
import { tomeHooks, pyraHooks, TomeHookOptions, MergeHookOptions } from '../tome/hooks';
import { hookSpec } from '../parallel/hook-specs';

/** Tensors packed into one shared buffer: path → [offset, shape] (float32). */
export interface Packed {
  data: SharedArrayBuffer;
  index: Array<{ path: string; offset: number; shape: number[] }>;
}

/** Pack variables (float32) into one SharedArrayBuffer. */
export function pack(vars: Iterable<[string, tf.Tensor]>): Packed {
  const list = [...vars];
  let n = 0;
  const index = list.map(([path, v]) => {
    if (v.dtype !== 'float32') throw new Error(`pack: '${path}' is ${v.dtype}; only float32 parameters can be shipped to workers`);
    const e = { path, offset: n, shape: [...v.shape] };
    n += v.size;
    return e;
  });
  const data = new SharedArrayBuffer(n * 4);
  const f = new Float32Array(data);
  list.forEach(([, v], i) => f.set(v.dataSync() as Float32Array, index[i].offset));
  return { data, index };
}

/** The packed tensors as new tensors (caller owns them). */
export function unpack(p: Packed): Map<string, tf.Tensor> {
  const f = new Float32Array(p.data);
  const out = new Map<string, tf.Tensor>();
  for (const e of p.index) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    out.set(e.path, tf.tensor(f.slice(e.offset, e.offset + n), e.shape, 'float32'));
  }
  return out;
}

type ShippedLinear = { kind: 'lora'; modules: Array<Omit<LoraModule, 'slices'> & { slices: Array<Omit<LoraModule['slices'][number], 'A' | 'B'>> }>; weights: Packed };
type ShippedMerge =
  | { kind: 'tome'; opts: TomeHookOptions }
  | { kind: 'pyra'; schedule: number[]; embedDim: number; variant: PyraVariant; weights: Packed; opts: Omit<MergeHookOptions, 'onCap'> };

/** A model for evaluation workers (structured-cloneable; the weights are shared, not copied). */
export interface ShippedVit {
  config: VitConfig;
  params: Packed;
  linear: ShippedLinear | null;
  merge: ShippedMerge | null;
  propAttn: boolean | undefined;
}

function shipLinear(fn: NonNullable<VitHooks['linear']>): ShippedLinear {
  const spec = hookSpec(fn);
  if (!spec || spec.kind !== 'lora') throw new Error("hooks.linear: only hooks made by loraHooks(...) can be rebuilt in a worker; merge the adapters into the weights (mergeLora) or use workers: 1");
  const sets = spec.args as LoraAdapters[];
  const modules: ShippedLinear['modules'] = [];
  const tensors: Array<[string, tf.Tensor]> = [];
  for (const a of sets) {
    for (const m of a.modules.values()) {
      modules.push({ ...m, slices: m.slices.map(({ A: _a, B: _b, ...s }) => s) });
      for (const s of m.slices) tensors.push([s.pathA, s.A], [s.pathB, s.B]);
    }
  }
  return { kind: 'lora', modules, weights: pack(tensors) };
}

function shipMerge(fn: NonNullable<VitHooks['merge']>): ShippedMerge {
  const spec = hookSpec(fn);
  if (spec?.kind === 'tome') return { kind: 'tome', opts: (spec.args as { opts: TomeHookOptions }).opts };
  if (spec?.kind === 'pyra') {
    const { pyra, opts } = spec.args as { pyra: Pyra; opts: Omit<MergeHookOptions, 'onCap'> };
    const tensors: Array<[string, tf.Tensor]> = [];
    pyra.params.blocks.forEach((b, i) => {
      if (!b) return;
      for (const [k, v] of flattenTree(b as unknown as ParamTree)) tensors.push([`${i}.${k}`, v]); // every variant's leaves
    });
    return { kind: 'pyra', schedule: [...pyra.schedule], embedDim: pyra.embedDim, variant: pyra.variant, weights: pack(tensors), opts };
  }
  throw new Error('hooks.merge: only hooks made by tomeHooks / pyraHooks can be rebuilt in a worker; use workers: 1');
}

/** Pack a ViT (and the kit-made hooks it runs with) for evaluation workers. */
export function shipVit(vit: Vit, hooks: VitHooks = {}): ShippedVit {
  return {
    config: vit.config,
    params: pack(flattenTree(vit.params)),
    linear: hooks.linear ? shipLinear(hooks.linear) : null,
    merge: hooks.merge ? shipMerge(hooks.merge) : null,
    propAttn: hooks.propAttn,
  };
}

/** Rebuild a shipped ViT in this thread: the model (its own variables), its hooks, and how to free both. */
export function landVit(s: ShippedVit): { vit: Vit; hooks: VitHooks; dispose: () => void } {
  const vit = createVit(s.config, {}, { skipInit: true });
  const owned: tf.Tensor[] = [];
  try {
    const vals = unpack(s.params);
    owned.push(...vals.values());
    for (const [path, v] of flattenTree(vit.params)) {
      const t = vals.get(path);
      if (!t) throw new Error(`landVit: no shipped value for '${path}'`);
      v.assign(t);
    }
    tf.dispose([...vals.values()]);
    owned.length = 0;
    let hooks: VitHooks = {};
    if (s.linear) {
      const w = unpack(s.linear.weights);
      owned.push(...w.values());
      const modules = new Map<string, LoraModule>();
      for (const m of s.linear.modules) {
        modules.set(m.site, { ...m, slices: m.slices.map((sl) => ({ ...sl, A: tf.variable(w.get(sl.pathA)!, false), B: tf.variable(w.get(sl.pathB)!, false) })) });
      }
      tf.dispose([...w.values()]);
      owned.length = 0;
      for (const m of modules.values()) for (const sl of m.slices) owned.push(sl.A, sl.B);
      hooks.linear = loraHooks({ config: { rank: 0, alpha: 1, scaling: null, dropout: 0, init: 'kaiming', targets: [] }, modules, params: {}, scope: 'shipped-lora' });
    }
    if (s.merge?.kind === 'tome') hooks = tomeHooks(s.config, s.merge.opts, hooks);
    else if (s.merge?.kind === 'pyra') {
      const w = unpack(s.merge.weights);
      const blocks: PyraParams['blocks'] = s.merge.schedule.map(() => undefined);
      for (const [key, t] of w) {
        // '<block>.<path>' → blocks[block] as a tree (pyra_a, pyra_b, pyra_full, pyra_mlp.fc1.weight, pyra_norm.weight …)
        const [head, ...rest] = key.split('.');
        const i = Number(head);
        let node = (blocks[i] ??= {}) as Record<string, unknown>;
        for (const part of rest.slice(0, -1)) node = (node[part] ??= {}) as Record<string, unknown>;
        const v = tf.variable(t, false);
        owned.push(v);
        node[rest[rest.length - 1]] = v;
      }
      tf.dispose([...w.values()]);
      hooks = pyraHooks(s.config, { schedule: s.merge.schedule, embedDim: s.merge.embedDim, variant: s.merge.variant, params: { blocks: blocks as (PyraBlockParams | undefined)[] }, scope: 'shipped-pyra' }, s.merge.opts, hooks);
    }
    if (s.propAttn !== undefined) hooks.propAttn = s.propAttn;
    return { vit, hooks, dispose: () => { tf.dispose(owned); disposeVit(vit); } };
  } catch (e) {
    tf.dispose(owned);
    disposeVit(vit);
    throw e;
  }
}
