/**
 * LoRA (Hu et al. 2021, arXiv 2106.09685) as adapters **beside** the base weights, attached at the ViT's named linear
 * sites (`env.hooks.linear`, see vit/forward.ts). The base tree is never edited.
 *
 * For a linear site y = x·W + b (kit layout W [in, out]) an adapter adds
 *   Δy = s · (dropout(x)·A)·B,   A [in, r], B [r, out], s = α / r (or an explicit `scaling`),
 * i.e. ΔW = s·A·B in kit layout [in, out]; in PyTorch layout that is s·B_t·A_t with A_t = Aᵀ [r, in], B_t = Bᵀ [out, r].
 *
 * Target kinds:
 * - `linear`: one (A, B) over the whole output (proj, fc1, fc2, decoder sites, …);
 * - `qkv`: per-slice adapters on a **fused** qkv [D → 3D] whose output columns are [Q | K | V] (timm / DINOv2
 *   `Attention`): by default the Q and V slices get their own (A, B) and K is untouched — loralib's
 *   `MergedLinear(enable_lora=[True, False, True])`, and ExPLoRA's split into `q_proj`/`v_proj` LoRA linears + a
 *   frozen `k_proj` (ExPLoRA `train_lora_util.py`, `vit_lora_util.py`);
 * - `shared-qkv`: PYRA's released LoRA (PYRA `model/vision_transformer_timm.py` `Attention`): one A [D, r] and one
 *   B [r, 3D] whose output is added to q, k and v; use it with `scaling: 1` (no α/r) to reproduce the release.
 *
 * Options: rank, α (ExPLoRA: α = 1 ⇒ s = 1/r; loralib's default too; PEFT's default α = 8 is NOT used here), dropout
 * on the adapter input (active only when `env.training`, drawn from `env.rng`), init:
 * - `kaiming` (default; loralib/PEFT/ExPLoRA): A ~ U(±1/√in) (kaiming-uniform a = √5), B = 0 ⇒ identity at init;
 * - `truncNormal`: A and B ~ trunc-normal(σ = 0.02) — what PYRA's released pipeline ends up with (its ViT init
 *   overwrites the LoRA init), so the adapter is NOT zero at step 0.
 *
 * Parameter names (adapter tree keyed by the site path; kit layout [in, out] for every rank-2 `*.weight`, so the
 * checkpoint writer stores them transposed in PyTorch/PEFT shapes: lora_A [r, in], lora_B [out, r]):
 *   linear / shared-qkv: `<site>.lora_A.weight` [in, r], `<site>.lora_B.weight` [r, out]
 *   qkv slices:          `<site>.lora_A.q.weight` [D, r], `<site>.lora_B.q.weight` [r, D]   (same for k, v)
 * The slice name sits where PEFT puts its adapter name (`lora_A.default.weight`). ExPLoRA's own modules are named
 * `attn.q_proj` / `attn.v_proj` (ExPLoRA `train_lora_util.py`); `exploraLoraKey` maps
 * `blocks.3.attn.qkv.lora_A.q.weight` ↔ `blocks.3.attn.q_proj.lora_A.weight` (the exact parameter spelling in
 * ExPLoRA's unreleased sources is UNCONFIRMED; its released checkpoints ship merged weights only).
 *
 * Merge / unmerge are pure (`mergeLora(base, adapters)` → a new tree with new variables W + s·A·B); "disable" is simply
 * running the forward without the hook. Merging is the hand-off between ExPLoRA's extended pre-training and the
 * supervised stage.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import { fillInit, Init } from '../init';
import { ParamTree, flattenTree, makeVariable, newScope, disposeTree, forEachLeaf } from '../tree';
import { checkKeys, checkNumber } from '../check';
import { dropout as dropoutOp } from '../ops/nn';
import type { ForwardEnv, VitHooks } from '../vit/forward';
import { registerHook } from '../parallel/hook-specs';
import { PathPattern, matchAny, describePattern, layerIndexOf, patternList, LAYER_INDEX_PATTERN } from './patterns';

export type LoraKind = 'linear' | 'qkv' | 'shared-qkv';
export type LoraInit = 'kaiming' | 'truncNormal';
export type QkvSlice = 'q' | 'k' | 'v';

/** One targeting rule. Fields left out fall back to the config's rank / alpha / scaling / dropout / init. */
export interface LoraTarget {
  /** Site patterns (glob string = whole path or dotted suffix, or RegExp; see patterns.ts), e.g. `'attn.qkv'`. */
  sites: PathPattern | readonly PathPattern[];
  /** Sites to leave out even if they match `sites`. */
  exclude?: readonly PathPattern[];
  /** Keep only sites inside these block indices (0-based; `blocks.i` / `decoder_blocks.i`). */
  layers?: readonly number[];
  /** Regex capturing the layer index in group 1 (default: first `…blocks.<i>.` component). */
  layersPattern?: RegExp;
  /** Default 'linear'. */
  kind?: LoraKind;
  /** kind 'qkv' only: which slices get an adapter (default ['q', 'v']). */
  slices?: readonly QkvSlice[];
  rank?: number;
  alpha?: number;
  /** Explicit scale s (overrides α / r), e.g. 1 for PYRA's released LoRA. */
  scaling?: number;
  dropout?: number;
  init?: LoraInit;
}

