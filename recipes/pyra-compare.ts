/**
 * Notebook 02's experiment as recipes: LoRA, ToMe + LoRA and PYRA at low and high compression on a large model, and
 * LoRA on a smaller model of about the high-compression throughput — the paper's "adverse compression" claim and
 * PYRA's recovery, in miniature. From one recipe (LoRA on the large model) `pyraComparison` derives the six runs; the
 * rest measures and reports them: token counts and merge maps, MACs (the paper's reproduced), measured throughput,
 * identity at initialisation, accuracy vs throughput with the paper's averages beside ours, parameter counts.
 */
import * as tf from '@tensorflow/tfjs';
import { mkdirSync } from 'fs';
import * as path from 'path';
import { Vit, numPatches } from '../lib/vit/params';
import { VitConfig, VitPresetName, imgHW, vitConfig } from '../lib/vit/config';
import { VitHooks, vitForward } from '../lib/vit/forward';
import { encoderParamCount } from '../lib/vit/params';
import { tokenCounts, PYRA_SCHEDULES } from '../lib/tome/schedule';
import { tomeHooks } from '../lib/tome/hooks';
import { vitMacs } from '../lib/tome/flops';
import { mergeGroups } from '../lib/tome/vis';
import { measureModelThroughput, ThroughputRecord } from '../lib/tome/throughput';
import { Image, batchToImages, segmentOverlay, upscale, ImageCell } from '../lib/report/image';
import { PlotlyFigure, lineFigure, scatterFigure } from '../lib/report/plot';
import { RunRecord } from '../lib/report/runs';
import { BackendReport } from '../lib/backend';
import { IMAGENET_STATS } from '../data-loaders/transforms';
import { labelsOf } from '../data-loaders/dataset';
import { Recipe, recipe } from './recipe';
import { RecipeSession, prepareRecipe } from './session';
import { RunOptions, RunResult, runRecipe } from './run';
import { decodeImages, firstOfEachClass, openSource, splitSetData } from './data';
import { assetProblem } from './model';
import { pyraParamReport, PyraPresetName } from './pyra-presets';
import { pyraRecipe } from './presets';
import { SOURCE_VIT_SPECS, SourceVitName, SourceVitSpec, saveSourceVit } from './source-vit';
import { SupervisedResult } from './supervised';

export const PYRA_METHODS = ['lora', 'tome-low', 'tome-high', 'pyra-low', 'pyra-high', 'small-lora'] as const;
export type PyraRunName = (typeof PYRA_METHODS)[number];

export const PYRA_METHOD_LABEL: Record<PyraRunName, string> = {
  lora: 'LoRA (unmerged)',
  'tome-low': 'ToMe + LoRA low',
  'tome-high': 'ToMe + LoRA high',
  'pyra-low': 'PYRA low',
  'pyra-high': 'PYRA high',
  'small-lora': 'smaller-model LoRA',
};

/** One experiment: a large model (its LoRA recipe), its low / high merge schedules and the smaller model. */
export interface PyraExperiment {
  name: string;
  /** LoRA on the large model (adapters kind 'pyra', method 'lora'): every run is derived from it. */
  main: { label: string; recipe: Recipe };
  /** The smaller model: its ViT, weights and LoRA rank (same data, budget and recipe otherwise). */
  small: { label: string; model: Extract<Recipe['model'], { kind: 'vit' }>; weights: Recipe['weights']; loraRank: number };
  low: number[];
  high: number[];
}

/** The six runs of an experiment, named `<prefix>-<method>` (default prefix 'tome-pyra'; `tags` added to each). */
export function pyraComparison(e: PyraExperiment, o: { prefix?: string; tags?: Recipe['tags'] } = {}): Record<PyraRunName, Recipe> {
  const prefix = o.prefix ?? 'tome-pyra';
  const base = recipe({ ...e.main.recipe, tags: { ...e.main.recipe.tags, ...o.tags } });
  const a = base.adapters;
  if (a.kind !== 'pyra' || a.method !== 'lora') throw new Error(`pyraComparison(${e.name}): the main recipe must be LoRA in PYRA's form (adapters.kind 'pyra', method 'lora')`);
  const make = (method: PyraRunName): Recipe => {
    const tags = { ...base.tags, experiment: e.name, method, model: method === 'small-lora' ? e.small.label : e.main.label };
    const name = `${prefix}-${method}`;
    if (method === 'lora') return recipe({ ...base, name, tags });
    if (method === 'small-lora') {
      return recipe({ ...base, name, tags, model: e.small.model, weights: e.small.weights, adapters: { ...a, backbone: e.small.model.preset, loraRank: e.small.loraRank } });
    }
    const [kind, level] = method.split('-') as ['tome' | 'pyra', 'low' | 'high'];
    return recipe({ ...base, name, tags, adapters: { ...a, method: kind, schedule: level === 'low' ? e.low : e.high } });
  };
  return Object.fromEntries(PYRA_METHODS.map((m) => [m, make(m)])) as Record<PyraRunName, Recipe>;
}

