/**
 * Checkpoints: parameter trees and optimizer state in safetensors, in **PyTorch layout** so a file loads into timm /
 * DINOv2 / MAE code with `safetensors.torch.load_file` + `load_state_dict`, and converted PyTorch checkpoints load here.
 *
 * Layout rule (applies to parameters and to optimizer state keyed `optim.<slot>.<path>` alike):
 * - a rank-2 tensor whose key ends in `.weight` is a Linear: kit [in, out] ↔ torch [out, in];
 * - a rank-4 tensor whose key ends in `.weight` is a conv / patch embedding: kit [p, p, C, D] ↔ torch [D, C, p, p];
 * - everything else is stored as is.
 * Metadata: `__metadata__.vitpeft` holds JSON {format, layout, step, seed, optimizer, ...user fields}.
 *
 * Loading validates the whole file against the target (names, shapes after layout conversion, dtypes, and no NaN/Inf
 * in float tensors unless `allowNonFinite`) before assigning anything: an error names the tensor (and both shapes, or
 * the first non-finite value) and leaves the model untouched. Saving or loading a disposed model is an error naming
 * the disposed parameter.
 */
import * as tf from '@tensorflow/tfjs';
import { ParamTree, flattenTree, assertLive } from '../tree';
import { assertJsonable, checkBoolean, checkKeys, checkOneOf, fmtValue } from '../check';
import { Optimizer } from '../train/optim';
import { readSafetensors, writeSafetensors, TensorToWrite, SafeTensor, SafeFile } from './safetensors';
import { resizeGridEmbed, ResizeSpec } from '../vit/posembed';

export const CHECKPOINT_FORMAT = 'vitpeft/1';

type Layout = 'linear' | 'conv' | 'plain';

function layoutOf(key: string, rank: number): Layout {
  if (!key.endsWith('.weight')) return 'plain';
  if (rank === 2) return 'linear';
  if (rank === 4) return 'conv';
  return 'plain';
}

/** Torch-layout shape of a kit tensor at `key`. */
export function torchShape(key: string, kitShape: readonly number[]): number[] {
  switch (layoutOf(key, kitShape.length)) {
    case 'linear':
      return [kitShape[1], kitShape[0]];
    case 'conv':
      return [kitShape[3], kitShape[2], kitShape[0], kitShape[1]];
    default:
      return [...kitShape];
  }
}

/** Convert a kit tensor to torch layout (new tensor). */
export function kitToTorch(key: string, t: tf.Tensor): tf.Tensor {
  switch (layoutOf(key, t.rank)) {
    case 'linear':
      return t.transpose([1, 0]);
    case 'conv':
      return t.transpose([3, 2, 0, 1]); // HWIO → OIHW
    default:
      return t.clone();
  }
}

/** Convert a torch-layout tensor to the kit layout of `key` (new tensor). */
export function torchToKit(key: string, t: tf.Tensor): tf.Tensor {
  switch (layoutOf(key, t.rank)) {
    case 'linear':
      return t.transpose([1, 0]);
    case 'conv':
      return t.transpose([2, 3, 1, 0]); // OIHW → HWIO
    default:
      return t.clone();
  }
}

function asMap(tree: ParamTree | ReadonlyMap<string, tf.Variable>): ReadonlyMap<string, tf.Variable> {
  return tree instanceof Map ? (tree as ReadonlyMap<string, tf.Variable>) : flattenTree(tree);
}

export interface SaveParts {
  params: ParamTree | ReadonlyMap<string, tf.Variable>;
  optimizer?: Optimizer;
  /** Extra JSON-serialisable metadata (preset, config, seed, ...). `step` defaults to the optimizer's step. */
  meta?: Record<string, unknown>;
  /**
   * Save parameters holding NaN or ±Inf (default false: refused before anything is written, so a diverged run cannot
   * overwrite the last good checkpoint).
   */
  allowNonFinite?: boolean;
}

/** Metadata keys the format owns: a user `meta` may not replace them (the file would not load back). */
const RESERVED_META = ['format', 'layout'];