export interface LoraConfig {
  rank: number;
  /** s = α / r. ExPLoRA (and loralib's default): α = 1. */
  alpha: number;
  /** Explicit scale overriding α / r for every target (null = use α / r). */
  scaling: number | null;
  /** Dropout probability on the adapter input (training only). */
  dropout: number;
  init: LoraInit;
  targets: readonly LoraTarget[];
}

const CONFIG_KEYS = ['rank', 'alpha', 'scaling', 'dropout', 'init', 'targets'] as const;
const TARGET_KEYS = ['sites', 'exclude', 'layers', 'layersPattern', 'kind', 'slices', 'rank', 'alpha', 'scaling', 'dropout', 'init'] as const;

/** Defaults: rank 8, α = 1 (s = 1/r, ExPLoRA/loralib), no dropout, kaiming A / zero B. */
export const LORA_DEFAULTS: Omit<LoraConfig, 'targets'> = Object.freeze({ rank: 8, alpha: 1, scaling: null, dropout: 0, init: 'kaiming' });

/** Target: the Q and V slices of every encoder block's fused qkv (optionally only `layers`). */
export function qvTarget(layers?: readonly number[], extra: Partial<LoraTarget> = {}): LoraTarget {
  return { sites: 'blocks.*.attn.qkv', kind: 'qkv', slices: ['q', 'v'], ...(layers ? { layers } : {}), ...extra };
}