/** The supervised pre-training of a source ViT spec (recipes/source-vit.ts) as a recipe (`budget` shortens it). */
export function sourceVitRecipe(s: SourceVitName | SourceVitSpec, budget: { steps?: number; batch?: number } = {}): Recipe {
  const spec = typeof s === 'string' ? SOURCE_VIT_SPECS[s] : s;
  const t = { ...spec.recipe, ...budget };
  const warmupSteps = budget.steps !== undefined ? Math.min(spec.recipe.warmupSteps, Math.floor(budget.steps / 10)) : spec.recipe.warmupSteps;
  const size = spec.data.size;
  return recipe({
    name: `source-vit-${spec.tag}`,
    description: `Supervised pre-training of the source ViT ${spec.tag} on the embedded natural domain (tools/make-source-vit.ts)`,
    seed: spec.seed,
    model: { kind: 'vit', preset: spec.preset, overrides: { ...spec.overrides } },
    weights: { kind: 'init' },
    adapters: { kind: 'full' },
    objective: { kind: 'supervised', labelSmoothing: t.labelSmoothing },
    data: {
      source: { kind: 'embedded', domain: 'natural', seed: spec.data.seed, size, satellitePerClass: 100, naturalPerClass: spec.data.naturalPerClass },
      train: { splits: [{ split: 'train', subset: null }], transform: { name: 'supervised', size, rrcScale: t.rrcScale ? [t.rrcScale[0], t.rrcScale[1]] : null, hflip: t.hflip, stats: 'imagenet' } },
    },
    batch: t.batch,
    steps: t.steps,
    lr: t.lr,
    schedule: { kind: 'cosine', warmup: { steps: warmupSteps }, minLr: t.minLr, warmupStart: 0 },
    weightDecay: t.weightDecay,
    clipGrad: t.clipGradNorm,
    eval: { kind: 'accuracy', test: { splits: [{ split: 'val', subset: null }], transform: { name: 'normalize', stats: 'imagenet' } }, at: { steps: [] }, batch: 100 },
  });
}

/**
 * The experiment's backbones ready to use: when a recipe names a kit source-ViT asset that is missing or was made with
 * other settings, the backbone is pre-trained here with the spec's recipe shortened to `fallback` (a recipe run; its
 * model is saved in that run folder as a source-ViT file) and the runs load it from there. Returns the experiment with
 * those weights and what each backbone is.
 */
export async function ensureBackbones(
  e: PyraExperiment,
  fallback: { steps: number; batch: number },
  o: { root?: string; progress?: RunOptions['progress'] } = {},
): Promise<{ experiment: PyraExperiment; notes: Record<string, string> }> {
  const notes: Record<string, string> = {};
  const fix = async (label: string, r: Recipe): Promise<Recipe['weights']> => {
    const why = assetProblem(r);
    if (why === null || r.weights.kind !== 'asset') return r.weights;
    const tag = r.weights.name.replace(/^source-vit-/, '') as SourceVitName;
    const spec = SOURCE_VIT_SPECS[tag];
    if (!spec || fallback.steps <= 0) throw new Error(`${label}: ${why}`);
    const fb = { ...sourceVitRecipe(spec, fallback), name: `tome-pyra-source-${tag}-nb${fallback.steps}` };
    const run = await runRecipe(fb, { root: o.root, progress: o.progress, keep: true });
    try {
      const s = run.session!;
      if (s.model.kind !== 'vit') throw new Error('ensureBackbones: the source recipe builds a ViT');
      const out = path.join(run.dir, 'checkpoints', `source-vit-${tag}.safetensors`);
      mkdirSync(path.dirname(out), { recursive: true });
      const losses = run.steps.map((x) => x.loss);
      const tail = losses.slice(-Math.max(1, Math.round(losses.length / 10)));
      const result: SupervisedResult = {
        finalLoss: tail.reduce((a, b) => a + b, 0) / tail.length,
        losses,
        trainAccuracy: run.steps.map((x) => x.accuracy ?? NaN),
        skipped: run.steps.filter((x) => x.skipped).length,
        evals: run.evals.map((x) => ({ step: x.step, accuracy: x.testAcc as number })),
        seconds: run.summary.seconds as number,
      };
      const fbSpec: SourceVitSpec = { ...spec, tag: `${tag}-nb${fallback.steps}`, recipe: { ...spec.recipe, ...fallback, warmupSteps: Math.min(spec.recipe.warmupSteps, Math.floor(fallback.steps / 10)) } };
      saveSourceVit(out, s.model.vit, fbSpec, result, 'fallback pre-training by notebook 02');
      notes[label] = `FALLBACK: pre-trained here (${why})`;
      return { kind: 'checkpoint', path: out, head: 'reinit', stripPrefixes: [], ignore: null, allowMissing: null };
    } finally {
      run.session?.dispose();
    }
  };
  const mainW = await fix(e.main.label, e.main.recipe);
  const smallW = await fix(e.small.label, { ...e.main.recipe, model: e.small.model, weights: e.small.weights });
  return {
    experiment: { ...e, main: { ...e.main, recipe: { ...e.main.recipe, weights: mainW } }, small: { ...e.small, weights: smallW } },
    notes,
  };
}

