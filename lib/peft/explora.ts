/**
 * The ExPLoRA recipe (Khanna et al., arXiv 2406.10973; ExPLoRA's `scripts/pretrain_{dino,mae}.sh`, `mae/pretrain.py`):
 * extended self-supervised pre-training of a DINOv2 (D-) or MAE (M-) ViT on the target domain with
 * - a few **unfrozen blocks** U (paper notation, 1-based: `[L]` = last block, `[1,L]`, `[1,L-1,L]`),
 * - **LoRA on the Q and V slices** of the fused qkv of every other block (rank r, α = 1 ⇒ scale 1/r, A kaiming /
 *   B zero, no dropout; unfrozen blocks get no LoRA),
 * - **all LayerNorms** (every `…norm…` weight/bias: norm1/norm2 of every block, the final norm, and for MAE the
 *   decoder norms) and the **CLS token** trainable; DINOv2 register tokens always trainable;
 * - patch embeddings trainable only for multispectral inputs (`unfreezeEmbed`: `patch_embed.*` and `decoder_pred.*`);
 * - per objective: DINOv2 → the DINO/iBOT heads train from scratch (`dino_head.*`, `ibot_head.*`, not counted);
 *   MAE → decoder LoRA r8 on Q,V of every decoder block + decoder norms, decoder embed/pred/mask token frozen.
 * Then merge LoRA into the weights (`mergeLora`) and fine-tune (recipes/finetune.ts) or linear-probe (eval/). The
 * paper's recipes by name: recipes/explora-presets.ts.
 *
 * The parameter rule is ExPLoRA's name filter (`mae/pretrain.py`, `finetune/finetune.py`): trainable iff the name
 * contains `lora`, or `blocks.{i}.` with i ∈ U, or `norm`, or `cls_token`, or (multispectral)
 * `patch_embed`/`decoder_pred`, plus the objective's heads. Counts reproduce the paper's parameter columns (encoder
 * only; 12.7M / 18.7M / 43.4M in its fMoW-RGB ablation): ViT-L D-[L] 12,695,552; D-[L]-r64 18,724,864; D-[1,L-1,L]-r64
 * 43,388,928; ViT-B D-[L]-r64 9,288,192; MAE ViT-L M-[L]-r64 18,722,816 (tests).
 *
 * Notation: `parseExploraNotation('D-ExPLoRA-[1,L-1,L]-r64')` ↔ `formatExploraNotation(recipe)`; without `-r<k>`
 * there is no LoRA (`D-ExPLoRA-[L]`).
 */
import { LoraConfig, LoraTarget, LoraAdapters, createLora, loraConfig, planLora, LoraModulePlan, ShapeLike, QkvSlice, shapeMap, disposeLora } from './lora';
import { PathPattern } from './patterns';
import { TrainRule, TrainSpec, FREEZE_REST, TrainSelection, selectTrainable, classifyParams, TrainSummary, ClassifyOptions } from './trainable';
import { ParamTree } from '../tree';
import { checkKeys, fmtValue } from '../check';

/** Initial-weights family: D = DINOv2, M = MAE (SatMAE for multispectral / temporal). */
export type ExploraFamily = 'D' | 'M';

/** A block in the paper's 1-based notation: a positive integer, `'L'` (last) or `'L-k'`. */
export type BlockRef = number | 'L' | `L-${number}`;