/** Build a validated LoRA config from a partial one (unknown keys rejected). */
export function loraConfig(c: Partial<LoraConfig> & { targets: readonly LoraTarget[] }): LoraConfig {
  checkKeys('LoraConfig', c, CONFIG_KEYS);
  const cfg: LoraConfig = { ...LORA_DEFAULTS, ...c };
  if (!Array.isArray(cfg.targets) || cfg.targets.length === 0) throw new Error('LoraConfig.targets: expected at least one target');
  /** Types here (a string is never coerced); ranges that depend on the site (rank ≤ width) are checked by planLora. */
  const numbers = (where: string, o: Partial<Pick<LoraConfig, 'rank' | 'alpha' | 'scaling' | 'dropout'>>): void => {
    if (o.rank !== undefined) checkNumber(`${where}.rank`, o.rank);
    if (o.alpha !== undefined) checkNumber(`${where}.alpha`, o.alpha);
    if (o.scaling !== undefined && o.scaling !== null) checkNumber(`${where}.scaling`, o.scaling);
    if (o.dropout !== undefined) checkNumber(`${where}.dropout`, o.dropout);
  };
  numbers('LoraConfig', cfg);
  cfg.targets.forEach((t: LoraTarget, i: number) => {
    checkKeys(`LoraConfig.targets[${i}]`, t, TARGET_KEYS);
    numbers(`LoraConfig.targets[${i}]`, t);
    const kind = t.kind ?? 'linear';
    if (!['linear', 'qkv', 'shared-qkv'].includes(kind)) {
      throw new Error(`LoraConfig.targets[${i}].kind: expected one of linear, qkv, shared-qkv, got '${kind}'`);
    }
    if (t.slices !== undefined) {
      if (kind !== 'qkv') throw new Error(`LoraConfig.targets[${i}].slices: only valid with kind 'qkv' (kind is '${kind}')`);
      if (t.slices.length === 0 || t.slices.some((s: string) => !['q', 'k', 'v'].includes(s)) || new Set(t.slices).size !== t.slices.length) {
        throw new Error(`LoraConfig.targets[${i}].slices: expected distinct entries of q, k, v, got [${t.slices.join(', ')}]`);
      }
    }
    if (patternList(t.sites).length === 0) throw new Error(`LoraConfig.targets[${i}].sites: no pattern given`);
    if (t.layers) {
      t.layers.forEach((l: number) => {
        if (!Number.isInteger(l) || l < 0) throw new Error(`LoraConfig.targets[${i}].layers: expected 0-based integers, got ${l}`);
      });
    }
  });
  return Object.freeze(cfg);
}

/** Something with a shape (a tf.Variable, or a plain record for shape-only planning). */
export interface ShapeLike {
  readonly shape: readonly number[];
}

/** Where sites come from: a parameter tree, a flat map path → variable/shape, or several of them. */
export type LoraBase = ParamTree | ReadonlyMap<string, ShapeLike> | ReadonlyArray<ParamTree | ReadonlyMap<string, ShapeLike>>;

/** Flatten a base (tree, map or list of them) to one ordered map; duplicate paths are an error. */
export function shapeMap(base: LoraBase): Map<string, ShapeLike> {
  const parts = Array.isArray(base) ? (base as ReadonlyArray<ParamTree | ReadonlyMap<string, ShapeLike>>) : [base as ParamTree];
  const out = new Map<string, ShapeLike>();
  for (const part of parts) {
    const m: ReadonlyMap<string, ShapeLike> = part instanceof Map ? part : flattenTree(part as ParamTree);
    for (const [k, v] of m) {
      if (out.has(k)) throw new Error(`LoRA base: parameter '${k}' appears in two of the given trees`);
      out.set(k, v);
    }
  }
  return out;
}

/** Where one slice of an adapter writes in the site's output. */
export interface LoraSlicePlan {
  /** 'q' | 'k' | 'v' for qkv slices, '' for whole-output adapters */
  name: QkvSlice | '';
  /** first output column */
  offset: number;
  /** output columns */
  width: number;
  /** adapter parameter paths */
  pathA: string;
  pathB: string;
}

/** One adapted site, before allocation (shape-only). */
export interface LoraModulePlan {
  site: string;
  kind: LoraKind;
  /** base weight path (`<site>.weight`) and its kit shape ([in, out], or [p, p, C, D] for the patch embedding) */
  weightPath: string;
  weightShape: readonly number[];
  din: number;
  dout: number;
  rank: number;
  scale: number;
  dropout: number;
  init: LoraInit;
  slices: readonly LoraSlicePlan[];
}

/** An allocated slice: the plan plus A [in, r] and B [r, width]. */
export interface LoraSlice extends LoraSlicePlan {
  A: tf.Variable;
  B: tf.Variable;
}
export interface LoraModule extends Omit<LoraModulePlan, 'slices'> {
  slices: readonly LoraSlice[];
}

/** Adapter tree: `{[site]: {lora_A: {weight} | {q: {weight}, v: {weight}}, lora_B: …}}` (flattens to the names above). */
export type LoraParams = Record<string, { lora_A: Record<string, unknown>; lora_B: Record<string, unknown> }>;

