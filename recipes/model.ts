/**
 * The model half of a recipe: build the ViT / MAE / SatMAE group model from its preset and overrides, then load its
 * weights (fresh init, a kit asset, a checkpoint file, a timm file). A kit asset's recorded model is checked against the
 * recipe's before anything is loaded, so a recipe never starts from a backbone made with other settings by accident.
 */
import { existsSync } from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { Vit, createVit, disposeVit } from '../lib/vit/params';
import { VitConfig, VitPresetName, vitConfig } from '../lib/vit/config';
import { DecoderConfig, decoderConfig } from '../lib/mae/decoder';
import { Mae, createMae, disposeMae, maeVariables } from '../lib/mae/mae';
import { SatMaeGroup, createSatMaeGroup, disposeSatMaeGroup, satMaeGroupVariables } from '../lib/mae/satmae-group';
import { SatMaeTemporal, createSatMaeTemporal, disposeSatMaeTemporal, satMaeTemporalVariables } from '../lib/mae/satmae-temporal';
import { LoadOptions, LoadReport, loadCheckpoint } from '../lib/io/checkpoint';
import { readSafetensors } from '../lib/io/safetensors';
import { loadTimmCheckpoint } from '../lib/io/timm';
import { flattenTree } from '../lib/tree';
import { fromRoot } from '../lib/report/paths';
import { RecipeError } from './schema';
import type { Recipe } from './recipe';
import { jsonDiff } from './source-vit';

/** A built model: what the recipe's objective trains. */
export type BuiltModel =
  | { kind: 'vit'; vit: Vit }
  | { kind: 'mae'; mae: Mae }
  | { kind: 'satmae-group'; model: SatMaeGroup }
  | { kind: 'satmae-temporal'; model: SatMaeTemporal };

/** Every variable of a built model by path (checkpoint keys). */
export function modelVariables(m: BuiltModel): Map<string, tf.Variable> {
  switch (m.kind) {
    case 'vit':
      return flattenTree(m.vit.params);
    case 'mae':
      return maeVariables(m.mae);
    case 'satmae-group':
      return satMaeGroupVariables(m.model);
    case 'satmae-temporal':
      return satMaeTemporalVariables(m.model);
    default: {
      const never: never = m;
      throw new Error(`modelVariables: unknown model ${JSON.stringify(never)}`);
    }
  }
}

/** The ViT encoder of a built model (null for a SatMAE group model). */
export function modelEncoder(m: BuiltModel): Vit | null {
  return m.kind === 'vit' ? m.vit : m.kind === 'mae' ? m.mae.encoder : null;
}

export function disposeModel(m: BuiltModel): void {
  if (m.kind === 'vit') disposeVit(m.vit);
  else if (m.kind === 'mae') disposeMae(m.mae);
  else if (m.kind === 'satmae-temporal') disposeSatMaeTemporal(m.model);
  else disposeSatMaeGroup(m.model);
}

/** File of a kit asset (`notebooks/assets/<name>.safetensors`). */
export function assetFile(name: string): string {
  return fromRoot('notebooks', 'assets', `${name}.safetensors`);
}

/** Metadata (`__metadata__.vitpeft`) of a safetensors file, or {}. */
function fileMeta(file: string): Record<string, unknown> {
  const raw = readSafetensors(file).metadata.vitpeft;
  if (!raw) return {};
  try {
    return JSON.parse(raw) as Record<string, unknown>;
  } catch {
    throw new Error(`${file}: __metadata__.vitpeft is not valid JSON`);
  }
}

/** Config keys a recipe may change on top of a pre-trained backbone (new head, its own regularisation). */
const FINETUNE_KEYS = new Set(['numClasses', 'dropPathRate', 'dropPathMode', 'pool']);

/** Why a kit asset does not fit the recipe's model (null when it fits or records no model). */
function assetMismatch(r: Recipe, meta: Record<string, unknown>, file: string): string | null {
  const m = r.model;
  if (meta.kind === 'source-vit' && m.kind === 'vit') {
    // The recorded spec resolved with today's presets (a kit default that does not change the weights, such as the
    // position-embedding resize mode, does not make an asset stale).
    const spec = meta.spec as { preset: VitPresetName; overrides: Partial<VitConfig> } | undefined;
    const stored = spec ? vitConfig(spec.preset, spec.overrides) : (meta.vitConfig as VitConfig);
    const want = vitConfig(m.preset, m.overrides);
    const diff = jsonDiff(stored, want).filter((d) => !FINETUNE_KEYS.has(d.split(':')[0]));
    return diff.length ? `${file} holds a backbone made with other settings (stored ≠ recipe): ${diff.join('; ')}` : null;
  }
  if (meta.kind === 'vitpeft-source-mae/1' && m.kind === 'mae') {
    const stored = meta.model as { preset: VitPresetName; encoder: Partial<VitConfig>; decoder: Partial<DecoderConfig> };
    const a = { encoder: vitConfig(stored.preset, stored.encoder), decoder: decoderConfig(stored.decoder) };
    const b = { encoder: vitConfig(m.preset, m.encoder), decoder: decoderConfig(m.decoder) };
    const diff = jsonDiff(a, b);
    return diff.length ? `${file} holds an MAE made with other settings (stored ≠ recipe): ${diff.join('; ')}` : null;
  }
  if ((meta.kind === 'source-vit' && m.kind !== 'vit') || (meta.kind === 'vitpeft-source-mae/1' && m.kind !== 'mae')) {
    return `${file} is a '${String(meta.kind)}' asset, which does not fit model.kind '${m.kind}'`;
  }
  return null;
}

