/**
 * Parameter groups as data: ordered rules over parameter paths, resolved once against a trainable set into per-path
 * settings (the optimizer keeps its state keyed by path; groups only decide how each path is updated).
 *
 * A rule selects paths by a regular expression (`match`, default: every path; `exclude` removes some) and sets any of:
 * - `lrScale`: multiplies the path's lr multiplier (rules compose: layer decay × patch_embed 0.2);
 * - `layerDecay {depth, decay}`: multiplies by decay^(depth + 1 − layerId(path)) (BEiT / MAE / DINOv2 layer-wise decay);
 * - `weightDecay`: true / false — whether the path gets weight decay (last matching rule wins);
 * - `freezeIters`: the path's lr is 0 for iterations < freezeIters (its optimizer moments still update, as DINOv2's
 *   zero-lr `last_layer` group; last matching rule wins);
 * - `clip`: the name of the path's grad-clip group (paths of one group are clipped by their joint norm; default 'all',
 *   i.e. global clipping; last matching rule wins);
 * - `optimizer`: which of the optimizer's configurations updates the path (default 'main'; last matching rule wins).
 * Rules are JSON-serialisable (patterns are RegExp sources), so a recipe can record them; a rule that matches no
 * trainable path is an error (a typo would otherwise silently change the run) unless it says `optional: true`.
 *
 * @example
 *   [{clip: 'backbone'}, {match: '\\.bias$|norm|gamma', weightDecay: false},
 *    {exclude: '^dino_head\\.', layerDecay: {depth: 24, decay: 0.9}}, {match: '^dino_head\\.', clip: 'dino_head'},
 *    {match: '(^|\\.)last_layer\\.', freezeIters: 3750}]
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';

/** One rule of a parameter-group declaration (plain data). */
export interface ParamGroupRule {
  /** RegExp source tested against each trainable path (default: every path). */
  match?: string;
  /** RegExp source: matching paths are left out of this rule. */
  exclude?: string;
  /** lr multiplier (multiplies with the other rules'). */
  lrScale?: number;
  /** Layer-wise lr decay: × decay^(depth + 1 − layerId(path)) (0 = tokens / patch_embed, i+1 = blocks.i, depth+1 = rest). */
  layerDecay?: { depth: number; decay: number };
  /** Weight decay on (true) or off (false) for the matched paths. */
  weightDecay?: boolean;
  /** lr 0 for iterations < freezeIters (moments still update). */
  freezeIters?: number;
  /** Grad-clip group name. */
  clip?: string;
  /** Name of the optimizer configuration that updates the matched paths ('main' = the optimizer's first). */
  optimizer?: string;
  /** Allow the rule to match no trainable path (default false: an error). */
  optional?: boolean;
}

export const PARAM_GROUP_RULE_KEYS: readonly (keyof ParamGroupRule)[] = [
  'match', 'exclude', 'lrScale', 'layerDecay', 'weightDecay', 'freezeIters', 'clip', 'optimizer', 'optional',
];

/** What the rules decide for one path. */
export interface ParamSettings {
  lrScale: number;
  decay: boolean;
  freezeIters: number;
  clip: string;
  optimizer: string;
}

/** Paths with identical settings, in trainable order (the fused groups DINOv2's `fuse_params_groups` would form). */
export interface ParamGroup extends ParamSettings {
  paths: string[];
}

export const DEFAULT_CLIP_GROUP = 'all';
export const MAIN_OPTIMIZER = 'main';

/**
 * Layer id for layer-wise lr decay (BEiT/MAE `lr_decay.py`): 0 for embeddings and tokens, i+1 for `blocks.i.*`,
 * depth+1 for everything after the blocks (final norm, head).
 */
export function layerId(path: string, depth: number): number {
  if (/^(cls_token|dist_token|pos_embed|register_tokens|mask_token|patch_embed)(\.|$)/.test(path)) return 0;
  const m = /^blocks\.(\d+)\./.exec(path);
  if (m) return Number(m[1]) + 1;
  return depth + 1;
}

function regex(src: unknown, what: string): RegExp {
  if (typeof src !== 'string') throw new Error(`${what}: expected a RegExp source string, got ${JSON.stringify(src)}`);
  try {
    return new RegExp(src);
  } catch (e) {
    throw new Error(`${what}: invalid regular expression ${JSON.stringify(src)} (${(e as Error).message})`);
  }
}

const isName = (x: unknown): x is string => typeof x === 'string' && x.length > 0;