/** A set of adapters: config, per-site modules (in base order), the parameter tree and its variable scope. */
export interface LoraAdapters {
  readonly config: LoraConfig;
  readonly modules: ReadonlyMap<string, LoraModule>;
  readonly params: LoraParams;
  readonly scope: string;
}

/** Linear sites of a base: every rank-2 `<site>.weight` ([in, out]) and rank-4 `<site>.weight` (patch embedding). */
export function linearSites(shapes: ReadonlyMap<string, ShapeLike>): Map<string, { weightPath: string; shape: readonly number[]; din: number; dout: number }> {
  const out = new Map<string, { weightPath: string; shape: readonly number[]; din: number; dout: number }>();
  for (const [path, v] of shapes) {
    if (!path.endsWith('.weight') || /(^|\.)lora_[AB](\.|$)/.test(path)) continue;
    const s = v.shape;
    if (s.length === 2) out.set(path.slice(0, -7), { weightPath: path, shape: s, din: s[0], dout: s[1] });
    else if (s.length === 4) out.set(path.slice(0, -7), { weightPath: path, shape: s, din: s[0] * s[1] * s[2], dout: s[3] });
  }
  return out;
}

const QKV_INDEX: Record<QkvSlice, number> = { q: 0, k: 1, v: 2 };

/**
 * Resolve targets against a base without allocating anything: which sites get which adapters. Throws when a target
 * matches no site, a `layers` index matches nothing, a site is matched by two targets, a qkv site is not fused
 * (out ≠ 3·in), or the rank is not in [1, layer width).
 */
export function planLora(base: LoraBase, config: LoraConfig): LoraModulePlan[] {
  const cfg = loraConfig(config);
  const sites = linearSites(shapeMap(base));
  const claimed = new Map<string, number>();
  const plans = new Map<string, LoraModulePlan>();
  cfg.targets.forEach((t, ti) => {
    const what = `LoRA target #${ti} (sites ${describePattern(patternList(t.sites) as PathPattern[])}${t.layers ? `, layers [${t.layers.join(',')}]` : ''})`;
    const sitePats = patternList(t.sites);
    const layerRe = t.layersPattern ?? LAYER_INDEX_PATTERN;
    const layersSeen = new Set<number>();
    let n = 0;
    for (const [site, info] of sites) {
      if (!matchAny(site, sitePats)) continue;
      if (t.layers) {
        const li = layerIndexOf(site, layerRe);
        if (li === null || !t.layers.includes(li)) continue;
        layersSeen.add(li); // before `exclude`: a layer emptied by an explicit exclude is not a typo
      }
      if (t.exclude && matchAny(site, t.exclude)) continue;
      if (claimed.has(site)) throw new Error(`${what}: site '${site}' is already targeted by target #${claimed.get(site)}`);
      claimed.set(site, ti);
      n++;
      const kind = t.kind ?? 'linear';
      const rank = t.rank ?? cfg.rank;
      const alpha = t.alpha ?? cfg.alpha;
      const scaling = t.scaling ?? cfg.scaling;
      const drop = t.dropout ?? cfg.dropout;
      const init = t.init ?? cfg.init;
      const { din, dout } = info;
      let slices: LoraSlicePlan[];
      if (kind === 'qkv') {
        if (dout !== 3 * din) throw new Error(`${what}: site '${site}' is not a fused qkv (weight [${info.shape}], expected [D, 3D])`);
        const names = [...(t.slices ?? (['q', 'v'] as const))].sort((a, b) => QKV_INDEX[a] - QKV_INDEX[b]);
        slices = names.map((s) => ({ name: s, offset: QKV_INDEX[s] * din, width: din, pathA: `${site}.lora_A.${s}.weight`, pathB: `${site}.lora_B.${s}.weight` }));
      } else {
        if (kind === 'shared-qkv' && dout !== 3 * din) {
          throw new Error(`${what}: site '${site}' is not a fused qkv (weight [${info.shape}], expected [D, 3D])`);
        }
        slices = [{ name: '', offset: 0, width: dout, pathA: `${site}.lora_A.weight`, pathB: `${site}.lora_B.weight` }];
      }
      const width = Math.min(din, ...slices.map((s) => s.width));
      if (!Number.isInteger(rank) || rank <= 0 || rank >= width) {
        throw new Error(`${what}: rank must be an integer in [1, ${width - 1}] for site '${site}' (in ${din}, out ${kind === 'qkv' ? `${din} per slice` : dout}), got ${rank}`);
      }
      if (!(drop >= 0 && drop < 1)) throw new Error(`${what}: dropout must be in [0, 1), got ${drop}`);
      if (!['kaiming', 'truncNormal'].includes(init)) throw new Error(`${what}: init must be 'kaiming' or 'truncNormal', got '${init}'`);
      const scale = scaling ?? alpha / rank;
      if (!Number.isFinite(scale)) throw new Error(`${what}: scale α/r is not finite (α ${alpha}, r ${rank})`);
      plans.set(site, { site, kind, weightPath: info.weightPath, weightShape: info.shape, din, dout, rank, scale, dropout: drop, init, slices });
    }
    if (n === 0) {
      const known = [...sites.keys()];
      const sample = known.slice(0, 6).join(', ') + (known.length > 6 ? `, … (${known.length} sites)` : '');
      throw new Error(`${what} matches no linear site; sites are: ${sample || '(none: the base has no rank-2 .weight)'}`);
    }
    if (t.layers) {
      const missing = t.layers.filter((l) => !layersSeen.has(l));
      if (missing.length) throw new Error(`${what}: layer index ${missing.join(', ')} matches no site`);
    }
  });
  // base order, not target order
  return [...sites.keys()].filter((s) => plans.has(s)).map((s) => plans.get(s)!);
}

