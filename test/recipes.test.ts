/**
 * Recipes as data: every preset round-trips through JSON and validates, the paper presets count what the papers
 * count, bad recipes fail naming the key path; `runRecipe` gives exactly the numbers of the hand-written code it
 * replaces (supervised source-ViT training = `trainSupervised`, M-ExPLoRA = `setupExploraMae` + `trainLoop`,
 * D-ExPLoRA = `trainExploraDino`, PYRA = `buildPyraModel` + `trainLoop` on preloaded tensors); resuming a run folder
 * continues bit for bit; the PEFT checks fail a run that breaks them.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Rng } from '../lib/rng';
import { createVit, disposeVit } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { vitShapes } from '../lib/peft/shapes';
import { countExplora, exploraRecipe, ExploraRecipe } from '../lib/peft/explora';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainLoop, StepInfo } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { createMae, disposeMae, maeVariables } from '../lib/mae/mae';
import { readSafetensors } from '../lib/io/safetensors';
import { listRuns, readMetrics, readRun } from '../lib/report/runs';
import { Loader, disposeBatch } from '../data-loaders/dataset';
import { loadEmbedded } from '../data-loaders/embedded';
import { maePretrain, vtab } from '../data-loaders/presets';
import { IMAGENET_STATS } from '../data-loaders/transforms';
import { RECIPES } from '../recipes/presets';
import { Recipe, RecipeInput, recipe } from '../recipes/recipe';
import { RecipeError } from '../recipes/schema';
import { prepareRecipe } from '../recipes/session';
import { resumeRun, runRecipe } from '../recipes/run';
import { readRecipeFile } from '../recipes/cli';
import { trainSupervised } from '../recipes/supervised';
import { setupExploraMae } from '../recipes/explora-mae';
import { createExploraDino, dExploraConfig, exploraDinoViews, trainExploraDino, D_EXPLORA_SMALL } from '../recipes/explora-dino';
import { buildPyraModel, pyraParamReport, PyraPresetConfig } from '../recipes/pyra-presets';
import { dExploraRecipe } from '../recipes/presets';
import { exploraComparison } from '../recipes/explora-compare';
import { pyraComparison, pyraPaperExperiments, sourceVitRecipe, PYRA_METHODS } from '../recipes/pyra-compare';
import { recipeTables } from '../recipes/report';
import { withSubset } from '../recipes/data';
import { assetProblem } from '../recipes/model';
import { SOURCE_VIT_SPECS } from '../recipes/source-vit';

const EMB = { kind: 'embedded', domain: 'satellite-rgb', seed: 3, size: 16, satellitePerClass: 5, naturalPerClass: 5 } as const;
const EMB_OPTS = { seed: 3, size: 16, satellitePerClass: 5, naturalPerClass: 5 };
const TINY_VIT = { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, numClasses: 10 };

/** A tiny supervised LoRA recipe on the embedded satellite split (30 / 10 / 10 images at 16 px). */
function tinyLora(o: Partial<Recipe> = {}): RecipeInput {
  return {
    name: 'tiny-lora',
    seed: 1,
    model: { kind: 'vit', preset: 'vit_tiny_patch16_224', overrides: { ...TINY_VIT } },
    adapters: { kind: 'lora', rank: 4, alpha: 1, dropout: 0, init: 'kaiming', targets: [{ sites: ['attn.qkv'], exclude: [], layers: null, kind: 'qkv', slices: ['q', 'v'], rank: null, alpha: null, scaling: null, dropout: null, init: null }], train: ['head.*'] },
    objective: { kind: 'supervised', labelSmoothing: 0.1 },
    data: { source: EMB, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'supervised', size: 16, rrcScale: [0.5, 1], hflip: true, stats: 'imagenet' } } },
    batch: 8,
    steps: 6,
    lr: 1e-2,
    schedule: { kind: 'cosine', warmup: { steps: 2 }, minLr: 0, warmupStart: 0 },
    eval: { kind: 'accuracy', test: { splits: [{ split: 'test', subset: null }], transform: { name: 'normalize', stats: 'imagenet' } }, at: { every: 3 }, batch: 4 },
    ...o,
  };
}

const strip = (rows: Array<Record<string, unknown>>): Array<Record<string, unknown>> => rows.map(({ time: _t, seconds: _s, ...r }) => r);

function tensorsOf(file: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const [k, t] of readSafetensors(file).tensors) out.set(k, Array.from(t.data as Float32Array));
  return out;
}