export interface ExploraRecipe {
  family: ExploraFamily;
  /** Unfrozen blocks U (1-based, paper notation). */
  unfrozen: readonly BlockRef[];
  /** LoRA rank on Q,V of every other encoder block; null = no LoRA. */
  rank: number | null;
  /** LoRA α (scale α/r). ExPLoRA: 1. */
  alpha: number;
  /** qkv slices that get LoRA (ExPLoRA: Q and V; `include_attn_key` adds K). */
  slices: readonly QkvSlice[];
  /** Ablation (`include_attn_proj`): LoRA rank r on attn.proj of the LoRA blocks too. Default false. */
  loraProj: boolean;
  /** Ablation (`lora_layers` with "mlp"): LoRA rank ⌊r/4⌋ on mlp.fc1 / mlp.fc2 of the LoRA blocks. Default false. */
  loraMlp: boolean;
  /** Unfreeze every LayerNorm (`--unfreeze_norm`). */
  unfreezeNorms: boolean;
  /** Unfreeze the CLS token (`--unfreeze_cls_token`). */
  unfreezeCls: boolean;
  /** Unfreeze patch embeddings (+ MAE `decoder_pred`): the multispectral case (`--unfreeze_embed`). */
  unfreezeEmbed: boolean;
  /** Unfreeze the DINOv2 mask token (default false). */
  unfreezeMaskToken: boolean;
  /** MAE objective: LoRA rank on Q,V of every decoder block (ExPLoRA: 8); null = none (DINOv2, or encoder-only counts). */
  decoderRank: number | null;
  /** Further trainable patterns (objective heads, extra embeddings). Optional rules: a pattern matching nothing is allowed. */
  extraTrainable: readonly PathPattern[];
}

const RECIPE_KEYS: readonly (keyof ExploraRecipe)[] = [
  'family', 'unfrozen', 'rank', 'alpha', 'slices', 'loraProj', 'loraMlp', 'unfreezeNorms', 'unfreezeCls', 'unfreezeEmbed', 'unfreezeMaskToken',
  'decoderRank', 'extraTrainable',
];

/** Defaults per family (everything but U and r). */
export const EXPLORA_FAMILY_DEFAULTS: Record<ExploraFamily, Omit<ExploraRecipe, 'unfrozen' | 'rank'>> = {
  D: {
    family: 'D', alpha: 1, slices: ['q', 'v'], loraProj: false, loraMlp: false, unfreezeNorms: true, unfreezeCls: true, unfreezeEmbed: false,
    unfreezeMaskToken: false, decoderRank: null, extraTrainable: ['dino_head.*', 'ibot_head.*'],
  },
  M: {
    family: 'M', alpha: 1, slices: ['q', 'v'], loraProj: false, loraMlp: false, unfreezeNorms: true, unfreezeCls: true, unfreezeEmbed: false,
    unfreezeMaskToken: false, decoderRank: 8, extraTrainable: [],
  },
};

const NOTATION = /^([DM])-ExPLoRA-\[([^\]]*)\](?:-r(\d+))?$/;

function parseBlockRef(s: string, notation: string): BlockRef {
  const t = s.trim();
  if (/^[1-9]\d*$/.test(t)) return Number(t);
  if (t === 'L') return 'L';
  const m = /^L-([1-9]\d*)$/.exec(t);
  if (m) return `L-${Number(m[1])}`;
  throw new Error(`ExPLoRA notation '${notation}': block '${t}' is not a 1-based index, 'L' or 'L-k'`);
}

/**
 * Parse the paper's notation: `D-ExPLoRA-[L]-r64`, `M-ExPLoRA-[1,L]-r32`, `D-ExPLoRA-[1,L-1,L]-r64`, `D-ExPLoRA-[L]`.
 * @returns family, unfrozen blocks (1-based refs) and rank (null without `-r`).
 */
export function parseExploraNotation(s: string): Pick<ExploraRecipe, 'family' | 'unfrozen' | 'rank'> {
  const m = NOTATION.exec(s.trim());
  if (!m) {
    throw new Error(`unknown ExPLoRA notation '${s}': expected <D|M>-ExPLoRA-[blocks]-r<rank>, e.g. D-ExPLoRA-[L]-r64, M-ExPLoRA-[1,L]-r32, D-ExPLoRA-[1,L-1,L]-r64`);
  }
  const unfrozen = m[2].trim() === '' ? [] : m[2].split(',').map((b) => parseBlockRef(b, s));
  const rank = m[3] === undefined ? null : Number(m[3]);
  if (rank === 0) throw new Error(`ExPLoRA notation '${s}': rank must be ≥ 1`);
  return { family: m[1] as ExploraFamily, unfrozen, rank };
}