/**
 * The paper's experiments (PYRA Tables 2–3 settings, VTAB-1k EuroSAT): ViT-B/16 against ViT-S/16 and ViT-L/16 against
 * ViT-B/16, IN-21k weights (`$VITPEFT_VIT_{S16,B16,L16}_IN21K`, else `weights/<model>_in21k.safetensors`), data under
 * `$VITPEFT_VTAB_ROOT` (else `data/vtab-1k`), the released recipe, LoRA init 'kaiming' as in the notebook's miniature.
 */
export function pyraPaperExperiments(): PyraExperiment[] {
  const weights = (env: string, preset: VitPresetName): Recipe['weights'] => ({
    kind: 'checkpoint', path: process.env[env] ?? `weights/${preset}_in21k.safetensors`, head: 'reinit', stripPrefixes: [], ignore: null, allowMissing: null,
  });
  const lora = (name: 'lora_vit_b16' | 'lora_vit_l16', env: string): Recipe => {
    const r = pyraRecipe(name);
    const m = r.model as Extract<Recipe['model'], { kind: 'vit' }>;
    const a = r.adapters as Extract<Recipe['adapters'], { kind: 'pyra' }>;
    const src = r.data.source as Extract<Recipe['data']['source'], { kind: 'vtab1k' }>;
    return recipe({
      ...r, name: 'tome-pyra-lora', weights: weights(env, m.preset), adapters: { ...a, loraInit: 'kaiming' },
      data: { ...r.data, source: { ...src, root: process.env.VITPEFT_VTAB_ROOT ?? src.root } },
    });
  };
  const model = (name: 'lora_vit_s16' | 'lora_vit_b16'): Extract<Recipe['model'], { kind: 'vit' }> => pyraRecipe(name).model as Extract<Recipe['model'], { kind: 'vit' }>;
  return [
    {
      name: 'ViT-B/16', main: { label: 'ViT-B/16', recipe: lora('lora_vit_b16', 'VITPEFT_VIT_B16_IN21K') },
      small: { label: 'ViT-S/16', model: model('lora_vit_s16'), weights: weights('VITPEFT_VIT_S16_IN21K', 'vit_small_patch16_224'), loraRank: 4 },
      low: [...PYRA_SCHEDULES.vit_base_patch16_224.low], high: [...PYRA_SCHEDULES.vit_base_patch16_224.high],
    },
    {
      name: 'ViT-L/16', main: { label: 'ViT-L/16', recipe: lora('lora_vit_l16', 'VITPEFT_VIT_L16_IN21K') },
      small: { label: 'ViT-B/16', model: model('lora_vit_b16'), weights: weights('VITPEFT_VIT_B16_IN21K', 'vit_base_patch16_224'), loraRank: 8 },
      low: [...PYRA_SCHEDULES.vit_large_patch16_224.low], high: [...PYRA_SCHEDULES.vit_large_patch16_224.high],
    },
  ];
}

/** Sessions of a few recipes, disposed together (a notebook keeps them in one slot). */
export interface Sessions<K extends string> {
  get(k: K): RecipeSession;
  dispose(): void;
}

/** Build a session per recipe (in order; on failure the ones built are freed). */
export async function prepareAll<K extends string>(recipes: Partial<Record<K, Recipe>>): Promise<Sessions<K>> {
  const built = new Map<K, RecipeSession>();
  try {
    for (const [k, r] of Object.entries(recipes) as Array<[K, Recipe]>) built.set(k, await prepareRecipe(r));
  } catch (e) {
    built.forEach((s) => s.dispose());
    throw e;
  }
  return {
    get: (k) => {
      const s = built.get(k);
      if (!s) throw new Error(`no session '${k}'; built: ${[...built.keys()].join(', ')}`);
      return s;
    },
    dispose: () => built.forEach((s) => s.dispose()),
  };
}