/** Validate rules (unknown keys, types, ranges); errors name the rule index and key. */
export function checkParamGroupRules(rules: readonly ParamGroupRule[], what = 'param groups'): void {
  if (!Array.isArray(rules)) throw new Error(`${what}: expected an array of rules, got ${JSON.stringify(rules)}`);
  rules.forEach((r, i) => {
    const w = `${what}[${i}]`;
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw new Error(`${w}: expected a rule object, got ${JSON.stringify(r)}`);
    checkKeys(w, r, PARAM_GROUP_RULE_KEYS);
    if (r.match !== undefined) regex(r.match, `${w}.match`);
    if (r.exclude !== undefined) regex(r.exclude, `${w}.exclude`);
    if (r.lrScale !== undefined && !(typeof r.lrScale === 'number' && Number.isFinite(r.lrScale) && r.lrScale >= 0)) {
      throw new Error(`${w}.lrScale: expected a finite number ≥ 0, got ${JSON.stringify(r.lrScale)}`);
    }
    if (r.layerDecay !== undefined) {
      const ld = r.layerDecay;
      if (ld === null || typeof ld !== 'object') throw new Error(`${w}.layerDecay: expected {depth, decay}, got ${JSON.stringify(ld)}`);
      checkKeys(`${w}.layerDecay`, ld, ['depth', 'decay']);
      if (!(Number.isInteger(ld.depth) && ld.depth >= 0)) throw new Error(`${w}.layerDecay.depth: expected an integer ≥ 0, got ${JSON.stringify(ld.depth)}`);
      if (!(typeof ld.decay === 'number' && ld.decay > 0 && ld.decay <= 1)) throw new Error(`${w}.layerDecay.decay: expected in (0, 1], got ${JSON.stringify(ld.decay)}`);
    }
    if (r.weightDecay !== undefined && typeof r.weightDecay !== 'boolean') throw new Error(`${w}.weightDecay: expected true or false, got ${JSON.stringify(r.weightDecay)}`);
    if (r.freezeIters !== undefined && !(Number.isInteger(r.freezeIters) && r.freezeIters >= 0)) {
      throw new Error(`${w}.freezeIters: expected an integer ≥ 0, got ${JSON.stringify(r.freezeIters)}`);
    }
    if (r.clip !== undefined && !isName(r.clip)) throw new Error(`${w}.clip: expected a non-empty group name, got ${JSON.stringify(r.clip)}`);
    if (r.optimizer !== undefined && !isName(r.optimizer)) throw new Error(`${w}.optimizer: expected a non-empty optimizer name, got ${JSON.stringify(r.optimizer)}`);
    if (r.optional !== undefined && typeof r.optional !== 'boolean') throw new Error(`${w}.optional: expected true or false, got ${JSON.stringify(r.optional)}`);
  });
}

/**
 * Resolve rules against the trainable set: base settings from `base` (the optimizer's decay mask and lr-scale
 * functions), then every rule in order. Returns settings per path, in trainable order.
 */
export function resolveParamSettings(
  params: ReadonlyMap<string, tf.Variable>,
  rules: readonly ParamGroupRule[],
  base: { decay: (path: string, v: tf.Variable) => boolean; lrScale: (path: string) => number },
  what = 'param groups',
): Map<string, ParamSettings> {
  checkParamGroupRules(rules, what);
  const out = new Map<string, ParamSettings>();
  for (const [path, v] of params) {
    const lrScale = base.lrScale(path);
    if (!(Number.isFinite(lrScale) && lrScale >= 0)) throw new Error(`${what}: lr scale of '${path}' is ${lrScale} (expected a finite number ≥ 0)`);
    out.set(path, { lrScale, decay: base.decay(path, v), freezeIters: 0, clip: DEFAULT_CLIP_GROUP, optimizer: MAIN_OPTIMIZER });
  }
  rules.forEach((r, i) => {
    const m = r.match === undefined ? null : new RegExp(r.match);
    const x = r.exclude === undefined ? null : new RegExp(r.exclude);
    let hits = 0;
    for (const [path, s] of out) {
      if ((m && !m.test(path)) || (x && x.test(path))) continue;
      hits += 1;
      if (r.lrScale !== undefined) s.lrScale *= r.lrScale;
      if (r.layerDecay) s.lrScale *= Math.pow(r.layerDecay.decay, r.layerDecay.depth + 1 - layerId(path, r.layerDecay.depth));
      if (r.weightDecay !== undefined) s.decay = r.weightDecay;
      if (r.freezeIters !== undefined) s.freezeIters = r.freezeIters;
      if (r.clip !== undefined) s.clip = r.clip;
      if (r.optimizer !== undefined) s.optimizer = r.optimizer;
    }
    if (hits === 0 && !r.optional) {
      const sel = [r.match !== undefined ? `match ${JSON.stringify(r.match)}` : 'every path', r.exclude !== undefined ? `exclude ${JSON.stringify(r.exclude)}` : ''].filter(Boolean).join(', ');
      throw new Error(`${what}[${i}] (${sel}) matches no trainable path (set optional: true if that is intended)`);
    }
  });
  return out;
}

/** Fuse paths with identical settings into groups (first-appearance order). */
export function fuseParamGroups(settings: ReadonlyMap<string, ParamSettings>): ParamGroup[] {
  const byKey = new Map<string, ParamGroup>();
  for (const [path, s] of settings) {
    const key = JSON.stringify([s.lrScale, s.decay, s.freezeIters, s.clip, s.optimizer]);
    let g = byKey.get(key);
    if (!g) {
      g = { ...s, paths: [] };
      byKey.set(key, g);
    }
    g.paths.push(path);
  }
  return [...byKey.values()];
}

/** Clip groups in first-appearance order, each with its paths in trainable order. */
export function clipGroups(settings: ReadonlyMap<string, ParamSettings>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [path, s] of settings) {
    const g = out.get(s.clip);
    if (g) g.push(path);
    else out.set(s.clip, [path]);
  }
  return out;
}