/** Number of adapter parameters a plan allocates. */
export function loraPlanCount(plan: readonly (LoraModulePlan | LoraModule)[]): number {
  let n = 0;
  for (const m of plan) for (const s of m.slices) n += m.din * m.rank + m.rank * s.width;
  return n;
}

function initOf(kind: LoraInit, which: 'A' | 'B', din: number): Init {
  if (kind === 'truncNormal') return { kind: 'truncNormal', std: 0.02 };
  return which === 'A' ? { kind: 'kaimingUniformA5', fanIn: din } : { kind: 'zeros' };
}

/**
 * Create adapters for `base` (a ViT's `params`, a decoder tree, a flat map, or a list of them).
 * Initialisation is deterministic from `opts.seed` and each parameter's path.
 * @example const lora = createLora(vit.params, loraConfig({rank: 64, targets: [qvTarget(range(0, 23))]}), {seed: 0});
 */
export function createLora(base: LoraBase, config: Partial<LoraConfig> & { targets: readonly LoraTarget[] }, opts: { seed?: number } = {}): LoraAdapters {
  const cfg = loraConfig(config);
  const plan = planLora(base, cfg);
  const scope = newScope('lora');
  const seed = opts.seed ?? 0;
  const modules = new Map<string, LoraModule>();
  const params: LoraParams = {};
  for (const m of plan) {
    const slices: LoraSlice[] = m.slices.map((s) => {
      const A = makeVariable(scope, s.pathA, fillInit(m.din * m.rank, initOf(m.init, 'A', m.din), Rng.derive(seed, s.pathA)), [m.din, m.rank]);
      const B = makeVariable(scope, s.pathB, fillInit(m.rank * s.width, initOf(m.init, 'B', m.din), Rng.derive(seed, s.pathB)), [m.rank, s.width]);
      return { ...s, A, B };
    });
    modules.set(m.site, { ...m, slices });
    params[m.site] =
      m.kind === 'qkv'
        ? {
            lora_A: Object.fromEntries(slices.map((s) => [s.name, { weight: s.A }])),
            lora_B: Object.fromEntries(slices.map((s) => [s.name, { weight: s.B }])),
          }
        : { lora_A: { weight: slices[0].A }, lora_B: { weight: slices[0].B } };
  }
  return { config: cfg, modules, params, scope };
}

