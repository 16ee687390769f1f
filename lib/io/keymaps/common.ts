/**
 * Key maps: pure conversions between an external checkpoint's state dict and the kit's names, both in **PyTorch
 * layout** (the kit's checkpoint layout, io/checkpoint.ts), with a row per key saying what happened to it.
 *
 * `toKit(src)` → kit-named tensors + report rows; `fromKit(kit)` → the external state dict again. Every map is an
 * exact round trip on the keys it loads: `fromKit(toKit(sd).tensors)` reproduces those tensors bit for bit
 * (renames, splits/concatenations of q/k/v and transposes of kernels only; no arithmetic), tested on files written by
 * PyTorch. `loadMapped` validates the converted tensors against a target (names, shapes; errors name the source keys
 * and both shapes) and assigns all of them or none (io/checkpoint.ts `loadTensors`).
 */
import * as tf from '@tensorflow/tfjs';
import type { SafeFile, SafeTensor } from '../safetensors';
import { LoadOptions, LoadReport, loadTensors, torchShape } from '../checkpoint';
import { ParamTree, flattenTree } from '../../tree';
import { numel } from '../dtype';

/**
 * loaded: the tensor as stored (possibly renamed); converted: its data rearranged (q/k/v fused or split, kernels
 * transposed, a layout folded); resized: a position table interpolated; kept: not in the file, the model keeps its own;
 * ignored: in the file, deliberately not loaded (the note says why); unexpected: no place found; checked: verified
 * against another tensor of the file and not loaded separately.
 */
export type KeyStatus = 'loaded' | 'converted' | 'resized' | 'kept' | 'ignored' | 'unexpected' | 'checked';

/** One line of a key report. */
export interface KeyRow {
  /** Kit parameter path ('' when the source key has no kit counterpart). */
  target: string;
  /** Source key(s) it came from (several for a fused qkv built from query/key/value). */
  sources: string[];
  /** Shapes of the source tensors (torch layout), in `sources` order. */
  sourceShapes: number[][];
  /** Shape it has in the kit (torch layout) once loaded. */
  targetShape?: number[];
  status: KeyStatus;
  note?: string;
}

/** Result of a key map's `toKit`. */
export interface Mapped {
  /** Kit-named tensors, torch layout. */
  tensors: Map<string, SafeTensor>;
  rows: KeyRow[];
  /** Non-parameter extras the map found (e.g. ExPLoRA LoRA factors in the kit's adapter names). */
  extras?: Map<string, SafeTensor>;
  /** Free-form facts the map inferred (registers found, chunked blocks, prefix stripped…). */
  info?: Record<string, unknown>;
}

/** A key map between an external layout and the kit's. */
export interface KeyMap<O = Record<string, never>> {
  readonly name: string;
  /** Official source file(s) the names were read from. */
  readonly reference: string;
  toKit(src: ReadonlyMap<string, SafeTensor>, opts?: O): Mapped;
  fromKit(kit: ReadonlyMap<string, SafeTensor>, opts?: O): Map<string, SafeTensor>;
}

// ---------------------------------------------------------------------------------------------------------------
// exact tensor rearrangements on SafeTensors (no arithmetic)

type Data = SafeTensor['data'];

function like(d: Data, n: number): Data {
  return new (d.constructor as { new (n: number): Data })(n);
}

/** Same data, new shape (element count must match). */
export function reshapeT(t: SafeTensor, shape: number[], what: string): SafeTensor {
  if (numel(shape) !== t.data.length) throw new Error(`${what}: cannot reshape [${t.shape}] to [${shape}]`);
  return { dtype: t.dtype, shape, data: t.data };
}

/** Axis permutation (like torch `permute`): out.shape[i] = in.shape[perm[i]]. */
export function permuteT(t: SafeTensor, perm: number[], what: string): SafeTensor {
  const rank = t.shape.length;
  if (perm.length !== rank || [...perm].sort().some((p, i) => p !== i)) throw new Error(`${what}: bad permutation [${perm}] for [${t.shape}]`);
  const shape = perm.map((p) => t.shape[p]);
  const inStride = new Array<number>(rank);
  let acc = 1;
  for (let d = rank - 1; d >= 0; d--) {
    inStride[d] = acc;
    acc *= t.shape[d];
  }
  const n = t.data.length;
  const out = like(t.data, n);
  const idx = new Array<number>(rank).fill(0);
  const step = perm.map((p) => inStride[p]);
  let src = 0;
  for (let k = 0; k < n; k++) {
    out[k] = t.data[src];
    for (let d = rank - 1; d >= 0; d--) {
      idx[d]++;
      src += step[d];
      if (idx[d] < shape[d]) break;
      src -= step[d] * shape[d];
      idx[d] = 0;
    }
  }
  return { dtype: t.dtype, shape, data: out };
}