/** Save parameters (+ optimizer state) to `file` atomically. */
export function saveCheckpoint(file: string, parts: SaveParts): void {
  assertLive(asMap(parts.params), 'saveCheckpoint', 'the model was disposed before saving');
  if (parts.optimizer) assertLive(parts.optimizer.stateTensors(), 'saveCheckpoint (optimizer state)', 'the optimizer was disposed before saving');
  checkKeys('saveCheckpoint parts', parts, ['params', 'optimizer', 'meta', 'allowNonFinite']);
  if (parts.meta !== undefined) {
    if (parts.meta === null || typeof parts.meta !== 'object' || Array.isArray(parts.meta)) throw new Error(`saveCheckpoint(${file}): meta must be an object, got ${fmtValue(parts.meta)}`);
    assertJsonable(`saveCheckpoint(${file}) meta`, parts.meta, 'meta');
    const clash = Object.keys(parts.meta).filter((k) => RESERVED_META.includes(k));
    if (clash.length) throw new Error(`saveCheckpoint(${file}): meta key${clash.length > 1 ? 's' : ''} ${clash.map((k) => `'${k}'`).join(', ')} belong to the file format; use another name`);
  }
  const out = new Map<string, TensorToWrite>();
  const add = (key: string, v: tf.Tensor): void => {
    const t = tf.tidy(() => kitToTorch(key, v));
    const data = t.dataSync();
    if (!parts.allowNonFinite && v.dtype !== 'int32') {
      for (let i = 0; i < data.length; i++) {
        if (!Number.isFinite(data[i])) {
          t.dispose();
          throw new Error(
            `saveCheckpoint(${file}): '${key}' holds a non-finite value (${data[i]} at flat index ${i} of torch shape [${t.shape}]); nothing was written, the previous file is unchanged (pass allowNonFinite: true to save it anyway)`,
          );
        }
      }
    }
    out.set(key, {
      dtype: v.dtype === 'int32' ? 'I32' : 'F32',
      shape: t.shape,
      data: v.dtype === 'int32' ? Int32Array.from(data) : Float32Array.from(data),
    });
    t.dispose();
  };
  for (const [k, v] of asMap(parts.params)) add(k, v);
  if (parts.optimizer) for (const [k, v] of parts.optimizer.stateTensors()) add(`optim.${k}`, v);
  const meta = {
    format: CHECKPOINT_FORMAT,
    layout: 'torch',
    ...(parts.optimizer ? optimizerMeta(parts.optimizer) : {}),
    ...(parts.meta ?? {}),
  };
  writeSafetensors(file, out, { vitpeft: JSON.stringify(meta) });
}

/**
 * What a checkpoint records about its optimizer, so that a resume can check it is continuing the same optimisation:
 * `step` (updates applied), `skipped` (non-finite steps skipped), `optimizer` (the main configuration), `optimizers`
 * (every configuration by name, when there are several) and `paramGroups` (the fused parameter groups with their
 * paths: lr scale, decay, frozen iterations, clip group, configuration — hence also the trainable paths).
 */
export function optimizerMeta(opt: Optimizer): Record<string, unknown> {
  return {
    step: opt.step,
    ...(opt.skipped ? { skipped: opt.skipped } : {}),
    optimizer: opt.config,
    ...(opt.configs.size > 1 ? { optimizers: Object.fromEntries(opt.configs) } : {}),
    paramGroups: opt.groups(),
  };
}

const SETTING_KEYS = ['lrScale', 'decay', 'freezeIters', 'clip', 'optimizer'] as const;

/**
 * Differences between the optimizer a checkpoint was saved with (its metadata) and `opt` (configurations, trainable
 * paths, per-path group settings), as readable lines; [] when they agree or the file records nothing to compare.
 */