/** The backbones of an experiment as a table (size, tokens, parameters without the head, where the weights came from). */
export function backboneRows(e: PyraExperiment, s: Sessions<PyraRunName>, notes: Record<string, string> = {}): Array<Record<string, unknown>> {
  return (['lora', 'small-lora'] as const).map((m) => {
    const sess = s.get(m);
    const vit = sess.encoder!;
    const rec = sess.origin.record as { result?: { valAccuracy?: number; seconds?: number }; spec?: { recipe?: { steps?: number } }; note?: string } | null;
    const label = m === 'lora' ? e.main.label : e.small.label;
    return {
      model: label, D: vit.config.embedDim, depth: vit.config.depth, heads: vit.config.numHeads, tokens: 1 + numPatches(vit.config),
      'params (no head)': encoderParamCount(vit),
      weights: sess.origin.file ? path.relative(process.cwd(), sess.origin.file) : sess.origin.kind,
      steps: rec?.spec?.recipe?.steps ?? null,
      'natural val acc': rec?.result?.valAccuracy ?? null,
      'pre-training s': rec?.result?.seconds !== undefined ? Math.round(rec.result.seconds) : null,
      note: notes[label] ?? rec?.note ?? '',
    };
  });
}

/** Per class: training and test images of a recipe's data. */
export async function classCountRows(r: Recipe): Promise<{ rows: Array<Record<string, unknown>>; train: number; test: number; size: number }> {
  if (r.eval.kind !== 'accuracy') throw new Error('classCountRows: a recipe evaluated by accuracy');
  const src = openSource(r.data.source);
  const train = await splitSetData(src, r.data.train, r.seed, 'recipe.data.train');
  const test = await splitSetData(src, r.eval.test, r.seed, 'recipe.eval.test');
  const classes = train.classes ?? [];
  const count = (y: Int32Array): number[] => {
    const c = new Array<number>(classes.length).fill(0);
    y.forEach((v) => c[v]++);
    return c;
  };
  const a = count(labelsOf(train));
  const b = count(labelsOf(test));
  const size = r.data.train.transform.name === 'vtab' ? r.data.train.transform.size : NaN;
  return { rows: classes.map((name, i) => ({ class: name, train: a[i], test: b[i] })), train: train.length, test: test.length, size };
}

/** One test image per class (the first `n` classes), with the recipe's evaluation transform; labels as numbers. */
export async function testImages(r: Recipe, n: number): Promise<{ x: tf.Tensor4D; labels: number[]; classes: readonly string[] }> {
  if (r.eval.kind !== 'accuracy') throw new Error('testImages: a recipe evaluated by accuracy');
  const ds = await splitSetData(openSource(r.data.source), r.eval.test, r.seed, 'recipe.eval.test');
  const { x, y } = await decodeImages(ds, r.eval.test.transform, firstOfEachClass(ds, n));
  const labels = Array.from(y!.dataSync());
  y!.dispose();
  return { x, labels, classes: ds.classes ?? [] };
}

/** Tokens after each block of a forward with `hooks` (read at the merge site). */
function tokensPerBlock(vit: Vit, hooks: VitHooks, x: tf.Tensor4D): number[] {
  const seen: number[] = [];
  const rec: VitHooks = {
    ...hooks,
    merge: (input) => {
      const s = hooks.merge ? hooks.merge(input) : input.state;
      seen.push(s.x.shape[1]);
      return s;
    },
  };
  tf.tidy(() => {
    vitForward(vit, x, { hooks: rec });
  });
  return seen;
}

/** Token counts per block, measured in a forward pass vs the schedules' (throws on a mismatch). */
export function tokenCountRows(vit: Vit, schedules: Record<'low' | 'high', number[]>, x: tf.Tensor4D): Array<Record<string, unknown>> {
  const nTokens = 1 + numPatches(vit.config);
  return (['low', 'high'] as const).map((level) => {
    const schedule = schedules[level];
    const expected = tokenCounts(schedule, vit.config.depth, { numTokens: nTokens, onCap: 'error' }).tokens.slice(1);
    const got = tokensPerBlock(vit, tomeHooks(vit.config, { schedule }), x);
    if (got.join() !== expected.join()) throw new Error(`${level}: tokens per block ${got} ≠ schedule ${expected}`);
    return { schedule: level, r: `[${schedule}]`, 'expected tokens after each block': `${nTokens} → ${expected.join(', ')}`, measured: `${nTokens} → ${got.join(', ')}`, ok: true };
  });
}

/**
 * Merge maps at low and high compression: each patch painted with the mean colour of the token it ended up in, white
 * borders between groups (ToMe source tracking → `mergeGroups`, drawn over the upscaled image).
 */