/** Concatenate along axis 0 (all other dims equal). */
export function concat0(ts: SafeTensor[], what: string): SafeTensor {
  const rest = ts[0].shape.slice(1);
  for (const t of ts) {
    if (t.shape.length !== ts[0].shape.length || t.shape.slice(1).some((d, i) => d !== rest[i])) {
      throw new Error(`${what}: cannot stack shapes ${ts.map((x) => `[${x.shape}]`).join(', ')}`);
    }
  }
  const n = ts.reduce((a, t) => a + t.data.length, 0);
  const out = like(ts[0].data, n);
  let o = 0;
  for (const t of ts) {
    out.set(t.data as never, o);
    o += t.data.length;
  }
  return { dtype: ts[0].dtype, shape: [ts.reduce((a, t) => a + t.shape[0], 0), ...rest], data: out };
}

/** Rows [start, start + count) along axis 0. */
export function rows0(t: SafeTensor, start: number, count: number): SafeTensor {
  const inner = t.shape.slice(1).reduce((a, d) => a * d, 1);
  return { dtype: t.dtype, shape: [count, ...t.shape.slice(1)], data: t.data.slice(start * inner, (start + count) * inner) };
}

/** Index i along axis 0 (drops the axis). */
export function index0(t: SafeTensor, i: number): SafeTensor {
  const r = rows0(t, i, 1);
  return { dtype: r.dtype, shape: r.shape.slice(1), data: r.data };
}