/**
 * A copy of an adapter set with new variables (same config, sites and values), e.g. the DINO teacher's adapters:
 * ExPLoRA gives the teacher its own LoRA modules loaded from the student and EMAs A and B separately (ExPLoRA
 * `dinov2/layers/attention.py` + DINOv2 `update_teacher`).
 * `trainable` sets the copies' flag (default false: a teacher is updated by EMA `assign`, not by gradients).
 */
export function cloneLora(adapters: LoraAdapters, opts: { trainable?: boolean } = {}): LoraAdapters {
  const scope = newScope('lora');
  const trainable = opts.trainable ?? false;
  const copy = (v: tf.Variable, path: string): tf.Variable => tf.tidy(() => tf.variable(v.clone(), trainable, `${scope}/${path}`));
  const modules = new Map<string, LoraModule>();
  const params: LoraParams = {};
  for (const [site, m] of adapters.modules) {
    const slices = m.slices.map((s) => ({ ...s, A: copy(s.A, s.pathA), B: copy(s.B, s.pathB) }));
    modules.set(site, { ...m, slices });
    params[site] =
      m.kind === 'qkv'
        ? {
            lora_A: Object.fromEntries(slices.map((s) => [s.name, { weight: s.A }])),
            lora_B: Object.fromEntries(slices.map((s) => [s.name, { weight: s.B }])),
          }
        : { lora_A: { weight: slices[0].A }, lora_B: { weight: slices[0].B } };
  }
  return { config: adapters.config, modules, params, scope };
}

/** Ordered path → variable map of the adapter parameters. */
export function loraVariables(adapters: LoraAdapters): Map<string, tf.Variable> {
  return flattenTree(adapters.params);
}

/** Number of adapter parameters. */
export function loraParamCount(adapters: LoraAdapters): number {
  return loraPlanCount([...adapters.modules.values()]);
}

/** Dispose the adapter variables. */
export function disposeLora(adapters: LoraAdapters): void {
  disposeTree(adapters.params);
}

/** Throw naming the module and matrix if an adapter of `m` was disposed (tfjs would only say "Tensor is disposed"). */
function checkLoraLive(m: LoraModule, what: string): void {
  for (const s of m.slices) {
    for (const [k, v] of [['A', s.A], ['B', s.B]] as const) {
      if (v.isDisposed) {
        throw new Error(`${what}: the ${k} matrix of the adapter at '${m.site}'${m.slices.length > 1 ? ` (slice at column ${s.offset})` : ''} was disposed (disposeLora was called on these adapters)`);
      }
    }
  }
}

/**
 * The adapter output Δy for a module: x [M, in] → [M, out] (zeros in the columns of slices without an adapter).
 * Dropout on x is applied when `env.training` and the module has dropout > 0; `samples` (the batch samples the M rows
 * belong to, sample-major) lets a data-parallel worker draw the one-process mask of its rows. Call inside a tidy.
 */
export function loraDelta(m: LoraModule, x: tf.Tensor2D, env: Pick<ForwardEnv, 'training' | 'rng'>, samples?: number): tf.Tensor2D {
  checkLoraLive(m, 'LoRA forward');
  const M = x.shape[0];
  if (x.shape[1] !== m.din) throw new Error(`LoRA at '${m.site}': input width ${x.shape[1]}, expected ${m.din}`);
  const xin = m.dropout > 0 ? (dropoutOp(x, m.dropout, env.training, env.rng, samples) as tf.Tensor2D) : x;
  const parts: tf.Tensor2D[] = [];
  let col = 0;
  for (const s of m.slices) {
    if (s.offset > col) parts.push(tf.zeros([M, s.offset - col]));
    const down = tf.matMul(xin, s.A); // [M, r]
    parts.push(tf.matMul(m.scale === 1 ? down : tf.mul(down, m.scale), s.B)); // [M, width]
    col = s.offset + s.width;
  }
  if (col < m.dout) parts.push(tf.zeros([M, m.dout - col]));
  return parts.length === 1 ? parts[0] : (tf.concat(parts, 1) as tf.Tensor2D); // [M, out]
}