export function mergeMapRows(vit: Vit, x: tf.Tensor4D, labels: readonly number[], classes: readonly string[], schedules: Record<'low' | 'high', number[]>, up = 6): ImageCell[][] {
  const denorm = tf.tidy(() => tf.clipByValue(tf.add(tf.mul(x, [...IMAGENET_STATS.std]), [...IMAGENET_STATS.mean]), 0, 1));
  const originals = batchToImages(denorm);
  denorm.dispose();
  const [gh, gw] = [imgHW(vit.config)[0] / vit.config.patchSize, imgHW(vit.config)[1] / vit.config.patchSize];
  const nTokens = 1 + numPatches(vit.config);
  const maps = (schedule: number[]): Image[] => {
    const source = tf.tidy(() => vitForward(vit, x, { hooks: tomeHooks(vit.config, { schedule, traceSource: true }) }).state.source!);
    try {
      return originals.map((img, k) => segmentOverlay(upscale(img, up), mergeGroups(source, k), gh, gw));
    } finally {
      source.dispose();
    }
  };
  const low = maps(schedules.low);
  const high = maps(schedules.high);
  const left = (s: number[]): number => {
    const t = tokenCounts(s, vit.config.depth, { numTokens: nTokens }).tokens;
    return t[t.length - 1];
  };
  return originals.map((img, k) => [
    { image: upscale(img, up), caption: classes[labels[k]] ?? String(labels[k]) },
    { image: low[k], caption: `low: ${left(schedules.low)} tokens` },
    { image: high[k], caption: `high: ${left(schedules.high)} tokens` },
  ]);
}

/** The paper's GMACs per 224² image (PYRA's low / high-compression tables). */
export const PYRA_PAPER_GMACS: Record<'vit_base_patch16_224' | 'vit_large_patch16_224' | 'vit_small_patch16_224', Record<string, number>> = {
  vit_base_patch16_224: { unmerged: 17.56, low: 8.77, high: 5.07 },
  vit_large_patch16_224: { unmerged: 61.55, low: 30.96, high: 17.92 },
  vit_small_patch16_224: { unmerged: 4.6 },
};

/** The paper's models: kit MACs vs the paper's (throws beyond the stated tolerance; ViT-L high is a slip, 17.91). */
export function paperMacsRows(): Array<Record<string, unknown>> {
  const rows: Array<Record<string, unknown>> = [];
  for (const [preset, paper] of Object.entries(PYRA_PAPER_GMACS)) {
    const cfg = vitConfig(preset as VitPresetName);
    const scheds = PYRA_SCHEDULES[preset as keyof typeof PYRA_SCHEDULES];
    const base = vitMacs(cfg).total;
    for (const level of Object.keys(paper)) {
      const schedule = level === 'unmerged' ? 0 : [...scheds[level as 'low' | 'high']];
      const m = vitMacs(cfg, { schedule });
      rows.push({
        model: preset, schedule: level, 'tokens out': m.tokens[m.tokens.length - 1], 'GMACs (kit)': +m.gmacs.toFixed(3), 'GMACs (paper)': paper[level],
        'Δ': +(m.gmacs - paper[level]).toFixed(3), 'vs unmerged': +(m.total / base).toFixed(3), 'fvcore "GFLOPs" (/2³⁰)': +m.fvcoreG.toFixed(2),
      });
      const tol = preset === 'vit_large_patch16_224' && level === 'high' ? 0.015 : 0.005;
      if (Math.abs(m.gmacs - paper[level]) > tol) throw new Error(`${preset} ${level}: ${m.gmacs.toFixed(3)} GMACs ≠ paper ${paper[level]}`);
    }
  }
  return rows;
}

/** Our models: MACs per image and tokens per block of each schedule. */
export function ourMacsRows(e: PyraExperiment): Array<Record<string, unknown>> {
  const m = e.main.recipe.model as Extract<Recipe['model'], { kind: 'vit' }>;
  const cfg = vitConfig(m.preset, m.overrides);
  const base = vitMacs(cfg).total;
  const row = (model: string, c: VitConfig, level: string, schedule: number | number[]) => {
    const x = vitMacs(c, { schedule, onCap: 'error' });
    return { experiment: e.name, model, schedule: level, r: Array.isArray(schedule) ? `[${schedule}]` : '-', 'tokens per block': x.tokens.join(' → '), MMACs: +(x.total / 1e6).toFixed(2), 'vs unmerged large': +(x.total / base).toFixed(3) };
  };
  return [
    row(e.main.label, cfg, 'unmerged', 0),
    row(e.main.label, cfg, 'low', e.low),
    row(e.main.label, cfg, 'high', e.high),
    row(e.small.label, vitConfig(e.small.model.preset, e.small.model.overrides), 'unmerged', 0),
  ];
}

/**
 * Measured throughput of every method (eval mode, LoRA unmerged as PYRA's latency test runs it), `rounds` times
 * interleaved, best round kept; recorded as a run `tome-pyra-throughput`.
 */
