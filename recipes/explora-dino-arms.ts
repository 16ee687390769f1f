/**
 * Notebook 03's D-ExPLoRA arms as recipes (issue 15): every trained method of a `DinoMiniConfig` — ExPLoRA [L]-r,
 * unfreeze-only [L], [1,L-1,L]-r, LoRA-only, from scratch, full continued pre-training — as a versioned recipe that
 * `runRecipe` turns into a run folder (resolved recipe, seed, environment, metrics, evaluations, checkpoints; `resumeRun`
 * continues it bit for bit). The recipe trains exactly the parameters and schedule of the miniature's `runDinoMethod`
 * (the same D-ExPLoRA config through `dinoMiniRunConfig`); the frozen source is every source-initialised arm's step-0
 * evaluation. The probe is the recipe layer's (DINOv2 linear-probe grid + kNN) on the miniature's evaluation subsets.
 */
import { DinoMiniConfig, MiniMethod, dinoMiniRunConfig, fullDino } from './miniature';
import { exploraRecipe } from '../lib/peft/explora';
import { Recipe, ProbeSpec, SplitSet, recipe } from './recipe';
import { dExploraRecipe, probeEval, DINOV2_PROBE } from './presets';
import { withSubset } from './data';

/** The miniature's satellite images at its embedded options (train split: extended pre-training, unlabelled). */
function armSource(c: DinoMiniConfig): Extract<Recipe['data']['source'], { kind: 'embedded' }> {
  const e = c.data.embedded;
  const r = (e.satelliteRender ?? {}) as { composite?: string; nuisance?: number };
  if ((r.composite ?? 'rgb') !== 'rgb' || (r.nuisance ?? 1) !== 1) {
    throw new Error(`dinoArmRecipes: the recipe layer's embedded source renders the default satellite set; data.embedded.satelliteRender ${JSON.stringify(r)} is not expressible`);
  }
  return { kind: 'embedded', domain: 'satellite-rgb', seed: e.seed ?? 0, size: e.size ?? 32, satellitePerClass: e.satellitePerClass ?? 100, naturalPerClass: e.naturalPerClass ?? 100 };
}

/** Training images of the embedded satellite train split at `satellitePerClass` (60 % of each class). */
function trainImages(c: DinoMiniConfig): number {
  const n = c.data.pretrainImages;
  return n > 0 ? n : 10 * Math.round(0.6 * (c.data.embedded.satellitePerClass ?? 100));
}

/**
 * The recipe of one arm (`method`, not 'source') of a miniature for one seed. `probe` defaults to DINOv2's grid at 20
 * iterations per epoch; the evaluations run at step 0 (the source, or the fresh init for scratch), `evalAt` and the last
 * step. `checkpointEvery` (default: the run's end only) sets resumable checkpoints.
 * @example runRecipe(dinoArmRecipe(DINO_MINI, DINO_MINI.methods[1], 0), { root }) // ExPLoRA [L]-r8, seed 0
 */
export function dinoArmRecipe(c: DinoMiniConfig, method: MiniMethod, seed: number, o: { probe?: ProbeSpec; checkpointEvery?: number } = {}): Recipe {
  if (method.kind === 'source') throw new Error(`dinoArmRecipe(${method.name}): the frozen source is the step-0 evaluation of every source-initialised arm, not a run`);
  const depth = (c.model.overrides.depth as number | undefined) ?? 12;
  const P = c.pretrain;
  const ipe = Math.max(1, Math.floor(trainImages(c) / P.batch));
  const rec =
    method.kind === 'scratch' || method.kind === 'full'
      ? fullDino(depth)
      : exploraRecipe({ family: 'D', unfrozen: [...method.unfrozen], rank: method.rank }, method.alpha === undefined ? {} : { alpha: method.alpha });
  const cfg = dinoMiniRunConfig(c, rec, ipe, method.kind === 'scratch' ? c.scratch.baseLr : P.baseLr);
  const norm = { name: 'normalize', stats: 'imagenet' } as const;
  const sub = (set: SplitSet, n: number, key: string): SplitSet => (n > 0 ? withSubset(set, n, { key, sorted: true }) : set);
  const ev = probeEval(norm, { train: 'train', val: 'val', test: 'test' }, o.probe ?? { ...DINOV2_PROBE, itersPerEpoch: 20 }, { steps: [...new Set([0, ...c.evalAt])].filter((s) => s < P.steps) });
  const e = c.data.evalImages;
  const train: SplitSet = { splits: [{ split: 'train', subset: null }], transform: { name: 'dino-multicrop', blurMode: 'effective', rgb: true } };
  const base = dExploraRecipe(cfg, {
    name: `nb03-${method.name.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/-+$/, '')}-seed${seed}`,
    description: `notebook 03 arm '${method.name}' (${method.kind === 'recipe' ? 'D-ExPLoRA recipe' : method.kind}) of the D-ExPLoRA miniature, seed ${seed}`,
    seed,
    data: { source: armSource(c), train: sub(train, c.data.pretrainImages, 'pretrain') },
    weights:
      method.kind === 'scratch'
        ? { kind: 'init' }
        : { kind: 'checkpoint', path: c.source.checkpoint, head: 'keep', stripPrefixes: [], ignore: '^(dino_head|ibot_head)\\.', allowMissing: null },
    eval: { ...ev, train: sub(ev.train, e.train, 'probe-train'), val: sub(ev.val, e.val, 'probe-val'), test: sub(ev.test, e.test, 'probe-test') },
  });
  return recipe({ ...base, steps: P.steps, epochs: null, epochLength: ipe, checkpointEvery: o.checkpointEvery ?? 0, tags: { notebook: '03-explora-dino', arm: method.name } });
}

/** The recipes of every trained arm of a miniature for one seed, by method name. */
export function dinoArmRecipes(c: DinoMiniConfig, seed: number, o: { probe?: ProbeSpec; checkpointEvery?: number } = {}): Record<string, Recipe> {
  const out: Record<string, Recipe> = {};
  for (const m of c.methods) if (m.kind !== 'source') out[m.name] = dinoArmRecipe(c, m, seed, o);
  return out;
}
