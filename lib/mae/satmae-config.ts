/**
 * The config checker of the SatMAE models (group-channel and temporal MAEs, and their downstream classifiers): a
 * preset (or a full config) plus overrides → a validated, frozen config, every error naming the record and the field.
 *
 * What every SatMAE config shares is checked here: known keys only, positive integer sizes, an image that the patch
 * size divides, heads that divide the width, and the token-code split — the 2-D sin-cos position part of a token
 * code is the width minus the group / time codes (SatMAE `models_*_group_channels.py`, `models_*_temporal.py`), so
 * it must be a positive multiple of 4 and each code an even width. Model-specific checks (band layout, mask ratio,
 * pooling) come in `rules.more`.
 */
import { checkKeys, fmtValue, lookup } from '../check';
import { imgHW } from '../vit/config';

/** The fields the checker reads from every SatMAE config. */
interface SatMaeDims {
  imgSize: number | readonly [number, number];
  patchSize: number;
  embedDim: number;
  numHeads: number;
  /** The MAE's decoder (pre-training models only). */
  decoder?: { embedDim: number };
}

type NumberKey<C> = { [K in keyof C]-?: C[K] extends number ? K : never }[keyof C] & string;

/** One token-code split: the width `of` minus `copies` codes of width `code`. */
export interface CodeSplit<C> {
  of: 'embedDim' | 'decoder.embedDim';
  /** The field holding the width of one code (e.g. `channelEmbedDim`, `timeEmbedDim`). */
  code: NumberKey<C>;
  /** How many codes of that width (SatMAE temporal: 3, year / month / hour); default 1. */
  copies?: number;
}

export interface SatMaeConfigRules<C extends SatMaeDims, O extends object> {
  /** The record's name in errors, e.g. 'SatMaeGroupConfig'. */
  name: string;
  /** What a preset name is, in errors, e.g. 'SatMAE group preset'. */
  what: string;
  presets: Readonly<Record<string, C>>;
  keys: readonly (keyof C & string)[];
  /** Fields that must be positive integers (`imgSize` is always checked). */
  positive: readonly NumberKey<C>[];
  codes: readonly CodeSplit<C>[];
  /** How overrides apply to the base config (default: spread over it). */
  merge?: (base: C, overrides: O) => C;
  /** Model-specific checks, run last. */
  more?: (c: C) => void;
}

/**
 * Resolve `preset` (a name in `rules.presets`, or a full config), apply `overrides` (unknown keys rejected) and check
 * the result; returns it frozen.
 * @example satMaeConfig(GROUP_RULES, 'satmae_group_vit_base_patch8', {channelEmbedDim: 22}) // Error: SatMaeGroupConfig: embedDim 768 − channelEmbedDim 22 = 746 must be a positive multiple of 4 …
 */
export function satMaeConfig<C extends SatMaeDims, O extends object>(rules: SatMaeConfigRules<C, O>, preset: string | C, overrides: O): C {
  const { name } = rules;
  const base: C = typeof preset === 'string' ? lookup(rules.what, rules.presets, preset) : preset;
  checkKeys(name, overrides, rules.keys);
  const c: C = rules.merge ? rules.merge(base, overrides) : { ...base, ...overrides };
  checkKeys(name, c, rules.keys);
  const posInt = (k: string, v: unknown): void => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`${name}.${k}: expected a positive integer, got ${fmtValue(v)}`);
  };
  for (const k of rules.positive) posInt(k, c[k]);
  const [h, w] = imgHW(c);
  posInt('imgSize', h);
  posInt('imgSize', w);
  if (h % c.patchSize || w % c.patchSize) throw new Error(`${name}.imgSize: ${h}x${w} is not divisible by patchSize ${c.patchSize}`);
  if (c.embedDim % c.numHeads) throw new Error(`${name}.embedDim: ${c.embedDim} is not divisible by numHeads ${c.numHeads}`);
  for (const s of rules.codes) {
    const width = s.of === 'embedDim' ? c.embedDim : c.decoder?.embedDim;
    if (width === undefined) throw new Error(`${name}: has no ${s.of} to split`);
    const code = c[s.code] as number;
    const copies = s.copies ?? 1;
    const rest = width - copies * code;
    if (rest <= 0 || rest % 4 || code % 2) {
      const times = copies === 1 ? '' : `${copies}·`;
      throw new Error(`${name}: ${s.of} ${width} − ${times}${s.code} ${code} = ${rest} must be a positive multiple of 4 (and ${s.code} even)`);
    }
  }
  rules.more?.(c);
  return Object.freeze(c);
}