export async function measureThroughputs(
  runs: Record<PyraRunName, Recipe>,
  o: { batch: number; warmup: number; iters: number; minSeconds: number; rounds: number; experiment: string; tags?: Record<string, string | number | boolean>; root?: string },
): Promise<{ speed: Map<PyraRunName, ThroughputRecord>; rows: Array<Record<string, unknown>>; dir: string }> {
  const speed = new Map<PyraRunName, ThroughputRecord>();
  for (let round = 0; round < o.rounds; round++) {
    for (const m of PYRA_METHODS) {
      const s = await prepareRecipe(runs[m]);
      try {
        const pm = s.parts.pyra!;
        const rec = measureModelThroughput(s.encoder!, pm, { batch: o.batch, warmup: o.warmup, iters: o.iters, minSeconds: o.minSeconds, seed: runs[m].seed, label: `${o.experiment}/${m}` });
        if (!speed.has(m) || rec.imgPerSec > speed.get(m)!.imgPerSec) speed.set(m, rec);
      } finally {
        s.dispose();
      }
    }
  }
  const run = RunRecord.create('tome-pyra-throughput', { config: { ...o, methods: [...PYRA_METHODS] }, seed: runs.lora.seed, root: o.root });
  run.finish({ records: [...speed.values()].map((r) => ({ ...r })) });
  const ref = speed.get('lora')!;
  const rows = PYRA_METHODS.map((m) => {
    const r = speed.get(m)!;
    return {
      experiment: o.experiment, method: PYRA_METHOD_LABEL[m], 'tokens out': r.tokensOut, MMACs: +(r.macsPerImage / 1e6).toFixed(2), 'MACs vs LoRA': +(r.macsPerImage / ref.macsPerImage).toFixed(3),
      'img/s': +r.imgPerSec.toFixed(1), 'speed-up': +(r.imgPerSec / ref.imgPerSec).toFixed(2), 'ms/iter': +r.msPerIter.toFixed(1), batch: r.batch, warmup: r.warmupIters, iters: r.iters, backend: `${r.backend} × ${r.threads}`,
    };
  });
  return { speed, rows, dir: run.dir };
}

/**
 * Identity at initialisation, bit for bit on `x`: LoRA (B = 0) = the backbone; ToMe + LoRA = ToMe alone; PYRA (W_D = 0)
 * = ToMe + LoRA, at both compressions (throws when one fails).
 */
export async function identityRows(runs: Record<PyraRunName, Recipe>, x: tf.Tensor4D, experiment: string): Promise<Array<Record<string, unknown>>> {
  const s = await prepareAll<PyraRunName>({ lora: runs.lora, 'tome-low': runs['tome-low'], 'tome-high': runs['tome-high'], 'pyra-low': runs['pyra-low'], 'pyra-high': runs['pyra-high'] });
  const rows: Array<Record<string, unknown>> = [];
  try {
    const vit = s.get('lora').encoder!;
    const logits = (v: Vit, hooks: VitHooks | undefined): tf.Tensor2D => tf.tidy(() => vitForward(v, x, { hooks }).logits!);
    const check = (what: string, a: [Vit, VitHooks | undefined], b: [Vit, VitHooks | undefined]): void => {
      const ta = logits(...a);
      const tb = logits(...b);
      const gap = tf.tidy(() => tf.max(tf.abs(tf.sub(ta, tb))).dataSync()[0]);
      tf.dispose([ta, tb]);
      rows.push({ experiment, check: what, 'max |Δ logits|': gap, ok: gap === 0 });
      if (gap !== 0) throw new Error(`${experiment}: ${what} fails at init (max |Δ| = ${gap})`);
    };
    check('LoRA (B = 0) = backbone', [vit, s.get('lora').hooks], [vit, undefined]);
    for (const level of ['low', 'high'] as const) {
      const tome = s.get(`tome-${level}`);
      const pyra = s.get(`pyra-${level}`);
      const schedule = (tome.parts.pyra!.schedule as number[]).slice();
      check(`ToMe + LoRA ${level} = ToMe ${level} alone`, [tome.encoder!, tome.hooks], [tome.encoder!, tomeHooks(tome.encoder!.config, { schedule })]);
      check(`PYRA ${level} (W_D = 0) = ToMe + LoRA ${level}`, [pyra.encoder!, pyra.hooks], [tome.encoder!, tome.hooks]);
    }
  } finally {
    s.dispose();
  }
  return rows;
}

/** Final and best test accuracy of each run, with its curve. */
export interface PyraResult {
  method: PyraRunName;
  model: string;
  final: number;
  best: number;
  evals: Array<{ step: number; acc: number }>;
  trainable: number;
  seconds: number;
  losses: number[];
  run: string;
}

export function pyraResults(runs: Record<PyraRunName, RunResult>): PyraResult[] {
  return PYRA_METHODS.map((m) => {
    const r = runs[m];
    const evals = r.evals.map((e) => ({ step: e.step, acc: e.testAcc as number }));
    return {
      method: m, model: String(r.recipe.tags.model ?? ''), final: r.summary.finalTestAcc as number, best: r.summary.bestTestAcc as number, evals,
      trainable: r.summary.trainable as number, seconds: r.summary.seconds as number, losses: r.steps.map((s) => s.loss), run: r.dir,
    };
  });
}