describe('recipes: presets as data', () => {
  it('every preset round-trips through JSON and validates to itself', () => {
    assert.ok(Object.keys(RECIPES).length >= 20);
    for (const [name, r] of Object.entries(RECIPES)) {
      const json = JSON.stringify(r);
      assert.deepEqual(recipe(JSON.parse(json)), r, name);
      assert.equal(r.format, 'vitpeft-recipe/1', name);
    }
  });

  it("the paper presets count what the papers count (from shapes, nothing allocated)", () => {
    const exploraCount = (r: Recipe, decoder = false): number => {
      assert.equal(r.adapters.kind, 'explora');
      const a = r.adapters as Extract<Recipe['adapters'], { kind: 'explora' }>;
      const m = r.model as Extract<Recipe['model'], { kind: 'vit' | 'mae' }>;
      const shapes = vitShapes(m.preset, m.kind === 'vit' ? m.overrides : m.encoder);
      const rec = exploraRecipe(a.notation, a.overrides as Partial<ExploraRecipe>);
      return countExplora(shapes, decoder ? rec : { ...rec, decoderRank: null }).trainableEncoder;
    };
    assert.equal(exploraCount(RECIPES.d_explora_l_r64), 18_724_864);
    assert.equal(exploraCount(RECIPES.d_explora_l), 12_695_552);
    assert.equal(exploraCount(RECIPES.d_explora_1_l1_l_r64), 43_388_928);
    assert.equal(exploraCount(RECIPES.d_explora_b_r64), 9_288_192);
    assert.equal(exploraCount(RECIPES.m_explora_l_r64), 18_722_816);
    const pyra = (r: Recipe): number => {
      const a = r.adapters as Extract<Recipe['adapters'], { kind: 'pyra' }>;
      const { kind: _k, trainHead: _h, ...cfg } = a;
      return pyraParamReport(cfg as PyraPresetConfig).trainable;
    };
    assert.equal(pyra(RECIPES.lora_vit_b16), 294_912);
    assert.equal(pyra(RECIPES.pyra_vit_b16_low), 294_912 + 9_402);
    assert.equal(pyra(RECIPES.pyra_vit_b16_high), 294_912 + 9_408);
    assert.equal(pyra(RECIPES.pyra_vit_l16_high), 1_179_648 + 24_768);
    assert.equal(RECIPES.finetune_lora_r8.adapters.kind, 'finetune-lora');
    // ExPLoRA's lr rules: MAE blr 4.5e-4 · 1024 / 256 = 1.8e-3; DINOv2 1e-3 · √(1024 / 1024).
    assert.deepEqual(RECIPES.m_explora_l_r64.lr, { base: 4.5e-4, scale: 'linear-256' });
    assert.equal(RECIPES.m_explora_l_r64.batch, 1024);
    assert.deepEqual(RECIPES.d_explora_l_r64.weightDecay, { start: 0.04, end: 0.4 });
  });

  it('spreading a preset and tweaking it inline stays a valid recipe; stray keys do not', () => {
    const r = recipe({ ...RECIPES.d_explora_small, lr: 1e-4, steps: 5, epochs: null });
    assert.equal(r.lr, 1e-4);
    assert.throws(() => recipe({ ...RECIPES.d_explora_small, lr: 1e-4, steps: 5 }), /recipe\.steps: give the run length as steps or as epochs/);
    assert.throws(() => recipe({ ...RECIPES.d_explora_small, learningRate: 1e-4 }), /recipe\.learningRate: unknown key; valid keys: format, name,/);
  });
});

