/**
 * Notebook 01 (M-ExPLoRA) as calls: the multi-seed miniature of each scale (recipes/miniature.ts over
 * `MAE_MINI_SMOKE` / `MAE_MINI_CI`), its run and its tables; the objective-neutral tables, Fig. 3, claims and forest
 * plot are recipes/miniature-notebook.ts (shared with notebook 03).
 */
import * as path from 'path';
import { runsRoot } from '../lib/report/runs';
import { MaeMiniConfig, MiniRecord, runMiniature } from './miniature';
import { MAE_MINI_CI, MAE_MINI_SMOKE } from './miniature-presets';
import { MAE_MINI_WORKSTATION, SOURCE_MAE_WORKSTATION_ASSET, WORKSTATION_SOURCE_MAE, requireSourceMaeAsset } from './workstation-presets';

export type MaeNotebookScale = 'ci' | 'smoke' | 'workstation' | 'paper';

/** What a scale of notebook 01 runs in its multi-seed comparison. */
export interface MaeNotebookSettings {
  scale: MaeNotebookScale;
  config: MaeMiniConfig;
  seeds: number[];
  /** Methods run on fewer seeds (from scratch: one seed, its gap being far larger than the seed noise). */
  seedsOf: Record<string, number[]>;
  /** One line: model, data, steps, seeds (shown beside the paper's numbers). */
  describe: string;
  /** Where the notebook writes its claims (`<runs root>/nb01-explora-mae-<scale>`; VITPEFT_RUNS_DIR moves it). */
  outDir: string;
}

/**
 * The settings of a scale: `ci` = `MAE_MINI_CI` (mechanics only), `smoke` = `MAE_MINI_SMOKE`, `workstation` =
 * `MAE_MINI_WORKSTATION` (ViT-S/8 at 64 px, rank 24, 600 steps of batch 64; recipes/workstation-presets.ts; planned,
 * not measured) — which stops here, naming the file and `tools/make-source-mae.ts --spec workstation`, when its source
 * MAE is missing (`exists`: the file check, default `fs.existsSync`); `paper` runs the smoke miniature (its own run is
 * the recipe walkthrough's scale).
 */
export function maeNotebookSettings(scale: MaeNotebookScale, o: { seeds?: number[]; scratchSeeds?: number[]; exists?: (file: string) => boolean } = {}): MaeNotebookSettings {
  const seeds = o.seeds ?? [0, 1, 2];
  if (scale === 'workstation') requireSourceMaeAsset(SOURCE_MAE_WORKSTATION_ASSET, o.exists);
  const config = scale === 'ci' ? MAE_MINI_CI : scale === 'workstation' ? MAE_MINI_WORKSTATION : MAE_MINI_SMOKE;
  const sourceSteps = scale === 'workstation' ? (WORKSTATION_SOURCE_MAE.steps as number).toLocaleString('en') : '1,200';
  const m = config.model.encoder as { embedDim: number; depth: number; patchSize: number; imgSize: number };
  const e = config.data.evalImages;
  const r = (config.data.embedded.satelliteRender ?? {}) as { composite?: string; nuisance?: number };
  const describe =
    `${scale}: M-ExPLoRA miniature, ViT d${m.embedDim}×${m.depth}, patch ${m.patchSize}, ${m.imgSize} px, source MAE ${sourceSteps} steps on the natural domain; ` +
    `target satellite ${r.composite ?? 'rgb'} (nuisance ${r.nuisance ?? 1}); ${config.pretrain.steps} steps of batch ${config.pretrain.batch}; ` +
    `probe ${e.train || 'all'}/${e.val || 'all'}/${e.test || 'all'} images; seeds ${seeds.join(',')} ` +
    `(paper: ViT-L/16, 224 px, fMoW-RGB 363k images, hundreds of epochs of batch 1024)`;
  return { scale, config, seeds, seedsOf: { scratch: o.scratchSeeds ?? [seeds[0]] }, describe, outDir: path.join(runsRoot(), `nb01-explora-mae-${scale}`) };
}

/** Run the miniature of the settings (every method × seed; scratch on its seeds), reporting each evaluation to `onRecord`. */
export async function runMaeNotebook(s: MaeNotebookSettings, onRecord?: (r: MiniRecord) => void): Promise<MiniRecord[]> {
  return runMiniature(s.config, s.seeds, { onRecord, seedsOf: s.seedsOf });
}