export function accuracyCurves(experiment: string, results: readonly PyraResult[]): PlotlyFigure {
  return lineFigure(results.map((r) => ({ name: `${experiment} · ${PYRA_METHOD_LABEL[r.method]}`, x: r.evals.map((v) => v.step), y: r.evals.map((v) => v.acc), mode: 'lines+markers' as const })), {
    title: 'test accuracy during fine-tuning', xTitle: 'step', yTitle: 'test accuracy',
  });
}

/** Accuracy vs measured throughput: LoRA, the ToMe + LoRA and PYRA curves through low and high, the smaller model. */
export function accuracyThroughputFigure(experiment: string, results: readonly PyraResult[], speed: Map<PyraRunName, ThroughputRecord>, backend: BackendReport, batch: number): PlotlyFigure {
  const by = new Map(results.map((r) => [r.method, r]));
  const pt = (methods: PyraRunName[]) => ({
    x: methods.map((m) => speed.get(m)!.imgPerSec),
    y: methods.map((m) => 100 * by.get(m)!.final),
    text: methods.map((m) => PYRA_METHOD_LABEL[m].replace(/ \(unmerged\)|ToMe \+ LoRA |PYRA /g, '')),
  });
  const fig = scatterFigure([
    { name: 'LoRA, unmerged', ...pt(['lora']) },
    { name: 'ToMe + LoRA', ...pt(['lora', 'tome-low', 'tome-high']) },
    { name: 'PYRA', ...pt(['lora', 'pyra-low', 'pyra-high']) },
    { name: `smaller model (${by.get('small-lora')!.model}) LoRA`, ...pt(['small-lora']) },
  ], { title: `${experiment}: test accuracy (final) vs measured throughput`, xTitle: `images / s (${backend.backend}, ${backend.threads} thread, batch ${batch})`, yTitle: 'test accuracy (%)' });
  (fig.data as Array<Record<string, unknown>>).forEach((d, i) => {
    if (i === 1 || i === 2) d.mode = 'lines+markers+text';
  });
  return fig;
}

/** The paper's VTAB-1k averages (ViT-B / ViT-L; throughput img/s on the authors' GPU). */
export const PYRA_PAPER_AVERAGES = [
  { method: 'lora', compression: 'none', bImgS: 425, bAcc: 74.76, lImgS: 130, lAcc: 76.52 },
  { method: 'tome-low', compression: 'low (≈1.7×)', bImgS: 753, bAcc: 74.1, lImgS: 227, lAcc: 76.11 },
  { method: 'pyra-low', compression: 'low (≈1.7×)', bImgS: 745, bAcc: 74.69, lImgS: 225, lAcc: 76.84 },
  { method: 'tome-high', compression: 'high (≈3.2×)', bImgS: 1381, bAcc: 70.43, lImgS: 431, lAcc: 74.1 },
  { method: 'pyra-high', compression: 'high (≈3.2×)', bImgS: 1365, bAcc: 72.06, lImgS: 427, lAcc: 75.66 },
  { method: 'small-lora', compression: 'smaller model', bImgS: 1350, bAcc: 71.85, lImgS: 425, lAcc: 74.76 },
] as const;

/** The paper's averages beside ours (per experiment: img/s, final and best test accuracy). */
export function pyraPaperRows(experiments: ReadonlyArray<{ name: string; results: readonly PyraResult[]; speed: Map<PyraRunName, ThroughputRecord> }>): Array<Record<string, unknown>> {
  return PYRA_PAPER_AVERAGES.map((p) => {
    const row: Record<string, unknown> = {
      method: PYRA_METHOD_LABEL[p.method], compression: p.compression, 'paper ViT-B img/s': p.bImgS, 'paper ViT-B acc': p.bAcc, 'paper ViT-L img/s': p.lImgS, 'paper ViT-L acc': p.lAcc,
    };
    for (const e of experiments) {
      const r = e.results.find((x) => x.method === p.method)!;
      row[`${e.name} img/s`] = +e.speed.get(p.method)!.imgPerSec.toFixed(1);
      row[`${e.name} acc (final)`] = +(100 * r.final).toFixed(1);
      row[`${e.name} acc (best of evals)`] = +(100 * r.best).toFixed(1);
    }
    return row;
  });
}