/**
 * The linear-site hook that applies the adapters: y ↦ y + Δy at adapted sites, y unchanged elsewhere.
 * Several adapter sets may be given (e.g. encoder r64 and decoder r8); a site adapted by two sets is an error.
 * @example vitForward(vit, x, {hooks: {linear: loraHooks(lora)}})
 */
export function loraHooks(adapters: LoraAdapters | readonly LoraAdapters[]): NonNullable<VitHooks['linear']> {
  const sets = Array.isArray(adapters) ? (adapters as readonly LoraAdapters[]) : [adapters as LoraAdapters];
  const bySite = new Map<string, LoraModule>();
  for (const a of sets) {
    for (const [site, m] of a.modules) {
      if (bySite.has(site)) throw new Error(`loraHooks: site '${site}' is adapted by two adapter sets`);
      bySite.set(site, m);
    }
  }
  const hook: NonNullable<VitHooks['linear']> = (site, x, y, env, samples) => {
    const m = bySite.get(site);
    if (!m) return y;
    return tf.add(y, loraDelta(m, x, env, samples)) as tf.Tensor2D;
  };
  return registerHook(hook, { kind: 'lora', args: sets }); // evaluation workers rebuild it from the adapters (lib/parallel/ship.ts)
}

/** Chain linear hooks left to right (each sees the previous one's output). */
export function composeLinearHooks(...hooks: Array<VitHooks['linear'] | undefined>): NonNullable<VitHooks['linear']> {
  const hs = hooks.filter((h): h is NonNullable<VitHooks['linear']> => h !== undefined);
  return (site, x, y, env, samples) => hs.reduce((acc, h) => h(site, x, acc, env, samples), y);
}

/** ΔW = s·A·B of one module in kit layout [in, out] (zero columns for slices without an adapter). Call in a tidy. */
export function loraDeltaWeight(m: LoraModule): tf.Tensor2D {
  checkLoraLive(m, 'LoRA merge');
  const parts: tf.Tensor2D[] = [];
  let col = 0;
  for (const s of m.slices) {
    if (s.offset > col) parts.push(tf.zeros([m.din, s.offset - col]));
    parts.push(tf.mul(tf.matMul(s.A, s.B), m.scale) as tf.Tensor2D); // [in, width]
    col = s.offset + s.width;
  }
  if (col < m.dout) parts.push(tf.zeros([m.din, m.dout - col]));
  return parts.length === 1 ? parts[0] : (tf.concat(parts, 1) as tf.Tensor2D);
}

/** Rebuild a tree with the same structure, mapping each leaf (path, variable) to a new variable. */
function mapTree<T>(tree: T, fn: (path: string, v: tf.Variable) => tf.Variable, prefix = ''): T {
  if (tree === undefined || tree === null) return tree;
  if (tree instanceof tf.Variable) return fn(prefix, tree) as unknown as T;
  if (Array.isArray(tree)) return tree.map((sub, i) => mapTree(sub, fn, prefix ? `${prefix}.${i}` : String(i))) as unknown as T;
  if (tree instanceof tf.Tensor) throw new Error(`mergeLora: '${prefix}' is a tensor, not a tf.Variable`);
  if (typeof tree !== 'object') return tree;
  const out: Record<string, unknown> = {};
  for (const [k, sub] of Object.entries(tree as Record<string, unknown>)) out[k] = mapTree(sub, fn, prefix ? `${prefix}.${k}` : k);
  return out as T;
}

export interface MergeOptions {
  /** Allow adapter sites that are not in this base (e.g. decoder adapters when merging the encoder). Default false. */
  allowMissing?: boolean;
  /** Scope kind of the new variables (default 'merged'). */
  scopeKind?: string;
}