/** Bitwise equality of two tensors (shape and values; NaN equals NaN). */
export function sameTensor(a: SafeTensor, b: SafeTensor): boolean {
  if (a.shape.length !== b.shape.length || a.shape.some((d, i) => d !== b.shape[i]) || a.data.length !== b.data.length) return false;
  for (let i = 0; i < a.data.length; i++) if (a.data[i] !== b.data[i] && !(Number.isNaN(a.data[i]) && Number.isNaN(b.data[i]))) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// building a mapping

/** Collects kit tensors and report rows; refuses a kit key produced twice. */
export class MapBuilder {
  readonly tensors = new Map<string, SafeTensor>();
  readonly rows: KeyRow[] = [];
  readonly used = new Set<string>();
  constructor(
    readonly src: ReadonlyMap<string, SafeTensor>,
    readonly where: string,
  ) {}
  get(key: string): SafeTensor {
    const t = this.src.get(key);
    if (!t) throw new Error(`${this.where}: expected key '${key}' is missing`);
    return t;
  }
  put(target: string, t: SafeTensor, sources: string[], status: KeyStatus = 'loaded', note?: string): void {
    if (this.tensors.has(target)) throw new Error(`${this.where}: two source keys map to '${target}' (${sources.join(', ')})`);
    this.tensors.set(target, t);
    for (const s of sources) this.used.add(s);
    this.rows.push({ target, sources, sourceShapes: sources.map((s) => [...(this.src.get(s)?.shape ?? [])]), targetShape: [...t.shape], status, note });
  }
  skip(source: string, status: 'ignored' | 'checked' | 'unexpected', note: string): void {
    this.used.add(source);
    this.rows.push({ target: '', sources: [source], sourceShapes: [[...(this.src.get(source)?.shape ?? [])]], status, note });
  }
  /** Source keys nobody used, as 'unexpected' rows (loadMapped refuses them unless strict is false). */
  finish(extra?: Partial<Mapped>): Mapped {
    for (const k of this.src.keys()) if (!this.used.has(k)) this.rows.push({ target: '', sources: [k], sourceShapes: [[...this.src.get(k)!.shape]], status: 'unexpected', note: 'no place in the kit' });
    return { tensors: this.tensors, rows: this.rows, ...extra };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// loading

export interface LoadMappedOptions extends Omit<LoadOptions, 'stripPrefixes'> {
  /** Names the source in errors. */
  source?: string;
}

/** The key report of a load: the map's rows, completed with what the target kept, resized or refused. */
export interface KeyReport extends LoadReport {
  rows: KeyRow[];
  counts: Record<KeyStatus, number>;
}

function asMap(p: ParamTree | ReadonlyMap<string, tf.Variable>): ReadonlyMap<string, tf.Variable> {
  return p instanceof Map ? (p as ReadonlyMap<string, tf.Variable>) : flattenTree(p as ParamTree);
}

/**
 * Load a mapped state dict into `params` (a ViT's params, `maeVariables(mae)`, …). Checks first, assigns all or
 * nothing: a tensor whose shape differs from the target's is an error naming its source key(s), both shapes and the
 * kit key; unexpected source keys are refused unless `strict: false`; target parameters absent from the file are
 * refused unless `allowMissing` matches them (they are then 'kept').
 */
export function loadMapped(mapped: Mapped, params: ParamTree | ReadonlyMap<string, tf.Variable>, opts: LoadMappedOptions = {}): KeyReport {
  const { source, ...loadOpts } = opts;
  const where = source ?? 'checkpoint';
  const targets = asMap(params);
  const bySource = new Map<string, KeyRow>();
  for (const r of mapped.rows) if (r.target) bySource.set(r.target, r);
  for (const [k, t] of mapped.tensors) {
    if (opts.ignore?.test(k)) continue;
    const v = targets.get(k);
    if (!v) continue; // reported as unexpected below
    const want = torchShape(k, v.shape);
    const same = want.length === t.shape.length && want.every((d, i) => d === t.shape[i]);
    const posResize = opts.resizePosEmbed && /(^|\.)pos_embed$/.test(k);
    if (!same && !posResize) {
      const row = bySource.get(k);
      const from = row ? row.sources.map((s, i) => `'${s}' [${row.sourceShapes[i]}]`).join(' + ') : `'${k}'`;
      throw new Error(`${where}: ${from} → kit '${k}' has shape [${t.shape}] but the model needs [${want}] (kit layout [${v.shape}])`);
    }
  }
  const unexpectedKit = [...mapped.tensors.keys()].filter((k) => !targets.has(k) && !opts.ignore?.test(k));
  const unexpectedSrc = mapped.rows.filter((r) => r.status === 'unexpected');
  if ((opts.strict ?? true) && (unexpectedKit.length || unexpectedSrc.length)) {
    const list = [
      ...unexpectedKit.map((k) => {
        const row = bySource.get(k);
        const from = row ? row.sources.map((s, i) => `${s} [${row.sourceShapes[i]}]`).join(' + ') : `${k} [${mapped.tensors.get(k)!.shape}]`;
        return row && (row.sources.length !== 1 || row.sources[0] !== k) ? `${from} (→ '${k}')` : from;
      }),
      ...unexpectedSrc.map((r) => `${r.sources[0]} [${r.sourceShapes[0]}]`),
    ];
    throw new Error(`${where}: ${list.length} tensor(s) with no place in the model: ${list.slice(0, 8).join(', ')}${list.length > 8 ? `, … (${list.length} in all)` : ''} (pass strict: false, or ignore, to skip them)`);
  }
  const file: SafeFile = { tensors: new Map([...mapped.tensors].filter(([k]) => targets.has(k))), metadata: {} };
  const report = loadTensors(file, where, { params: targets }, { ...loadOpts, strict: true });
  const resized = new Set(report.resized);
  const rows: KeyRow[] = mapped.rows.map((r) => {
    if (!r.target) return r;
    if (!targets.has(r.target) || opts.ignore?.test(r.target)) return { ...r, status: 'ignored', note: r.note ?? 'not in the model' };
    if (resized.has(r.target)) return { ...r, status: 'resized', note: `${r.note ? `${r.note}; ` : ''}resized to [${torchShape(r.target, targets.get(r.target)!.shape)}]` };
    return r;
  });
  for (const k of report.missing) rows.push({ target: k, sources: [], sourceShapes: [], targetShape: torchShape(k, targets.get(k)!.shape), status: 'kept', note: 'not in the file; the model keeps its own value' });
  const counts = { loaded: 0, converted: 0, resized: 0, kept: 0, ignored: 0, unexpected: 0, checked: 0 } as Record<KeyStatus, number>;
  for (const r of rows) counts[r.status]++;
  return { ...report, rows, counts };
}

/** The report as plain rows for `showTable` (one line per key). */
export function keyReportRows(report: { rows: KeyRow[] }, opts: { only?: KeyStatus[] } = {}): Array<Record<string, string>> {
  return report.rows
    .filter((r) => !opts.only || opts.only.includes(r.status))
    .map((r) => ({
      status: r.status,
      kit: r.target || '—',
      source: r.sources.join(' + ') || '—',
      'source shape': r.sourceShapes.map((s) => `[${s}]`).join(' + ') || '—',
      'kit shape (torch layout)': r.targetShape ? `[${r.targetShape}]` : '—',
      note: r.note ?? '',
    }));
}

/** A one-line summary: "196 loaded, 48 converted, 1 kept, 2 ignored". */
export function keyReportSummary(report: { rows: KeyRow[] }): string {
  const c = new Map<KeyStatus, number>();
  for (const r of report.rows) c.set(r.status, (c.get(r.status) ?? 0) + 1);
  return [...c].map(([s, n]) => `${n} ${s}`).join(', ');
}