/** What our numbers say about the paper's inequalities, with the noise of the test set. */
export function pyraVerdicts(experiment: string, results: readonly PyraResult[], speed: Map<PyraRunName, ThroughputRecord>, nTest: number): string {
  const acc = (m: PyraRunName): number => results.find((r) => r.method === m)!.final;
  const se = (p: number): number => Math.sqrt(Math.max(p * (1 - p), 1e-4) / nTest);
  const cmp = (a: PyraRunName, b: PyraRunName): string => {
    const d = acc(a) - acc(b);
    const s = Math.hypot(se(acc(a)), se(acc(b)));
    const verdict = Math.abs(d) < 2 * s ? 'within noise' : d > 0 ? 'higher' : 'lower';
    return `${PYRA_METHOD_LABEL[a]} ${(100 * acc(a)).toFixed(1)} vs ${PYRA_METHOD_LABEL[b]} ${(100 * acc(b)).toFixed(1)}: Δ = ${(100 * d).toFixed(1)} points (2σ ≈ ${(200 * s).toFixed(1)}) → **${verdict}**`;
  };
  const sp = (m: PyraRunName): ThroughputRecord => speed.get(m)!;
  return [
    `**${experiment}** (final test accuracy, ${nTest} test images):`,
    `- adverse compression (paper: ToMe + LoRA high < smaller model): ${cmp('tome-high', 'small-lora')}`,
    `- PYRA's recovery at high compression: ${cmp('pyra-high', 'tome-high')}; ${cmp('pyra-high', 'small-lora')}`,
    `- low compression: ${cmp('tome-low', 'lora')}; ${cmp('pyra-low', 'tome-low')}`,
    `- measured speed-up of high compression: ${(sp('tome-high').imgPerSec / sp('lora').imgPerSec).toFixed(2)}× (MACs ${(sp('tome-high').macsPerImage / sp('lora').macsPerImage).toFixed(2)}×); smaller model ${(sp('small-lora').imgPerSec / sp('lora').imgPerSec).toFixed(2)}×.`,
  ].join('\n');
}

/** The paper's trainable counts (LoRA, PYRA W_r + W_D) against the kit's presets, counted from shapes (throws on a mismatch). */
export function paperCountRows(): Array<Record<string, unknown>> {
  const PAPER: Array<[PyraPresetName, number, number, string]> = [
    ['lora_vit_s16', 73728, 0, '0.34 %'],
    ['lora_vit_b16', 294912, 0, '0.34 %'],
    ['pyra_vit_b16_low', 294912, 9402, '0.35 %'],
    ['pyra_vit_b16_high', 294912, 9408, '0.35 %'],
    ['lora_vit_l16', 1179648, 0, '0.39 %'],
    ['pyra_vit_l16_low', 1179648, 24766, '0.40 %'],
    ['pyra_vit_l16_high', 1179648, 24768, '0.40 %'],
  ];
  return PAPER.map(([name, lora, gen, share]) => {
    const r = pyraParamReport(name);
    if (r.lora !== lora || r.pyraGenerators !== gen) throw new Error(`${name}: kit counts ${r.lora} + ${r.pyraGenerators} ≠ paper ${lora} + ${gen}`);
    return {
      preset: name, backbone: r.backbone, LoRA: r.lora, 'PYRA W_r + W_D': r.pyraGenerators, 'paper count': lora + gen, 'kit %': +r.pct.toFixed(3), 'paper %': share,
      'PYRA LayerNorm (not in %)': r.pyraLayerNorm, '% with LayerNorm': +r.pctWithLayerNorm.toFixed(3),
    };
  });
}

/** Our models' trainable parameters, counted on the built models and checked against the formulas. */
export async function ourCountRows(experiment: string, runs: Record<PyraRunName, Recipe>): Promise<Array<Record<string, unknown>>> {
  const rows: Array<Record<string, unknown>> = [];
  for (const m of PYRA_METHODS) {
    const s = await prepareRecipe(runs[m]);
    try {
      const vit = s.encoder!;
      const pm = s.parts.pyra!;
      const D = vit.config.embedDim;
      const rank = pm.preset.loraRank;
      const sum = (re: RegExp): number => [...s.trainable].filter(([k]) => re.test(k)).reduce((a, [, v]) => a + v.size, 0);
      const lora = sum(/lora_[AB]/);
      const gen = sum(/pyra_[ab]$/);
      const ln = sum(/pyra_norm/);
      const head = sum(/^head\./);
      const bb = encoderParamCount(vit);
      // LoRA = depth·(D·r + r·3D); generators = Σ_{r_l>0}(r_l + D); LayerNorm = 2D per merging block.
      const merging = pm.schedule.filter((r) => r > 0);
      const isPyra = m.startsWith('pyra');
      const want = { lora: vit.config.depth * (D * rank + rank * 3 * D), gen: isPyra ? merging.reduce((a, r) => a + r + D, 0) : 0, ln: isPyra ? merging.length * 2 * D : 0 };
      if (lora !== want.lora || gen !== want.gen || ln !== want.ln) throw new Error(`${m}: counts ${lora}/${gen}/${ln} ≠ formula ${want.lora}/${want.gen}/${want.ln}`);
      rows.push({
        experiment, method: PYRA_METHOD_LABEL[m], model: String(runs[m].tags.model ?? ''), backbone: bb, LoRA: lora, 'PYRA W_r + W_D': gen,
        '% of backbone (paper rule)': +((100 * (lora + gen)) / bb).toFixed(3), 'PYRA LayerNorm': ln, head, 'trainable in all': lora + gen + ln + head,
      });
    } finally {
      s.dispose();
    }
  }
  return rows;
}