function applyDelta<T extends ParamTree>(base: T, adapters: LoraAdapters | readonly LoraAdapters[], sign: 1 | -1, opts: MergeOptions): T {
  const sets = Array.isArray(adapters) ? (adapters as readonly LoraAdapters[]) : [adapters as LoraAdapters];
  const byWeight = new Map<string, LoraModule>();
  for (const a of sets) for (const m of a.modules.values()) byWeight.set(m.weightPath, m);
  const present = new Set<string>();
  forEachLeaf(base, (p) => present.add(p));
  const absent = [...byWeight.keys()].filter((p) => !present.has(p));
  if (absent.length && !opts.allowMissing) {
    throw new Error(`${sign > 0 ? 'mergeLora' : 'unmergeLora'}: the base has no weight for ${absent.length} adapted site(s): ${absent.slice(0, 6).join(', ')} (pass allowMissing: true to merge only the sites present)`);
  }
  const scope = newScope(opts.scopeKind ?? (sign > 0 ? 'merged' : 'unmerged'));
  const made: tf.Variable[] = [];
  try {
    return mapTree(base, (path, v) => {
      const m = byWeight.get(path);
      const nv = tf.tidy(() => {
        let val: tf.Tensor = v;
        if (m) {
          const s = v.shape;
          if (s.length !== m.weightShape.length || s.some((d, i) => d !== m.weightShape[i])) {
            throw new Error(`mergeLora: '${path}' has shape [${s}] but the adapter was built for [${m.weightShape}]`);
          }
          const d = loraDeltaWeight(m).reshape(s); // [in, out] → weight shape ([p,p,C,D] for the patch embedding: (ky,kx,c) rows)
          val = sign > 0 ? tf.add(v, d) : tf.sub(v, d);
        }
        return tf.variable(val.clone(), v.trainable, `${scope}/${path}`);
      });
      made.push(nv);
      return nv;
    });
  } catch (e) {
    made.forEach((v) => v.dispose());
    throw e;
  }
}

/**
 * Pure merge: a new tree (new variables, same structure and `trainable` flags) with W ← W + s·A·B at every adapted
 * site; the base and the adapters are untouched. Dispose the old tree yourself if you no longer need it.
 * @example const merged = {...vit, params: mergeLora(vit.params, lora)}; // run it without hooks
 */
export function mergeLora<T extends ParamTree>(base: T, adapters: LoraAdapters | readonly LoraAdapters[], opts: MergeOptions = {}): T {
  return applyDelta(base, adapters, 1, opts);
}

/** Inverse of `mergeLora`: a new tree with W ← W − s·A·B (float rounding aside, recovers the pre-merge weights). */
export function unmergeLora<T extends ParamTree>(merged: T, adapters: LoraAdapters | readonly LoraAdapters[], opts: MergeOptions = {}): T {
  return applyDelta(merged, adapters, -1, opts);
}

/**
 * Map an adapter key between the kit's names and ExPLoRA's q_proj / v_proj naming:
 * `blocks.3.attn.qkv.lora_A.q.weight` ↔ `blocks.3.attn.q_proj.lora_A.weight` (direction inferred). Other keys are
 * returned unchanged.
 */
export function exploraLoraKey(key: string): string {
  const kit = /^(.*)\.attn\.qkv\.lora_([AB])\.([qkv])\.weight$/.exec(key);
  if (kit) return `${kit[1]}.attn.${kit[3]}_proj.lora_${kit[2]}.weight`;
  const ex = /^(.*)\.attn\.([qkv])_proj\.lora_([AB])\.weight$/.exec(key);
  if (ex) return `${ex[1]}.attn.qkv.lora_${ex[3]}.${ex[2]}.weight`;
  return key;
}

/** Block indices lo..hi-1 (a convenience for `layers`). */
export function range(lo: number, hi: number): number[] {
  return Array.from({ length: Math.max(0, hi - lo) }, (_, i) => lo + i);
}