/** Print a recipe in the paper's notation. */
export function formatExploraNotation(r: Pick<ExploraRecipe, 'family' | 'unfrozen' | 'rank'>): string {
  return `${r.family}-ExPLoRA-[${r.unfrozen.map(String).join(',')}]${r.rank === null ? '' : `-r${r.rank}`}`;
}

/**
 * A full recipe from notation or a partial recipe, plus overrides (unknown keys rejected).
 * @example exploraRecipe('D-ExPLoRA-[L]-r64'); exploraRecipe('M-ExPLoRA-[1,L]-r32', {unfreezeEmbed: true})
 */
export function exploraRecipe(base: string | (Partial<ExploraRecipe> & Pick<ExploraRecipe, 'family' | 'unfrozen' | 'rank'>), overrides: Partial<ExploraRecipe> = {}): ExploraRecipe {
  const head = typeof base === 'string' ? parseExploraNotation(base) : base;
  checkKeys('ExploraRecipe', head, RECIPE_KEYS);
  checkKeys('ExploraRecipe overrides', overrides, RECIPE_KEYS);
  const fam = (overrides.family ?? head.family) as ExploraFamily;
  if (fam !== 'D' && fam !== 'M') throw new Error(`ExploraRecipe.family: expected 'D' (DINOv2) or 'M' (MAE), got '${String(fam)}'`);
  const r: ExploraRecipe = { ...EXPLORA_FAMILY_DEFAULTS[fam], ...head, ...overrides };
  if (r.rank !== null && (!Number.isInteger(r.rank) || r.rank <= 0)) throw new Error(`ExploraRecipe.rank: expected a positive integer or null, got ${fmtValue(r.rank)}`);
  if (r.decoderRank !== null && (!Number.isInteger(r.decoderRank) || r.decoderRank <= 0)) {
    throw new Error(`ExploraRecipe.decoderRank: expected a positive integer or null, got ${fmtValue(r.decoderRank)}`);
  }
  r.unfrozen.forEach((b) => parseBlockRef(String(b), formatExploraNotation(r)));
  return Object.freeze(r);
}

/** Resolve paper block refs (1-based, L = depth) to sorted, distinct 0-based indices; throws when out of range. */
export function resolveBlocks(refs: readonly BlockRef[], depth: number): number[] {
  const out = new Set<number>();
  for (const b of refs) {
    let oneBased: number;
    if (typeof b === 'number') oneBased = b;
    else if (b === 'L') oneBased = depth;
    else oneBased = depth - Number(b.slice(2));
    if (!Number.isInteger(oneBased) || oneBased < 1 || oneBased > depth) {
      throw new Error(`ExPLoRA: block '${b}' is outside 1..${depth} (the model has ${depth} blocks)`);
    }
    out.add(oneBased - 1);
  }
  return [...out].sort((a, b) => a - b);
}

/** Depth of an encoder from its shapes (number of `blocks.<i>.` indices). */
export function encoderDepth(shapes: ReadonlyMap<string, ShapeLike>): number {
  let d = 0;
  for (const p of shapes.keys()) {
    const m = /^blocks\.(\d+)\./.exec(p);
    if (m) d = Math.max(d, Number(m[1]) + 1);
  }
  if (d === 0) throw new Error('ExPLoRA: the encoder has no blocks.<i>.* parameters');
  return d;
}

