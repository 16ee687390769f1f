/**
 * Parameter tables: counts of a parameter tree grouped by path prefix, with how much of it trains.
 *
 * @example showTable(paramTable(vit.params, {depth: 3, collapseIndex: true, trainable}))
 *   → rows like `blocks.*.attn | 12 tensors | 1,769,472 params | trainable 0 (0 %)` plus a total row.
 */
import * as tf from '@tensorflow/tfjs';
import { ParamTree, flattenTree } from '../tree';

export interface ParamTableOptions {
  /**
   * Group by the first `depth` segments of the module path (the path without its leaf name `weight`, `bias`,
   * `lora_A`...; tensors at the root such as `cls_token` are their own group). Default 1: `blocks`, `patch_embed`...
   */
  depth?: number;
  /** Replace numeric segments by `*` so `blocks.0.attn` and `blocks.1.attn` share one row (default false). */
  collapseIndex?: boolean;
  /**
   * What trains: the variables of a trainable set (the Map given to `trainStep`) or any iterable of variables.
   * Default: the variables' own `trainable` flag.
   */
  trainable?: ReadonlyMap<string, tf.Variable> | Iterable<tf.Variable>;
  /** Add a total row (default true). */
  total?: boolean;
}

export interface ParamRow {
  group: string;
  tensors: number;
  params: number;
  trainable: number;
  /** trainable / params in percent. */
  'trainable %': number;
}

/** Group a tree (or flat path → variable map) by path prefix and count parameters and trainable parameters. */
export function paramTable(tree: ParamTree | ReadonlyMap<string, tf.Variable>, o: ParamTableOptions = {}): ParamRow[] {
  const depth = o.depth ?? 1;
  if (!Number.isInteger(depth) || depth < 1) throw new Error(`paramTable: depth must be an integer ≥ 1, got ${depth}`);
  const map = tree instanceof Map ? (tree as ReadonlyMap<string, tf.Variable>) : flattenTree(tree as ParamTree);
  let isTrainable: (v: tf.Variable) => boolean = (v) => v.trainable;
  if (o.trainable) {
    const set = new Set<tf.Variable>(o.trainable instanceof Map ? o.trainable.values() : (o.trainable as Iterable<tf.Variable>));
    isTrainable = (v) => set.has(v);
  }
  const rows = new Map<string, ParamRow>();
  let total: ParamRow = { group: 'total', tensors: 0, params: 0, trainable: 0, 'trainable %': 0 };
  for (const [p, v] of map) {
    const all = p.split('.');
    let segs = (all.length > 1 ? all.slice(0, -1) : all).slice(0, depth);
    if (o.collapseIndex) segs = segs.map((s) => (/^\d+$/.test(s) ? '*' : s));
    const g = segs.join('.');
    const row = rows.get(g) ?? { group: g, tensors: 0, params: 0, trainable: 0, 'trainable %': 0 };
    const t = isTrainable(v) ? v.size : 0;
    row.tensors += 1;
    row.params += v.size;
    row.trainable += t;
    rows.set(g, row);
    total = { ...total, tensors: total.tensors + 1, params: total.params + v.size, trainable: total.trainable + t };
  }
  const out = [...rows.values(), ...(o.total ?? true ? [total] : [])];
  for (const r of out) r['trainable %'] = r.params ? Number(((100 * r.trainable) / r.params).toFixed(3)) : 0;
  return out;
}