export function optimizerDifferences(meta: Record<string, unknown>, opt: Optimizer): string[] {
  const out: string[] = [];
  const show = (x: unknown): string => JSON.stringify(x);
  const cmpConfig = (name: string, saved: unknown, cur: unknown): void => {
    if (saved === undefined) return;
    if (saved === null || typeof saved !== 'object' || cur === undefined) {
      out.push(`optimizer '${name}': ${show(saved)} (checkpoint) vs ${show(cur)} (now)`);
      return;
    }
    const s = saved as Record<string, unknown>;
    const c = cur as Record<string, unknown>;
    for (const k of [...new Set([...Object.keys(s), ...Object.keys(c)])]) {
      if (s[k] !== c[k]) out.push(`optimizer '${name}' ${k}: ${show(s[k])} (checkpoint) vs ${show(c[k])} (now)`);
    }
  };
  cmpConfig('main', meta.optimizer, opt.config);
  if (meta.optimizers !== undefined && meta.optimizers !== null && typeof meta.optimizers === 'object') {
    const saved = meta.optimizers as Record<string, unknown>;
    for (const n of new Set([...Object.keys(saved), ...opt.configs.keys()])) if (n !== 'main') cmpConfig(n, saved[n], opt.configs.get(n));
  } else if (meta.optimizer !== undefined && opt.configs.size > 1) {
    out.push(`optimizer configurations: only 'main' (checkpoint) vs ${[...opt.configs.keys()].join(', ')} (now)`);
  }
  if (!Array.isArray(meta.paramGroups)) return out;
  const saved = new Map<string, Record<string, unknown>>();
  for (const g of meta.paramGroups as Array<Record<string, unknown>>) for (const p of (g.paths as string[]) ?? []) saved.set(p, g);
  const list = (xs: string[]): string => xs.slice(0, 5).map((x) => `'${x}'`).join(', ') + (xs.length > 5 ? `, … (${xs.length} in all)` : '');
  const onlySaved = [...saved.keys()].filter((p) => !opt.settings.has(p));
  const onlyNow = [...opt.settings.keys()].filter((p) => !saved.has(p));
  if (onlySaved.length) out.push(`trainable paths in the checkpoint but not in this optimizer: ${list(onlySaved)}`);
  if (onlyNow.length) out.push(`trainable paths in this optimizer but not in the checkpoint: ${list(onlyNow)}`);
  for (const [p, s] of opt.settings) {
    const g = saved.get(p);
    if (!g) continue;
    for (const k of SETTING_KEYS) if (g[k] !== undefined && g[k] !== s[k]) out.push(`parameter group of '${p}' ${k}: ${show(g[k])} (checkpoint) vs ${show(s[k])} (now)`);
  }
  return out;
}

export interface LoadOptions {
  /** Refuse files with tensors the target does not have (default true). Missing tensors are always an error unless `allowMissing` matches. */
  strict?: boolean;
  /** Paths allowed to be absent from the file (kept as they are), e.g. /^head\./ when loading a backbone. */
  allowMissing?: RegExp;
  /** File keys to ignore, e.g. /^(decoder|mask_token)/ when loading an MAE checkpoint into an encoder. */
  ignore?: RegExp;
  /** Prefixes stripped from file keys (first match), e.g. ['module.', 'backbone.', 'teacher.backbone.']. */
  stripPrefixes?: string[];
  /** Resize `pos_embed` tables of another square grid bicubically (CLS slot kept) instead of refusing them. */
  resizePosEmbed?: boolean;
  /** Interpolation for `resizePosEmbed`: 'size' (default; MAE's interpolate_pos_embed) or 'size-antialias' (timm's). */
  resizeMode?: ResizeSpec['mode'];
  /**
   * Load optimizer state although the checkpoint's optimizer differs (configuration, trainable paths, parameter
   * groups). Default false: a resume with another optimizer is an error listing the differences.
   */
  allowOptimizerChange?: boolean;
  /** Load float tensors holding NaN or ±Inf (default false: such a file is refused, naming the tensor and value). */
  allowNonFinite?: boolean;
}

export interface LoadReport {
  loaded: string[];
  /** Target paths absent from the file (only those allowed by `allowMissing`). */
  missing: string[];
  /** File keys with no target (ignored keys excluded). */
  unexpected: string[];
  /** Keys resized on load. */
  resized: string[];
  meta: Record<string, unknown>;
}

const LOAD_KEYS = ['strict', 'allowMissing', 'ignore', 'stripPrefixes', 'resizePosEmbed', 'resizeMode', 'allowNonFinite', 'allowOptimizerChange'] as const;

