/**
 * The D-ExPLoRA ablation at the paper's scale, counted from shapes (nothing is allocated): every configuration the
 * paper's ablation discusses (issue 15 list) as an ExPLoRA recipe on DINOv2 ViT-L/14 at 224 px, with its exact
 * trainable encoder parameters beside the paper's reported count and linear-probe top-1 (fMoW-RGB) where the paper
 * gives one. Counts follow the paper's convention: encoder parameters only (DINO / iBOT heads are not counted), as a
 * share of 303.3M (the ViT-L/16 encoder of the SatMAE / ScaleMAE baselines the paper compares against).
 */
import { vitShapes } from '../lib/peft/shapes';
import { countExplora, exploraRecipe, ExploraRecipe, formatExploraNotation } from '../lib/peft/explora';
import type { VitPresetName } from '../lib/vit/config';

/** The denominator of the paper's "% of parameters": the ViT-L/16 encoder (303,301,632). */
export const EXPLORA_PCT_DENOMINATOR = 303_301_632;

/** One ablation configuration: what the paper varies, the recipe of ours, and the paper's numbers (null = not reported). */
export interface DinoAblationSpec {
  configuration: string;
  /** null = the frozen source (nothing trains); 'full' = every encoder parameter trains (pre-training from scratch). */
  recipe: ExploraRecipe | 'full' | null;
  /** The paper's trainable-parameter count as printed (e.g. '18.7M'), or null. */
  paperParams: string | null;
  /** The paper's fMoW-RGB linear-probe top-1 (%), or null. */
  paperLp: number | null;
  /** The paper's qualitative statement where it gives no number. */
  paperNote: string;
}

const D = (notation: string, o: Partial<ExploraRecipe> = {}): ExploraRecipe => exploraRecipe(notation, o);

/**
 * The ablation list (paper: ExPLoRA's ablation table, linear probe on fMoW-RGB with D-ExPLoRA ViT-L; qualitative
 * findings from its text). Ranks 8 / 32 / 64 and U = [1] have no printed number in the sources we have.
 */
export function dinoAblationSpecs(): DinoAblationSpec[] {
  return [
    { configuration: 'DINOv2 frozen (source model)', recipe: null, paperParams: '-', paperLp: 69.0, paperNote: '' },
    { configuration: 'full pre-training from scratch', recipe: 'full', paperParams: '303.3M', paperLp: 54.29, paperNote: '1200 GPU-h' },
    { configuration: 'unfreeze [L], no LoRA', recipe: D('D-ExPLoRA-[L]'), paperParams: '12.7M', paperLp: 74.83, paperNote: '90 GPU-h' },
    { configuration: 'unfreeze [L] + LoRA-r64 Q,V (ExPLoRA)', recipe: D('D-ExPLoRA-[L]-r64'), paperParams: '18.7M', paperLp: 77.48, paperNote: '100 GPU-h' },
    { configuration: 'unfreeze [1,L-1,L] + LoRA-r64 Q,V', recipe: D('D-ExPLoRA-[1,L-1,L]-r64'), paperParams: '43.4M', paperLp: 78.04, paperNote: '180 GPU-h' },
    {
      configuration: 'unfreeze [L] + LoRA-r64 on all matrices (Q,K,V, proj; MLP at r/4)',
      recipe: D('D-ExPLoRA-[L]-r64', { slices: ['q', 'k', 'v'], loraProj: true, loraMlp: true }),
      paperParams: null,
      paperLp: null,
      paperNote: 'worse than Q,V only',
    },
    { configuration: 'LoRA-r64 Q,V only, no unfrozen block', recipe: D('D-ExPLoRA-[]-r64'), paperParams: null, paperLp: null, paperNote: 'worse than ExPLoRA' },
    { configuration: 'unfreeze [1] + LoRA-r64 Q,V (U = first block)', recipe: D('D-ExPLoRA-[1]-r64'), paperParams: null, paperLp: null, paperNote: 'worse than [L]' },
    { configuration: 'unfreeze [L] + LoRA-r64 Q,V, norms frozen', recipe: D('D-ExPLoRA-[L]-r64', { unfreezeNorms: false }), paperParams: null, paperLp: null, paperNote: '' },
    { configuration: 'unfreeze [L] + LoRA-r8 Q,V', recipe: D('D-ExPLoRA-[L]-r8'), paperParams: null, paperLp: null, paperNote: '' },
    { configuration: 'unfreeze [L] + LoRA-r32 Q,V', recipe: D('D-ExPLoRA-[L]-r32'), paperParams: null, paperLp: null, paperNote: '' },
  ];
}

/** One row of the count table. */
export interface DinoAblationCountRow {
  configuration: string;
  notation: string;
  /** Trainable encoder parameters, exact (from shapes). */
  'ours params': number;
  /** ours / 303.3M · 100. */
  'ours % of 303.3M': number;
  'paper params': string;
  'paper LP top-1': number | null;
  'paper note': string;
}

/**
 * The ablation's trainable counts for a DINOv2 backbone (default: the paper's ViT-L/14 at 224 px), shape-only.
 * @example dinoAblationCountRows()[3]['ours params'] // 18,724,864 (D-ExPLoRA-[L]-r64, the paper's 18.7M)
 */
export function dinoAblationCountRows(o: { preset?: VitPresetName; imgSize?: number; specs?: DinoAblationSpec[] } = {}): DinoAblationCountRow[] {
  const shapes = vitShapes(o.preset ?? 'vit_large_patch14_dinov2', { imgSize: o.imgSize ?? 224 });
  let all = 0;
  for (const s of shapes.values()) all += s.shape.reduce((a, b) => a * b, 1);
  return (o.specs ?? dinoAblationSpecs()).map((s) => {
    const n = s.recipe === null ? 0 : s.recipe === 'full' ? all : countExplora(shapes, s.recipe).trainableEncoder;
    return {
      configuration: s.configuration,
      notation: s.recipe === null ? '-' : s.recipe === 'full' ? 'all parameters' : formatExploraNotation(s.recipe),
      'ours params': n,
      'ours % of 303.3M': +((100 * n) / EXPLORA_PCT_DENOMINATOR).toFixed(2),
      'paper params': s.paperParams ?? '-',
      'paper LP top-1': s.paperLp,
      'paper note': s.paperNote,
    };
  });
}