/** The recipe as data for a model of `depth` blocks: the LoRA config (or null) and the trainability spec. */
export function exploraPlan(recipe: ExploraRecipe, depth: number, opts: { decoder?: boolean } = {}): { lora: LoraConfig | null; spec: TrainSpec; unfrozen: number[] } {
  const unfrozen = resolveBlocks(recipe.unfrozen, depth);
  const loraBlocks = Array.from({ length: depth }, (_, i) => i).filter((i) => !unfrozen.includes(i));
  const targets: LoraTarget[] = [];
  const useDecoder = opts.decoder ?? recipe.decoderRank !== null;
  if (recipe.rank !== null && loraBlocks.length > 0) {
    targets.push({ sites: /^blocks\.\d+\.attn\.qkv$/, kind: 'qkv', slices: recipe.slices, layers: loraBlocks, rank: recipe.rank });
    if (recipe.loraProj) targets.push({ sites: /^blocks\.\d+\.attn\.proj$/, layers: loraBlocks, rank: recipe.rank });
    if (recipe.loraMlp) targets.push({ sites: /^blocks\.\d+\.mlp\.fc[12]$/, layers: loraBlocks, rank: Math.max(1, Math.floor(recipe.rank / 4)) });
  }
  if (useDecoder && recipe.decoderRank !== null) {
    targets.push({ sites: /^decoder_blocks\.\d+\.attn\.qkv$/, kind: 'qkv', slices: recipe.slices, rank: recipe.decoderRank });
  }
  const lora = targets.length ? loraConfig({ rank: recipe.rank ?? recipe.decoderRank ?? 1, alpha: recipe.alpha, dropout: 0, init: 'kaiming', targets }) : null;
  const human = (i: number): string => (i === depth - 1 ? 'L' : i === 0 ? '1' : i >= depth - 3 ? `L-${depth - 1 - i}` : String(i + 1));
  const rules: TrainRule[] = [];
  if (lora) rules.push({ match: /(^|\.)lora_[AB]\./, train: true, group: `LoRA (${recipe.slices.join(',').toUpperCase()}) r${recipe.rank ?? '-'}${useDecoder && recipe.decoderRank ? ` / decoder r${recipe.decoderRank}` : ''}` });
  if (unfrozen.length) {
    rules.push({ match: new RegExp(`^blocks\\.(${unfrozen.join('|')})\\.`), train: true, group: `unfrozen blocks [${unfrozen.map(human).join(',')}] (0-based ${unfrozen.join(',')})` });
  }
  if (recipe.unfreezeNorms) rules.push({ match: /(^|\.)[A-Za-z_]*norm\d*\.(weight|bias)$/, train: true, group: 'LayerNorms' });
  if (recipe.unfreezeCls) rules.push({ match: /^cls_token$/, train: true, group: 'cls token' });
  rules.push({ match: /^register_tokens$/, train: true, group: 'register tokens', optional: true });
  if (recipe.unfreezeEmbed) {
    rules.push({ match: /(^|\.)patch_embed(\.|$)/, train: true, group: 'patch embeddings' });
    rules.push({ match: /^decoder_pred(\.|$)/, train: true, group: 'decoder_pred', optional: true });
  }
  if (recipe.unfreezeMaskToken) rules.push({ match: /^mask_token$/, train: true, group: 'mask token' });
  if (recipe.extraTrainable.length) rules.push({ match: recipe.extraTrainable, train: true, group: 'objective extras', optional: true });
  rules.push(FREEZE_REST);
  return { lora, spec: rules, unfrozen };
}

/** What `applyExplora` needs: the encoder tree (e.g. `vit.params`), the MAE decoder tree, and objective heads. */
export interface ExploraParts {
  encoder: ParamTree;
  /** MAE decoder tree (paths `decoder_blocks.i.*`, `decoder_norm`, …), required when the recipe has decoderRank. */
  decoder?: ParamTree;
  /** Heads trained from scratch (DINO / iBOT heads, paths like `dino_head.*`); not counted as encoder. */
  heads?: ParamTree | readonly ParamTree[];
}

export interface ExploraSetup {
  recipe: ExploraRecipe;
  notation: string;
  /** LoRA adapters (null for a no-LoRA recipe like D-ExPLoRA-[L]). */
  lora: LoraAdapters | null;
  /** The trainable set (fixed order), the frozen rest and the summary. */
  selection: TrainSelection;
  spec: TrainSpec;
  /** 0-based unfrozen block indices. */
  unfrozen: number[];
  /** Free the adapters (call before re-running a notebook cell that builds a new setup). */
  dispose: () => void;
}