describe('recipes: bad recipes name the key path', () => {
  const base = tinyLora();
  const bad = (patch: Record<string, unknown>, re: RegExp): void => {
    assert.throws(() => recipe({ ...base, ...patch }), (e: unknown) => e instanceof RecipeError && re.test((e as Error).message), JSON.stringify(patch));
  };
  it('wrong types, ranges, unknown keys and unknown kinds', () => {
    bad({ optimizer: { kind: 'adamw', betas: [0.9, '0.9'] } }, /^recipe\.optimizer\.betas\[1\]: expected a number in \[0, 1\), got "0\.9"$/);
    bad({ optimizer: { kind: 'adamw', betas: [0.9, 1] } }, /^recipe\.optimizer\.betas\[1\]: expected a number in \[0, 1\), got 1$/);
    bad({ optimizer: { kind: 'adam' } }, /^recipe\.optimizer\.kind: expected one of 'adamw', 'sgd', got "adam"$/);
    bad({ batch: 0 }, /^recipe\.batch: expected an integer ≥ 1, got 0$/);
    bad({ batch: 8.5 }, /^recipe\.batch: expected an integer ≥ 1, got 8\.5$/);
    bad({ seed: '0' }, /^recipe\.seed: expected an integer ≥ 0, got "0"$/);
    bad({ adapters: { kind: 'lora', rnak: 4 } }, /^recipe\.adapters\.rnak: unknown key; valid keys: kind, rank, alpha/);
    bad({ model: { kind: 'vit', preset: 'vit_tiny_patch16_224', overrides: { depht: 2 } } }, /^recipe\.model\.overrides\.depht: unknown key; valid keys: imgSize,/);
    bad({ model: { kind: 'vit', preset: 'vit_tiny_patch16_224', overrides: { imgSize: [16, '16'] } } }, /^recipe\.model\.overrides\.imgSize(\[1\])?: expected/);
    bad({ model: { kind: 'vit', preset: 'vit_tiny_patch17' } }, /^recipe\.model\.preset: expected one of "vit_tiny_patch16_224"/);
    bad({ data: { ...base.data, train: { ...base.data.train, splits: [{ split: 'train', subset: { n: -1 } }] } } }, /^recipe\.data\.train\.splits\[0\]\.subset\.n: expected an integer ≥ 1, got -1$/);
    bad({ eval: { kind: 'accuracy', test: base.data.train, at: { every: 2, steps: [1] } } }, /^recipe\.eval\.at: expected one of \{steps/);
    bad({ tags: { scale: ['ci'] } }, /^recipe\.tags\.scale: expected a string, number or boolean, got \["ci"\]$/);
    bad({ lr: '1e-3' }, /^recipe\.lr: expected a number > 0 or \{base, scale/);
    bad({ name: 'a b' }, /^recipe\.name: expected a name of letters/);
    bad({ format: 'vitpeft-recipe/9' }, /^recipe\.format: unsupported recipe format 'vitpeft-recipe\/9'/);
  });

  it('cross-field rules: run length, objective vs model, frozen recipes, ExPLoRA family', () => {
    bad({ epochs: 2 }, /^recipe\.steps: give the run length as steps or as epochs/);
    bad({ objective: { kind: 'mae' } }, /^recipe\.objective\.kind: the MAE objective needs model\.kind 'mae'/);
    bad({ adapters: { kind: 'frozen' } }, /^recipe\.adapters\.kind: a frozen recipe trains nothing: set steps to 0, got 6$/);
    assert.throws(() => recipe({ ...RECIPES.m_explora_small, adapters: { kind: 'explora', notation: 'D-ExPLoRA-[L]-r8', overrides: {} } }), /^RecipeError: recipe\.adapters\.notation: D-ExPLoRA goes with the DINOv2 objective/);
    assert.throws(() => recipe({ ...RECIPES.m_explora_small, adapters: { kind: 'explora', notation: 'M-ExPLoRA-[Q]-r8', overrides: {} } }), /recipe\.adapters\.notation: invalid: ExPLoRA notation 'M-ExPLoRA-\[Q\]-r8': block 'Q'/);
  });

  it('a recipe file: JSON syntax errors give the line, bad values the key path, both the file name', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-recipe-'));
    try {
      const f = path.join(dir, 'r.json');
      writeFileSync(f, '{\n  "name": "x",\n  "batch": 8,,\n}\n');
      assert.throws(() => readRecipeFile(f), (e: unknown) => (e as Error).message.startsWith(`${f}: not valid JSON at line 3`));
      writeFileSync(f, JSON.stringify({ ...base, optimizer: { kind: 'adamw', betas: [0.9, '0.9'] } }, null, 2));
      assert.throws(() => readRecipeFile(f), { message: `${f}: recipe.optimizer.betas[1]: expected a number in [0, 1), got "0.9"` });
      writeFileSync(f, JSON.stringify(base));
      assert.deepEqual(readRecipeFile(f), recipe(base));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('recipes: runRecipe gives the hand-written code path its numbers', function () {
  this.timeout(600000);
  let tmp = '';
  let prevCache: string | undefined;
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-runrecipe-'));
    prevCache = process.env.VITPEFT_CACHE_DIR;
    process.env.VITPEFT_CACHE_DIR = path.join(tmp, 'cache');
  });
  after(() => {
    if (prevCache === undefined) delete process.env.VITPEFT_CACHE_DIR;
    else process.env.VITPEFT_CACHE_DIR = prevCache;
    rmSync(tmp, { recursive: true, force: true });
  });
  const root = (): string => path.join(tmp, 'runs');

  it('supervised full training = trainSupervised (losses and accuracy equal)', async () => {
    const emb = await loadEmbedded(EMB_OPTS);
    const sup = { steps: 5, batch: 8, lr: 3e-3, minLr: 1e-5, warmupSteps: 2, weightDecay: 0.05, labelSmoothing: 0.1, rrcScale: [0.7, 1] as const, hflip: true, clipGradNorm: 1 };
    const vit = createVit('vit_tiny_patch16_224', { ...TINY_VIT, dropPathRate: 0.1 }, { seed: 2 });
    const ref = await trainSupervised(vit, emb.satellite.rgb.train, sup, { seed: 2, val: emb.satellite.rgb.test });
    disposeVit(vit);
    const res = await runRecipe(
      {
        name: 'tiny-full',
        seed: 2,
        model: { kind: 'vit', preset: 'vit_tiny_patch16_224', overrides: { ...TINY_VIT, dropPathRate: 0.1 } },
        adapters: { kind: 'full' },
        objective: { kind: 'supervised', labelSmoothing: 0.1 },
        data: { source: EMB, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'supervised', size: 16, rrcScale: [0.7, 1], hflip: true, stats: 'imagenet' } } },
        batch: 8,
        steps: 5,
        lr: 3e-3,
        schedule: { kind: 'cosine', warmup: { steps: 2 }, minLr: 1e-5, warmupStart: 0 },
        weightDecay: 0.05,
        clipGrad: 1,
        eval: { kind: 'accuracy', test: { splits: [{ split: 'test', subset: null }], transform: { name: 'normalize', stats: 'imagenet' } }, at: { steps: [] }, batch: 100 },
      },
      { root: root() },
    );
    assert.deepEqual(res.steps.map((s) => s.loss), ref.losses);
    assert.equal(res.summary.finalTestAcc, ref.evals[ref.evals.length - 1].accuracy);
  });

  it('M-ExPLoRA = setupExploraMae + trainLoop on a loader (the notebook-01 path), from a checkpoint file', async () => {
    const emb = await loadEmbedded(EMB_OPTS);
    const enc = { imgSize: 16, patchSize: 4, embedDim: 32, depth: 3, numHeads: 2 };
    const dec = { embedDim: 16, depth: 1, numHeads: 2 };
    // the "source model": a fresh MAE saved to a file, loaded by both sides
    const src = createMae('mae_vit_base_patch16', { encoder: enc, decoder: dec, seed: 9 });
    const file = path.join(tmp, 'src-mae.safetensors');
    const { saveCheckpoint, loadCheckpoint } = await import('../lib/io/checkpoint');
    saveCheckpoint(file, { params: maeVariables(src) });
    disposeMae(src);
    const mae = createMae('mae_vit_base_patch16', { encoder: enc, decoder: dec, skipInit: true });
    loadCheckpoint(file, { params: maeVariables(mae) });
    const rec = exploraRecipe('M-ExPLoRA-[L]-r4', { decoderRank: 2 });
    const run = setupExploraMae(mae, rec, { seed: 4, train: { blr: 4e-3, effectiveBatch: 8, epochs: 2, warmupEpochs: 0.5 } });
    const loader = new Loader(emb.satellite.rgb.train, { batchSize: 8, seed: 4, transform: maePretrain(16, IMAGENET_STATS) });
    const ipe = loader.stepsPerEpoch;
    const ref = await trainLoop({
      params: run.trainable, optimizer: run.optimizer, steps: 2 * ipe, seed: 4, lr: run.schedule(ipe), weightDecay: run.weightDecay,
      batch: async (s) => {
        const b = await loader.batchAt(s);
        b.labels?.dispose();
        return b.images!;
      },
      loss: (x, rng) => run.loss(x, rng),
    });
    run.dispose();
    disposeMae(mae);
    const res = await runRecipe(
      {
        name: 'tiny-mexplora',
        seed: 4,
        model: { kind: 'mae', preset: 'mae_vit_base_patch16', encoder: enc, decoder: dec },
        weights: { kind: 'checkpoint', path: file, head: 'keep', stripPrefixes: [], ignore: null, allowMissing: null },
        adapters: { kind: 'explora', notation: 'M-ExPLoRA-[L]-r4', overrides: { decoderRank: 2 } },
        objective: { kind: 'mae', maskRatio: 0.75, normPixLoss: true },
        data: { source: EMB, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'mae-pretrain', size: 16, stats: 'imagenet' } } },
        batch: 8,
        steps: null,
        epochs: 2,
        optimizer: { kind: 'adamw', betas: [0.9, 0.95], eps: 1e-8, layerDecay: 1, patchEmbedLrMult: 1 },
        lr: { base: 4e-3, scale: 'linear-256' },
        schedule: { kind: 'cosine', warmup: { epochs: 0.5 }, minLr: 0, warmupStart: 0 },
        eval: {
          kind: 'probe',
          train: { splits: [{ split: 'train', subset: null }], transform: { name: 'normalize', stats: 'imagenet' } },
          val: { splits: [{ split: 'val', subset: null }], transform: { name: 'normalize', stats: 'imagenet' } },
          test: { splits: [{ split: 'test', subset: null }], transform: { name: 'normalize', stats: 'imagenet' } },
          at: { epochs: [0] },
          featureBatch: 7,
          probe: { nLastBlocks: [1, 3], avgpool: [false, true], lrs: [1e-2, 0.1], batchSize: 10, epochs: 2, itersPerEpoch: 3, momentum: 0.9, weightDecay: 0, initStd: 0.01 },
          knn: { k: 5, temperature: 0.07 },
          saveEncoder: true,
        },
      },
      { root: root() },
    );
    assert.deepEqual(res.steps.map((s) => [s.loss, s.lr]), ref.map((s: StepInfo) => [s.loss, s.lr]));
    assert.deepEqual(res.evals.map((e) => e.step), [0, 2 * ipe]);
    assert.ok(res.evals.every((e) => typeof e.probeTest === 'number' && typeof e.knn === 'number'));
    assert.ok(existsSync(path.join(res.dir, 'checkpoints', `encoder-step${2 * ipe}.safetensors`)));
    const checks = Object.fromEntries(res.checks.map((c) => [c.check.replace(/ \(of \d+\)/, ''), c]));
    assert.equal(checks['LoRA = identity at init (max |Δ CLS|)'].value, 0);
    assert.equal(checks['frozen parameters changed'].value, 0);
    assert.ok(checks['merged == base + LoRA after training (max |Δ CLS|)'].ok);
    assert.equal(checks['tensors leaked over the run'].value, 0);
  });

  it('D-ExPLoRA = createExploraDino + trainExploraDino (D_EXPLORA_SMALL shape, 3 steps)', async () => {
    const emb = await loadEmbedded(EMB_OPTS);
    const cfg = dExploraConfig('D_EXPLORA_SMALL', {
      modelOverrides: { imgSize: 16, embedDim: 32, depth: 2, numHeads: 2 },
      objective: { head: { hiddenDim: 32, bottleneckDim: 16, outDim: 32 }, nLocalCrops: 2, globalCropSize: 16, localCropSize: 8 },
      train: { batchSize: 4, epochs: 3, itersPerEpoch: 1, warmupEpochs: 1, freezeLastLayerEpochs: 1 },
    });
    const run = createExploraDino(cfg, { seed: 5 });
    const loader = new Loader(emb.satellite.rgb.train, { batchSize: 4, seed: 5, views: exploraDinoViews(cfg) });
    const ref = await trainExploraDino(run, loader, { steps: 3 });
    run.dispose();
    const r = dExploraRecipe(cfg, {
      name: 'tiny-dexplora',
      description: '',
      seed: 5,
      data: { source: EMB, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'dino-multicrop', blurMode: 'effective', rgb: true } } },
      weights: { kind: 'init' },
    });
    const res = await runRecipe(r, { root: root() });
    assert.equal(res.steps.length, 3);
    assert.deepEqual(res.steps.map((s) => [s.loss, s.dino, s.ibot, s.koleo, s.lr, s['gradNorm.backbone']]), ref.map((m) => [m.loss, m.dino, m.ibot, m.koleo, m.lr, m.gradNorm.backbone]));
    assert.ok(res.checks.every((c) => c.ok), JSON.stringify(res.checks));
  });

  it('PYRA = buildPyraModel + trainLoop on preloaded tensors gathered by a seeded permutation (the notebook-02 path)', async () => {
    const emb = await loadEmbedded(EMB_OPTS);
    // preload train ∪ val once, as the notebook did
    const pre = async (ds: typeof emb.satellite.rgb.train): Promise<{ x: tf.Tensor4D; y: tf.Tensor1D }> => {
      const xs: tf.Tensor4D[] = [];
      const ys: tf.Tensor1D[] = [];
      for await (const b of new Loader(ds, { batchSize: 7, shuffle: false, transform: vtab(16) }).epoch(0)) {
        xs.push(b.images!);
        ys.push(b.labels!);
      }
      const out = { x: tf.concat(xs) as tf.Tensor4D, y: tf.concat(ys) as tf.Tensor1D };
      tf.dispose([...xs, ...ys]);
      return out;
    };
    const tr = await pre(emb.satellite.rgb.train);
    const va = await pre(emb.satellite.rgb.val);
    const X = tf.concat([tr.x, va.x]) as tf.Tensor4D;
    const Y = tf.concat([tr.y, va.y]) as tf.Tensor1D;
    tf.dispose([tr.x, tr.y, va.x, va.y]);
    const B = 8;
    const n = X.shape[0];
    const vit = createVit('vit_tiny_patch16_224', { ...TINY_VIT, dropPathRate: 0.1 }, { seed: 6 });
    const cfg: PyraPresetConfig = { method: 'pyra', backbone: 'vit_tiny_patch16_224', schedule: [4, 3], loraRank: 2, loraInit: 'kaiming', loraDropout: 0.1, propAttn: true };
    const pm = buildPyraModel(vit, cfg, { seed: 6 });
    const opt = new Optimizer(ADAMW_DEFAULTS, pm.trainable);
    const ref = await trainLoop({
      params: pm.trainable, optimizer: opt, steps: 6, seed: 6,
      lr: { kind: 'cosine', base: 1e-2, min: 1e-5, totalIters: 6, warmupIters: 2, warmupStart: 1e-6 }, weightDecay: { kind: 'constant', value: 1e-4 },
      batch: (step) => {
        const perEpoch = Math.floor(n / B);
        const idx = Rng.derive(6, 'order', Math.floor(step / perEpoch)).permutation(n).slice((step % perEpoch) * B, ((step % perEpoch) + 1) * B);
        return tf.tidy(() => ({ x: tf.gather(X, idx) as tf.Tensor4D, y: tf.gather(Y, idx) as tf.Tensor1D }));
      },
      loss: (b, rng) => crossEntropy(vitForward(vit, b.x, { hooks: pm.hooks, training: true, rng }).logits!, b.y),
    });
    opt.dispose();
    pm.dispose();
    disposeVit(vit);
    tf.dispose([X, Y]);
    const res = await runRecipe(
      {
        name: 'tiny-pyra',
        seed: 6,
        model: { kind: 'vit', preset: 'vit_tiny_patch16_224', overrides: { ...TINY_VIT, dropPathRate: 0.1 } },
        adapters: { kind: 'pyra', method: 'pyra', backbone: 'vit_tiny_patch16_224', schedule: [4, 3], loraRank: 2, loraInit: 'kaiming', loraDropout: 0.1, propAttn: true, trainHead: true },
        objective: { kind: 'supervised', labelSmoothing: 0 },
        data: { source: EMB, train: { splits: [{ split: 'train', subset: null }, { split: 'val', subset: null }], transform: { name: 'vtab', size: 16 } } },
        batch: B,
        steps: 6,
        lr: 1e-2,
        schedule: { kind: 'cosine', warmup: { steps: 2 }, minLr: 1e-5, warmupStart: 1e-6 },
        weightDecay: 1e-4,
        eval: { kind: 'accuracy', test: { splits: [{ split: 'test', subset: null }], transform: { name: 'vtab', size: 16 } }, at: { every: 3 }, batch: 100 },
      },
      { root: root() },
    );
    assert.deepEqual(res.steps.map((s) => s.loss), ref.map((s) => s.loss));
    assert.equal(res.summary.lastBlockWD, 0, "the last merging block's W_D has no gradient path");
    assert.deepEqual(res.evals.map((e) => e.step), [3, 6]);
  });

  /** A tiny M-ExPLoRA and a tiny D-ExPLoRA recipe (fresh init) for the resume test. */
  const tinyMae = (): RecipeInput => ({
    name: 'tiny-mae',
    seed: 7,
    model: { kind: 'mae', preset: 'mae_vit_base_patch16', encoder: { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2 }, decoder: { embedDim: 16, depth: 1, numHeads: 2 } },
    adapters: { kind: 'explora', notation: 'M-ExPLoRA-[L]-r4', overrides: { decoderRank: 2 } },
    objective: { kind: 'mae', maskRatio: 0.75, normPixLoss: true },
    data: { source: EMB, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'mae-pretrain', size: 16, stats: 'imagenet' } } },
    batch: 8,
    steps: 5,
    optimizer: { kind: 'adamw', betas: [0.9, 0.95], eps: 1e-8, layerDecay: 1, patchEmbedLrMult: 1 },
    lr: 2e-3,
    schedule: { kind: 'cosine', warmup: { steps: 1 }, minLr: 0, warmupStart: 0 },
  });
  const tinyDino = (): Recipe => ({
    ...dExploraRecipe(
      dExploraConfig('D_EXPLORA_SMALL', {
        modelOverrides: { imgSize: 16, embedDim: 32, depth: 2, numHeads: 2 },
        objective: { head: { hiddenDim: 32, bottleneckDim: 16, outDim: 32 }, nLocalCrops: 2, globalCropSize: 16, localCropSize: 8 },
        train: { batchSize: 4, epochs: 5, itersPerEpoch: 1, warmupEpochs: 1, freezeLastLayerEpochs: 2 },
      }),
      { name: 'tiny-dino', description: '', seed: 8, data: { source: EMB, train: { splits: [{ split: 'train', subset: null }], transform: { name: 'dino-multicrop', blurMode: 'effective', rgb: true } } }, weights: { kind: 'init' } },
    ),
    checkpointEvery: 2,
  });

  for (const [what, make, until] of [['supervised LoRA', tinyLora, 4], ['M-ExPLoRA', tinyMae, 2], ['D-ExPLoRA', tinyDino, 3]] as const) {
    it(`resuming a stopped run folder continues bit for bit: ${what} (metrics and final state equal the uninterrupted run)`, async () => {
      const full = await runRecipe(make(), { root: root() });
      const part = await runRecipe(make(), { root: root(), until });
      assert.equal(part.status, 'stopped');
      assert.equal(readRun(part.dir).status, 'running');
      // a torn, half-written later line must not matter either
      const m = path.join(part.dir, 'metrics.jsonl');
      writeFileSync(m, `${readFileSync(m, 'utf8')}{"step": ${until}, "loss": 9`);
      const done = await resumeRun(part.dir);
      assert.equal(done.status, 'done');
      assert.equal(done.steps.length, full.steps.length);
      assert.deepEqual(strip(readMetrics(done.dir)), strip(readMetrics(full.dir)));
      const a = tensorsOf(path.join(full.dir, 'checkpoints', 'state.safetensors'));
      const b = tensorsOf(path.join(done.dir, 'checkpoints', 'state.safetensors'));
      assert.deepEqual([...b.keys()], [...a.keys()]);
      for (const [k, v] of a) assert.deepEqual(b.get(k), v, k);
      const env = JSON.parse(readFileSync(path.join(done.dir, 'environment.json'), 'utf8'));
      assert.deepEqual(env.sessions.map((s: { startStep: number }) => s.startStep), [0, until]);
      const stored = JSON.parse(readFileSync(path.join(done.dir, 'recipe.json'), 'utf8'));
      assert.deepEqual(stored, recipe(make()));
      // a finished run folder resumes to itself
      const again = await resumeRun(done.dir);
      assert.equal(again.status, 'done');
      assert.deepEqual(strip(again.steps), strip(done.steps));
    });
  }

  it('workers other than 1 are refused with a clear message; a broken PEFT check fails the run', async () => {
    await assert.rejects(runRecipe(tinyLora(), { root: root(), workers: 2 }), /workers: only 1 is supported for now \(data-parallel workers are not implemented yet\), got 2/);
    const s = await prepareRecipe(tinyLora({ steps: 2 }));
    try {
      const broken = Object.create(s, { identityGap: { value: () => ({ gap: 0.5, scale: 1 }) } });
      await assert.rejects(runRecipe(broken, { root: root() }), /tiny-lora: LoRA is not the identity at initialisation: max \|Δ CLS\| = 0\.5/);
    } finally {
      s.dispose();
    }
    const failed = listRuns({ root: root(), name: 'tiny-lora' }).filter((r) => r.status === 'failed');
    assert.equal(failed.length, 1);
    assert.match(String(failed[0].summary.error), /LoRA is not the identity at initialisation/);
  });

  it('a kit asset recorded for another model is refused, naming the settings', async () => {
    await assert.rejects(
      prepareRecipe({ ...RECIPES.m_explora_small, model: { ...RECIPES.m_explora_small.model, encoder: { imgSize: 32, patchSize: 4, embedDim: 64, depth: 6, numHeads: 2 } } as Recipe['model'] }),
      /recipe\.weights: .*source-mae-d96x6-p4-32px-1200s-seed0\.safetensors holds an MAE made with other settings \(stored ≠ recipe\): encoder\.embedDim: 96 ≠ 64/,
    );
  });
});