/** Why a recipe's kit asset cannot be used (missing, or recorded for another model), or null when it fits. */
export function assetProblem(r: Recipe): string | null {
  if (r.weights.kind !== 'asset') return null;
  const file = assetFile(r.weights.name);
  if (!existsSync(file)) return `${file} not found`;
  return assetMismatch(r, fileMeta(file), file);
}

/** What `loadWeights` loaded (for the run record and notebook tables). */
export interface WeightsOrigin {
  kind: Recipe['weights']['kind'];
  file: string | null;
  tensors: number;
  missing: string[];
  /** The asset's record (steps, metrics, note …) when the file carries one. */
  record: Record<string, unknown> | null;
}

/** Load options for the head policy (a new head: the file's head and pre-logits are skipped, the seeded init kept). */
function headOptions(head: 'keep' | 'reinit'): LoadOptions {
  return head === 'reinit' ? { ignore: /^(head|pre_logits)\./, allowMissing: /^head\./ } : {};
}

function checkExists(file: string, at: string): void {
  if (!existsSync(file)) throw new RecipeError(at, `no such file: ${file}`);
}

/**
 * Build the recipe's model. Parameters that a weights file will overwrite are not initialised (`skipInit`), except
 * when the head is re-initialised or the file may lack parameters (`allowMissing`): those keep their seeded init, and
 * the result is the same as initialising everything.
 */
export function buildModel(r: Recipe): BuiltModel {
  const w = r.weights;
  const skipInit = w.kind !== 'init' && w.head === 'keep' && !(w.kind === 'checkpoint' && w.allowMissing !== null);
  const m = r.model;
  switch (m.kind) {
    case 'vit':
      return { kind: 'vit', vit: createVit(m.preset, m.overrides, { seed: r.seed, skipInit }) };
    case 'mae': {
      const o = r.objective.kind === 'mae' ? r.objective : { maskRatio: 0.75, normPixLoss: true };
      return {
        kind: 'mae',
        mae: createMae(m.preset, { encoder: { ...m.encoder }, decoder: { ...m.decoder }, maskRatio: o.maskRatio, normPixLoss: o.normPixLoss, seed: r.seed, skipInit }),
      };
    }
    case 'satmae-group': {
      const o = r.objective.kind === 'mae' ? { maskRatio: r.objective.maskRatio, normPixLoss: r.objective.normPixLoss } : {};
      return { kind: 'satmae-group', model: createSatMaeGroup(m.preset, { ...m.overrides, ...o }, { seed: r.seed, skipInit }) };
    }
    case 'satmae-temporal': {
      const o = r.objective.kind === 'mae' ? { maskRatio: r.objective.maskRatio, normPixLoss: r.objective.normPixLoss } : {};
      return { kind: 'satmae-temporal', model: createSatMaeTemporal(m.preset, { ...m.overrides, ...o }, { seed: r.seed, skipInit }) };
    }
    default: {
      const never: never = m;
      throw new Error(`buildModel: unknown model ${JSON.stringify(never)}`);
    }
  }
}

/** Load the recipe's weights into a built model (all-or-nothing: names and shapes are checked before assigning). */
export function loadWeights(r: Recipe, model: BuiltModel): WeightsOrigin {
  const w = r.weights;
  const into = { params: modelVariables(model) };
  let rep: LoadReport;
  let file: string;
  let record: Record<string, unknown> | null = null;
  switch (w.kind) {
    case 'init':
      return { kind: 'init', file: null, tensors: 0, missing: [], record: null };
    case 'asset': {
      file = assetFile(w.name);
      checkExists(file, 'recipe.weights.name');
      const meta = fileMeta(file);
      const why = assetMismatch(r, meta, file);
      if (why) throw new RecipeError('recipe.weights', why);
      record = Object.keys(meta).length ? meta : null;
      rep = loadCheckpoint(file, into, headOptions(w.head));
      break;
    }
    case 'checkpoint': {
      file = w.path;
      checkExists(file, 'recipe.weights.path');
      const h = headOptions(w.head);
      const either = (a: string | null, b: RegExp | undefined): RegExp | undefined =>
        a === null ? b : new RegExp(b ? `(?:${a})|(?:${b.source})` : a);
      rep = loadCheckpoint(file, into, { ignore: either(w.ignore, h.ignore), allowMissing: either(w.allowMissing, h.allowMissing), stripPrefixes: w.stripPrefixes });
      break;
    }
    case 'timm': {
      file = w.path;
      checkExists(file, 'recipe.weights.path');
      if (model.kind !== 'vit') throw new RecipeError('recipe.weights.kind', `timm files hold ViTs; model.kind is '${model.kind}'`);
      rep = loadTimmCheckpoint(file, model.vit, headOptions(w.head));
      break;
    }
    default: {
      const never: never = w;
      throw new Error(`loadWeights: unknown weights ${JSON.stringify(never)}`);
    }
  }
  return { kind: w.kind, file: path.resolve(file), tensors: rep.loaded.length, missing: rep.missing, record };
}