function partsList(parts: ExploraParts): ParamTree[] {
  const heads = parts.heads === undefined ? [] : Array.isArray(parts.heads) ? (parts.heads as ParamTree[]) : [parts.heads as ParamTree];
  return [parts.encoder, ...(parts.decoder ? [parts.decoder] : []), ...heads];
}

/**
 * Apply a recipe: create the LoRA adapters on the other blocks (and the MAE decoder), resolve the trainable set
 * across encoder + decoder + adapters + heads, set every variable's `trainable` flag.
 * @example const ex = applyExplora({encoder: vit.params}, 'D-ExPLoRA-[L]-r64'); console.log(formatTrainSummary(ex.selection.summary));
 */
export function applyExplora(parts: ExploraParts, recipe: string | ExploraRecipe, opts: { seed?: number } & ClassifyOptions = {}): ExploraSetup {
  const r = typeof recipe === 'string' ? exploraRecipe(recipe) : exploraRecipe(recipe);
  if (r.decoderRank !== null && !parts.decoder) {
    throw new Error(`${formatExploraNotation(r)}: the recipe puts LoRA r${r.decoderRank} on the MAE decoder; pass parts.decoder (or set decoderRank: null for the encoder alone)`);
  }
  const depth = encoderDepth(shapeMap(parts.encoder));
  const { lora: loraCfg, spec, unfrozen } = exploraPlan(r, depth);
  const trees = partsList(parts);
  const lora = loraCfg ? createLora(parts.decoder ? [parts.encoder, parts.decoder] : parts.encoder, loraCfg, { seed: opts.seed ?? 0 }) : null;
  try {
    // Encoder = the encoder tree and the adapters on its sites (decoder, heads and their adapters are not counted).
    const enc = new Set(shapeMap(parts.encoder).keys());
    if (lora) for (const m of lora.modules.values()) if (enc.has(m.weightPath)) for (const s of m.slices) enc.add(s.pathA).add(s.pathB);
    const selection = selectTrainable(lora ? [...trees, lora.params] : trees, spec, { isEncoder: (p) => enc.has(p), ...opts });
    return { recipe: r, notation: formatExploraNotation(r), lora, selection, spec, unfrozen, dispose: () => lora && disposeLora(lora) };
  } catch (e) {
    if (lora) disposeLora(lora);
    throw e;
  }
}

/**
 * Count what a recipe would train without allocating anything (shapes from `vitShapes`, or any shape map).
 * @example countExplora(vitShapes('vit_large_patch14_dinov2'), 'D-ExPLoRA-[L]-r64').trainableEncoder // 18,724,864
 */
export function countExplora(
  encoder: ReadonlyMap<string, ShapeLike>,
  recipe: string | ExploraRecipe,
  opts: { decoder?: ReadonlyMap<string, ShapeLike> } & ClassifyOptions = {},
): TrainSummary & { lora: LoraModulePlan[] } {
  const r = typeof recipe === 'string' ? exploraRecipe(recipe) : exploraRecipe(recipe);
  const depth = encoderDepth(encoder);
  const { lora: loraCfg, spec } = exploraPlan(r, depth, { decoder: opts.decoder !== undefined });
  const base = opts.decoder ? [encoder, opts.decoder] : [encoder];
  const plan = loraCfg ? planLora(base, loraCfg) : [];
  const entries = shapeMap(base);
  const enc = new Set(encoder.keys());
  for (const m of plan) {
    for (const s of m.slices) {
      entries.set(s.pathA, { shape: [m.din, m.rank] });
      entries.set(s.pathB, { shape: [m.rank, s.width] });
      if (enc.has(m.weightPath)) enc.add(s.pathA).add(s.pathB);
    }
  }
  return { ...classifyParams(entries, spec, { isEncoder: (p) => enc.has(p), ...opts }).summary, lora: plan };
}