/** Validate LoadOptions (a string where a RegExp belongs would otherwise fail deep inside, or match per character). */
function checkLoadOptions(opts: LoadOptions, file: string): void {
  const what = `loadCheckpoint(${file}) options`;
  checkKeys(what, opts, LOAD_KEYS);
  for (const k of ['strict', 'resizePosEmbed', 'allowNonFinite', 'allowOptimizerChange'] as const) if (opts[k] !== undefined) checkBoolean(`${what}.${k}`, opts[k]);
  for (const k of ['allowMissing', 'ignore'] as const) {
    if (opts[k] !== undefined && !(opts[k] instanceof RegExp)) throw new Error(`${what}.${k}: expected a RegExp (e.g. /^head\\./), got ${fmtValue(opts[k])}`);
  }
  const sp = opts.stripPrefixes;
  if (sp !== undefined && !(Array.isArray(sp) && sp.every((p) => typeof p === 'string' && p.length > 0))) {
    throw new Error(`${what}.stripPrefixes: expected a list of non-empty strings (e.g. ['module.']), got ${fmtValue(sp)}`);
  }
  if (opts.resizeMode !== undefined) checkOneOf(`${what}.resizeMode`, opts.resizeMode, ['size', 'size-antialias', 'dinov2-offset']);
}