describe("recipes: the notebooks' experiments derive their runs from one recipe", () => {
  it('exploraComparison (notebook 01): only what the comparison varies changes between the five runs', () => {
    const scratch = { lr: { base: 6e-3, scale: 'linear-256' as const }, weightDecay: 0.05, warmup: { epochs: 1 } };
    const c = exploraComparison(RECIPES.m_explora_small, { prefix: 'nb01', scratch });
    assert.deepEqual(Object.values(c).map((r) => r.name).sort(), ['nb01-explora', 'nb01-lora', 'nb01-scratch', 'nb01-source', 'nb01-unfreeze']);
    const notation = (r: Recipe): string => (r.adapters as { notation: string }).notation;
    assert.equal(notation(c.explora), 'M-ExPLoRA-[L]-r8');
    assert.equal(notation(c.unfreeze), 'M-ExPLoRA-[L]');
    assert.equal(notation(c.lora), 'M-ExPLoRA-[]-r8');
    for (const r of [c.explora, c.unfreeze, c.lora]) assert.deepEqual((r.adapters as { overrides: unknown }).overrides, { decoderRank: 2 });
    for (const r of [c.unfreeze, c.lora, c.scratch]) {
      for (const k of ['data', 'batch', 'epochs', 'optimizer', 'seed', 'objective', 'model'] as const) assert.deepEqual(r[k], c.explora[k], `${r.name}.${k}`);
    }
    assert.deepEqual(c.explora.eval.kind === 'probe' && c.explora.eval.at, { epochs: [0, 4, 12] });
    for (const r of [c.unfreeze, c.lora, c.source]) assert.deepEqual(r.eval.kind === 'probe' && r.eval.at, { steps: [] });
    assert.deepEqual([c.source.adapters.kind, c.source.steps, c.source.epochs], ['frozen', 0, null]);
    assert.deepEqual([c.scratch.weights, c.scratch.adapters, c.scratch.lr, c.scratch.weightDecay], [{ kind: 'init' }, { kind: 'full' }, scratch.lr, 0.05]);
    assert.deepEqual(c.scratch.schedule, { ...c.explora.schedule, warmup: { epochs: 1 } });
    assert.deepEqual(c.unfreeze.weights, c.explora.weights);
  });

  it('pyraComparison (notebook 02): six runs, the schedules and the smaller model; nothing else changes', () => {
    const e = {
      name: 'ours',
      main: { label: 'd128', recipe: RECIPES.tome_pyra_small },
      small: { label: 'd64', model: { kind: 'vit' as const, preset: SOURCE_VIT_SPECS.d64x6.preset, overrides: { ...SOURCE_VIT_SPECS.d64x6.overrides, numClasses: 10 } }, weights: { kind: 'asset' as const, name: 'source-vit-d64x6', head: 'reinit' as const }, loraRank: 4 },
      low: [10, 10, 10, 10, 10, 7],
      high: [26, 15, 10, 5, 3, 1],
    };
    const runs = pyraComparison(e, { tags: { scale: 'ci' } });
    assert.deepEqual(Object.keys(runs), [...PYRA_METHODS]);
    const ad = (m: keyof typeof runs) => runs[m].adapters as Extract<Recipe['adapters'], { kind: 'pyra' }>;
    assert.deepEqual(PYRA_METHODS.map((m) => [runs[m].name, ad(m).method, ad(m).schedule, ad(m).loraRank]), [
      ['tome-pyra-lora', 'lora', null, 8],
      ['tome-pyra-tome-low', 'tome', e.low, 8],
      ['tome-pyra-tome-high', 'tome', e.high, 8],
      ['tome-pyra-pyra-low', 'pyra', e.low, 8],
      ['tome-pyra-pyra-high', 'pyra', e.high, 8],
      ['tome-pyra-small-lora', 'lora', null, 4],
    ]);
    assert.deepEqual(runs['small-lora'].model, e.small.model);
    assert.deepEqual(runs['small-lora'].weights, e.small.weights);
    for (const m of PYRA_METHODS) {
      assert.deepEqual(runs[m].tags, { scale: 'ci', experiment: 'ours', method: m, model: m === 'small-lora' ? 'd64' : 'd128' });
      for (const k of ['data', 'batch', 'steps', 'lr', 'schedule', 'weightDecay', 'eval', 'seed'] as const) assert.deepEqual(runs[m][k], RECIPES.tome_pyra_small[k], `${m}.${k}`);
    }
    assert.equal(pyraPaperExperiments().length, 2);
  });

  it('recipe tables, subsets and the committed assets', () => {
    const t = recipeTables({ a: recipe(tinyLora()), b: recipe(tinyLora({ lr: 2e-2, seed: 4 })) });
    assert.deepEqual(t.differing, [{ key: 'seed', a: 1, b: 4 }, { key: 'lr', a: 1e-2, b: 2e-2 }]);
    assert.ok(t.common.some((r) => r.key === 'model.overrides.embedDim' && r.value === 32));
    const s = withSubset(RECIPES.tome_pyra_small.data.train, 32);
    assert.deepEqual(s.splits.map((x) => x.subset), [{ n: 32, key: null, sorted: false }, { n: 32, key: null, sorted: false }]);
    assert.equal(assetProblem(RECIPES.tome_pyra_small), null, 'the committed d128x6 source ViT fits its recipe');
    assert.equal(assetProblem(RECIPES.m_explora_small), null, 'the committed source MAE fits its recipe');
    const other = { ...RECIPES.tome_pyra_small, model: { ...RECIPES.tome_pyra_small.model, overrides: { ...RECIPES.tome_pyra_small.model.overrides, depth: 4 } } };
    assert.match(String(assetProblem(other)), /source-vit-d128x6\.safetensors holds a backbone made with other settings \(stored ≠ recipe\): depth: 6 ≠ 4$/);
    // a fine-tuning head and regularisation may differ from the pre-training
    const head = { ...RECIPES.tome_pyra_small, model: { ...RECIPES.tome_pyra_small.model, overrides: { ...RECIPES.tome_pyra_small.model.overrides, numClasses: 3, dropPathRate: 0.2 } } };
    assert.equal(assetProblem(head), null);
  });

  it('sourceVitRecipe is the source-ViT spec as a recipe (trained by the same code, see trainSupervised above)', () => {
    const spec = SOURCE_VIT_SPECS.d64x6;
    const r = sourceVitRecipe('d64x6');
    assert.deepEqual([r.batch, r.steps, r.lr, r.weightDecay, r.clipGrad, r.seed], [spec.recipe.batch, spec.recipe.steps, spec.recipe.lr, spec.recipe.weightDecay, spec.recipe.clipGradNorm, spec.seed]);
    assert.deepEqual(r.schedule, { kind: 'cosine', warmup: { steps: spec.recipe.warmupSteps }, minLr: spec.recipe.minLr, warmupStart: 0 });
    assert.deepEqual(r.data.train.transform, { name: 'supervised', size: 32, rrcScale: [0.7, 1], hflip: true, stats: 'imagenet' });
    assert.deepEqual((r.model as { overrides: unknown }).overrides, spec.overrides);
    const short = sourceVitRecipe('d64x6', { steps: 30, batch: 8 });
    assert.deepEqual([short.steps, short.batch, (short.schedule as { warmup: unknown }).warmup], [30, 8, { steps: 3 }]);
  });
});