/** Throw naming the tensor, the count and the first non-finite value (with its index) of a float tensor. */
function checkFinite(key: string, t: SafeTensor, file: string): void {
  if (!(t.data instanceof Float32Array)) return;
  const d = t.data;
  let first = -1;
  let count = 0;
  for (let i = 0; i < d.length; i++) {
    if (!Number.isFinite(d[i])) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (first < 0) return;
  const idx: number[] = [];
  let rest = first;
  for (let k = t.shape.length - 1; k >= 0; k--) {
    idx.unshift(rest % t.shape[k]);
    rest = Math.floor(rest / t.shape[k]);
  }
  throw new Error(
    `${file}: tensor '${key}' [${t.shape}] holds ${count} non-finite value${count > 1 ? 's' : ''} (first: ${d[first]} at [${idx}]); refusing to load a diverged or corrupt checkpoint (pass allowNonFinite: true to load it anyway)`,
  );
}

function toTensor(key: string, t: SafeTensor, file: string): tf.Tensor {
  if (t.dtype === 'U8' || t.dtype === 'BOOL') {
    return tf.tensor(Int32Array.from(t.data), t.shape, 'int32');
  }
  if (t.data instanceof Uint8Array) throw new Error(`${file}: tensor '${key}' has unsupported dtype ${t.dtype}`);
  return tf.tensor(t.data, t.shape, t.data instanceof Int32Array ? 'int32' : 'float32');
}

/**
 * Load `file` into the target parameters (and optimizer state). All-or-nothing: validation happens before any
 * assignment. Returns what was loaded, missing, unexpected and the file's metadata.
 */
export function loadCheckpoint(
  file: string,
  into: { params: ParamTree | ReadonlyMap<string, tf.Variable>; optimizer?: Optimizer },
  opts: LoadOptions = {},
): LoadReport {
  return loadTensors(readSafetensors(file), file, into, opts);
}

/**
 * `loadCheckpoint` on tensors already in memory (e.g. a converted timm state dict, see io/timm.ts): same validation,
 * same all-or-nothing assignment. `file` only names the source in error messages.
 */
export function loadTensors(
  source: SafeFile,
  file: string,
  into: { params: ParamTree | ReadonlyMap<string, tf.Variable>; optimizer?: Optimizer },
  opts: LoadOptions = {},
): LoadReport {
  checkLoadOptions(opts, file);
  const { tensors, metadata } = source;
  let meta: Record<string, unknown> = {};
  if (metadata.vitpeft) {
    try {
      meta = JSON.parse(metadata.vitpeft);
    } catch {
      throw new Error(`${file}: __metadata__.vitpeft is not valid JSON`);
    }
  }
  if (meta.layout !== undefined && meta.layout !== 'torch') throw new Error(`${file}: unsupported layout '${String(meta.layout)}'`);
  if (into.optimizer && !opts.allowOptimizerChange) {
    const diff = optimizerDifferences(meta, into.optimizer);
    if (diff.length) {
      const shown = diff.slice(0, 8).join('; ') + (diff.length > 8 ? `; … (${diff.length} differences)` : '');
      throw new Error(`${file}: resuming with another optimizer than the checkpoint's: ${shown} (pass allowOptimizerChange: true to load anyway)`);
    }
  }
  const targets = new Map<string, tf.Variable>(asMap(into.params));
  if (into.optimizer) for (const [k, v] of into.optimizer.stateTensors()) targets.set(`optim.${k}`, v);
  assertLive(targets, `loadCheckpoint(${file})`, 'the target was disposed; assigning would silently revive it');
  // Map file keys to target keys.
  const byTarget = new Map<string, [string, SafeTensor]>();
  const unexpected: string[] = [];
  for (const [rawKey, t] of tensors) {
    if (opts.ignore?.test(rawKey)) continue;
    let key = rawKey;
    for (const p of opts.stripPrefixes ?? []) {
      if (key.startsWith(p)) {
        key = key.slice(p.length);
        break;
      }
    }
    if (opts.ignore?.test(key)) continue;
    if (!targets.has(key)) {
      unexpected.push(rawKey);
      continue;
    }
    if (byTarget.has(key)) throw new Error(`${file}: keys '${byTarget.get(key)![0]}' and '${rawKey}' both map to '${key}'`);
    byTarget.set(key, [rawKey, t]);
  }
  const missing = [...targets.keys()].filter((k) => !byTarget.has(k));
  const badMissing = missing.filter((k) => !(opts.allowMissing?.test(k) ?? false));
  if (badMissing.length) {
    const list = badMissing.slice(0, 8).join(', ') + (badMissing.length > 8 ? `, … (${badMissing.length} in all)` : '');
    throw new Error(`${file}: missing ${badMissing.length} tensor(s) the target needs: ${list}`);
  }
  if ((opts.strict ?? true) && unexpected.length) {
    const list = unexpected.slice(0, 8).join(', ') + (unexpected.length > 8 ? `, … (${unexpected.length} in all)` : '');
    throw new Error(`${file}: ${unexpected.length} tensor(s) with no place in the target: ${list} (pass strict: false or ignore to skip them)`);
  }
  if (!opts.allowNonFinite) for (const [, [rawKey, st]] of byTarget) checkFinite(rawKey, st, file);
  // Build every converted tensor first; assign only when all are valid.
  const ready: Array<[tf.Variable, tf.Tensor]> = [];
  const resized: string[] = [];
  try {
    for (const [key, [rawKey, st]] of byTarget) {
      const target = targets.get(key)!;
      const want = torchShape(key, target.shape);
      const wantD = want[2];
      let t = toTensor(rawKey, st, file);
      const same = t.shape.length === want.length && t.shape.every((d, i) => d === want[i]);
      if (!same) {
        const canResize =
          opts.resizePosEmbed && /(^|\.)pos_embed$/.test(key) && t.rank === 3 && t.shape[0] === 1 && t.shape[2] === wantD;
        const fromN = (t.shape[1] as number) - 1;
        const toN = want[1] - 1;
        const fg = Math.round(Math.sqrt(fromN));
        const tg = Math.round(Math.sqrt(toN));
        if (!canResize || fg * fg !== fromN || tg * tg !== toN) {
          t.dispose();
          throw new Error(
            `${file}: tensor '${rawKey}' has shape [${st.shape}] but '${key}' needs [${want}] (torch layout of kit shape [${target.shape}])`,
          );
        }
        const r = tf.tidy(() => {
          const D = t.shape[2] as number;
          const cls = t.slice([0, 0, 0], [1, 1, D]);
          const grid = resizeGridEmbed(t.slice([0, 1, 0], [1, fromN, D]) as tf.Tensor3D, { from: [fg, fg], to: [tg, tg], mode: opts.resizeMode ?? 'size' });
          return tf.concat([cls, grid], 1);
        });
        t.dispose();
        t = r;
        resized.push(key);
      }
      const kit = tf.tidy(() => {
        const k = torchToKit(key, t);
        return k.dtype === target.dtype ? k : k.cast(target.dtype);
      });
      t.dispose();
      ready.push([target, kit]);
    }
  } catch (e) {
    for (const [, k] of ready) k.dispose();
    throw e;
  }
  for (const [v, k] of ready) {
    v.assign(k);
    k.dispose();
  }
  if (into.optimizer && typeof meta.step === 'number') into.optimizer.step = meta.step;
  if (into.optimizer) into.optimizer.skipped = typeof meta.skipped === 'number' ? meta.skipped : 0;
  return {
    loaded: [...byTarget.keys()],
    missing,
    unexpected,
    resized,
    meta,
  };
}
