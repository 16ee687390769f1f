/**
 * The ExPLoRA miniature (recipes/miniature.ts, tools/explora-miniature.ts, tools/miniature-claims.ts,
 * tools/make-source-dino.ts) on micro models: every method runs and records what it should; runs are deterministic and
 * paired (same seed → same first batch, masks and probe); sources are checked against the config; the claims tool
 * turns eval lines into the right verdicts; the full-DINO recipe trains everything.
 */
import { strict as assert } from 'assert';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { createMae, maeVariables, disposeMae } from '../lib/mae/mae';
import { createVit, disposeVit } from '../lib/vit/params';
import { saveCheckpoint } from '../lib/io/checkpoint';
import { vitShapes } from '../lib/peft/shapes';
import { countExplora } from '../lib/peft/explora';
import { disposeFeatures } from '../lib/eval/features';
import { EvalFeatures } from '../recipes/miniature-eval';
import {
  MaeMiniConfig, DinoMiniConfig, MiniRecord, miniDatasets, loadSourceMae, loadSourceDino, runMaeMethod, runDinoMethod, standardMethods, MiniDatasets,
} from '../recipes/miniature';
import { parseMethod, setPath } from '../tools/explora-miniature';
import { miniatureClaims, EvalLine, summaryRows } from '../recipes/miniature-claims';
import { fullDinoRecipe, sourceDinoConfig, sourceDinoTag, SOURCE_DINO_SPEC } from '../tools/make-source-dino';

const EVAL = { probe: { epochs: 1, itersPerEpoch: 2, batchSize: 16, lrs: [1e-2, 1e-1] }, knn: { k: 5, temperature: 0.07 } };

describe('ExPLoRA miniature (micro models)', function () {
  this.timeout(300000);
  let tmp = '';
  let cache = '';
  let data: MiniDatasets;
  const dataCfg = { embedded: { seed: 3, size: 16, satellitePerClass: 5, naturalPerClass: 5 }, pretrainImages: 0, evalImages: { train: 0, val: 0, test: 0 }, perSeed: false };
  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-mini-'));
    cache = path.join(tmp, 'cache');
    data = await miniDatasets({ ...dataCfg, embedded: { ...dataCfg.embedded, cacheDir: cache } });
  });
  after(() => {
    data?.dispose();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  const maeModel = { preset: 'mae_vit_base_patch16' as const, encoder: { imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2 }, decoder: { embedDim: 16, depth: 1, numHeads: 2 }, maskRatio: 0.75, normPixLoss: true };
  const maeCfg = (file: string): MaeMiniConfig => ({
    objective: 'mae',
    data: dataCfg,
    source: { checkpoint: file },
    model: maeModel,
    pretrain: { steps: 2, batch: 8, blr: 8e-3, warmupSteps: 1, decoderRank: 2 },
    scratch: { blr: 6e-3, weightDecay: 0.05, warmupSteps: 1 },
    methods: standardMethods(2),
    evalAt: [1],
    eval: EVAL,
  });

  it('MAE: every method records probe / kNN / per-image correctness / CPU; same seed → identical, paired first step', async () => {
    const file = path.join(tmp, 'src-mae.safetensors');
    const m = createMae(maeModel.preset, { encoder: maeModel.encoder, decoder: maeModel.decoder, seed: 9 });
    saveCheckpoint(file, { params: maeVariables(m), meta: { kind: 'vitpeft-source-mae/1', model: maeModel } });
    disposeMae(m);
    const cfg = maeCfg(file);
    const src = loadSourceMae(cfg);
    const n0 = tf.memory().numTensors;
    try {
      const recs: MiniRecord[] = [];
      for (const method of cfg.methods) await runMaeMethod(cfg, src, data, method, 0, (r) => void recs.push(r));
      const again = await runMaeMethod(cfg, src, data, cfg.methods[1], 0, () => undefined);
      // the source-feature cache (runMiniature's, one extraction for all seeds): same numbers as without it
      const cache: { data?: MiniDatasets; features?: EvalFeatures } = {};
      const [c0] = await runMaeMethod(cfg, src, data, cfg.methods[0], 0, () => undefined, { sourceFeatures: cache });
      const [c1] = await runMaeMethod(cfg, src, data, cfg.methods[0], 1, () => undefined, { sourceFeatures: cache });
      const [u1] = await runMaeMethod(cfg, src, data, cfg.methods[0], 1, () => undefined);
      Object.values(cache.features!).forEach(disposeFeatures);
      assert.ok(c0.cpu.extract > 0);
      assert.equal(c1.cpu.extract, 0, 'the second seed reuses the features');
      const key = (r: MiniRecord): unknown[] => [r.probeTest, r.probeVal, r.knn, r.ridgeTest, r.probeCorrect, r.knnCorrect, r.ridgeCorrect];
      assert.deepEqual(key(c1), key(u1));
      assert.deepEqual(key(c0), key(recs[0]));
      assert.equal(tf.memory().numTensors, n0, 'no tensors left behind');
      const by = (name: string, step: number): MiniRecord => recs.find((r) => r.method === name && r.step === step)!;
      assert.deepEqual(recs.map((r) => `${r.method}@${r.step}`), ['source@0', 'explora@1', 'explora@2', 'unfreeze@1', 'unfreeze@2', 'lora@1', 'lora@2', 'scratch@1', 'scratch@2']);
      const nTest = data.evalSets.test.y.length;
      for (const r of recs) {
        assert.equal(r.probeCorrect.length, nTest);
        assert.equal(r.knnCorrect.length, nTest);
        assert.ok(Math.abs(r.probeTest - [...r.probeCorrect].filter((c) => c === '1').length / nTest) < 1e-12);
        assert.ok(Math.abs(r.knn - [...r.knnCorrect].filter((c) => c === '1').length / nTest) < 1e-12);
        assert.ok(r.cpu.extract > 0 && r.cpu.probe > 0);
      }
      assert.equal(by('source', 0).trainableEncoder, 0);
      assert.equal(by('explora', 2).recipe, 'M-ExPLoRA-[L]-r2');
      assert.equal(by('unfreeze', 2).recipe, 'M-ExPLoRA-[L]');
      assert.equal(by('explora', 2).trainableEncoder, countExplora(vitShapes('mae_vit_base_patch16', maeModel.encoder), 'M-ExPLoRA-[L]-r2').trainableEncoder);
      // paired: the first step sees the same batch and masks, and LoRA is the identity at init → same first loss
      assert.equal(by('explora', 1).loss, by('unfreeze', 1).loss);
      assert.equal(by('explora', 1).loss, by('lora', 1).loss);
      assert.notEqual(by('scratch', 1).loss, by('explora', 1).loss, 'scratch starts from its own initialisation');
      // deterministic
      assert.deepEqual(again.map((r) => [r.step, r.loss, r.probeTest, r.knn, r.probeCorrect]), recs.filter((r) => r.method === 'explora').map((r) => [r.step, r.loss, r.probeTest, r.knn, r.probeCorrect]));
    } finally {
      disposeMae(src);
    }
    // a source made with another model is refused, naming both
    assert.throws(() => loadSourceMae({ ...cfg, model: { ...maeModel, encoder: { ...maeModel.encoder, embedDim: 32 } } }), /records model .* the config asks for/);
  });

  it('DINO: source / D-ExPLoRA / unfreeze / scratch / full run and record; the source is checked against the config', async () => {
    const overrides = { imgSize: 16, patchSize: 4, embedDim: 16, depth: 2, numHeads: 2, posEmbedGrid: null, layerScale: 0.1 };
    const file = path.join(tmp, 'src-dino.safetensors');
    const v = createVit('vit_small_patch14_dinov2', overrides, { seed: 4 });
    saveCheckpoint(file, { params: v.params, meta: { kind: 'vitpeft-source-dino/1', spec: { model: { preset: 'vit_small_patch14_dinov2', overrides } } } });
    disposeVit(v);
    const cfg: DinoMiniConfig = {
      objective: 'dino',
      data: dataCfg,
      source: { checkpoint: file },
      model: { preset: 'vit_small_patch14_dinov2', overrides },
      ssl: { head: { hiddenDim: 16, bottleneckDim: 8, outDim: 16 }, nLocalCrops: 1, globalCropSize: 16, localCropSize: 8, targets: 'sinkhorn_knopp', teacherTemp: { warmup: 0.04, final: 0.07, warmupSteps: 1 } },
      pretrain: { steps: 2, batch: 4, baseLr: 4e-3, warmupSteps: 1, freezeLastLayerSteps: 1, momentumTeacher: 0.99, dropPathRate: 0, weightDecay: 0.04, weightDecayEnd: 0.4 },
      scratch: { baseLr: 4e-3 },
      methods: [...standardMethods(2).filter((m) => m.name !== 'lora'), { name: 'full', kind: 'full' }],
      evalAt: [],
      eval: EVAL,
    };
    const src = loadSourceDino(cfg);
    const n0 = tf.memory().numTensors;
    try {
      const recs: MiniRecord[] = [];
      for (const m of cfg.methods) await runDinoMethod(cfg, src, data, m, 1, (r) => void recs.push(r));
      assert.equal(tf.memory().numTensors, n0);
      assert.deepEqual(recs.map((r) => `${r.method}@${r.step}:${r.recipe}`), ['source@0:source', 'explora@2:D-ExPLoRA-[L]-r2', 'unfreeze@2:D-ExPLoRA-[L]', 'scratch@2:scratch', 'full@2:full']);
      const total = [...vitShapes('vit_small_patch14_dinov2', overrides).values()].reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
      assert.equal(recs[4].trainableEncoder, total, 'full continued pre-training trains every encoder parameter');
      assert.equal(recs[3].trainableEncoder, total);
      assert.ok(recs.slice(1).every((r) => Number.isFinite(r.loss!) && r.trainSteps === 2));
    } finally {
      disposeVit(src);
    }
    assert.throws(() => loadSourceDino({ ...cfg, model: { ...cfg.model, overrides: { ...overrides, depth: 3 } } }), /records model .* the config asks for/);
  });

  it('full-DINO recipe and the source spec: every parameter trains; config and tag are valid', () => {
    const o = SOURCE_DINO_SPEC.model.overrides;
    const shapes = vitShapes('vit_small_patch14_dinov2', o);
    const total = [...shapes.values()].reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);
    assert.equal(countExplora(shapes, fullDinoRecipe(o.depth)).trainableEncoder, total);
    const cfg = sourceDinoConfig(SOURCE_DINO_SPEC, 75);
    assert.equal(cfg.train.epochs * cfg.train.itersPerEpoch, SOURCE_DINO_SPEC.train.epochs * 75);
    assert.equal(cfg.objective.targets.kind, 'sinkhorn_knopp');
    assert.match(sourceDinoTag(SOURCE_DINO_SPEC), /^d\d+x\d+-p\d+-\d+px-\d+ep-seed\d+$/);
  });

  it('command-line helpers: methods and --set paths', () => {
    assert.deepEqual(parseMethod('u2:[L-1,L]:', 8), { name: 'u2', kind: 'recipe', unfrozen: ['L-1', 'L'], rank: null });
    assert.deepEqual(parseMethod('r16:[L]:16', 8), { name: 'r16', kind: 'recipe', unfrozen: ['L'], rank: 16 });
    assert.deepEqual(parseMethod('a8:[L]:8:8', 8), { name: 'a8', kind: 'recipe', unfrozen: ['L'], rank: 8, alpha: 8 });
    assert.deepEqual(parseMethod('b1:[1,L]:4', 8), { name: 'b1', kind: 'recipe', unfrozen: [1, 'L'], rank: 4 });
    assert.equal(parseMethod('explora', 4).name, 'explora');
    assert.throws(() => parseMethod('x:[L]', 8), /expected one of/);
    assert.deepEqual(setPath({ a: { b: 1, c: 2 } }, 'a.b', 5), { a: { b: 5, c: 2 } });
    assert.throws(() => setPath({ a: { b: 1 } }, 'a.x', 5), /'a.x' is not a field \(have: b\)/);
  });

  it('claims tool: paired over shared seeds, verdicts from the intervals, item-level bootstrap per seed', () => {
    const line = (method: string, seed: number, acc: number, knn: number, step = 10): EvalLine => {
      const n = 200;
      const k = Math.round(acc * n);
      const kk = Math.round(knn * n);
      return {
        kind: 'eval', tag: 't', objective: 'dino', method, recipe: method, seed, step: method === 'source' ? 0 : step, probeTest: k / n, probeVal: k / n, knn: kk / n,
        probeCorrect: '1'.repeat(k) + '0'.repeat(n - k), knnCorrect: '1'.repeat(kk) + '0'.repeat(n - kk), trainableEncoder: 1, loss: 1, trainCpu: 1, trainSteps: 10,
        cpu: { extract: 1, probe: 1, knn: 0 }, ridgeTest: acc, ridgeCorrect: '1'.repeat(k) + '0'.repeat(n - k),
      };
    };
    const evals: EvalLine[] = [];
    [0, 1, 2].forEach((s) => {
      evals.push(line('source', s, 0.55, 0.3));
      evals.push(line('explora', s, 0.6 + 0.01 * s, 0.3 + 0.005 * (s - 1)));
      evals.push(line('explora', s, 0.5, 0.2, 5)); // an earlier evaluation: ignored (the final step counts)
      evals.push(line('unfreeze', s, 0.59 + 0.015 * s, 0.3));
      evals.push(line('scratch', s, 0.3, 0.2));
    });
    evals.push(line('explora', 3, 0.9, 0.9)); // seed without a source partner: not paired
    const { claims, items } = miniatureClaims(evals, { scale: 'unit test' });
    const v = Object.fromEntries(claims.map((c) => [c.claim, c]));
    assert.equal(v['ExPLoRA > source model, frozen (linear probe)'].verdict, 'reproduced');
    assert.deepEqual(v['ExPLoRA > source model, frozen (linear probe)'].seeds, [0, 1, 2]);
    assert.equal(v['ExPLoRA > source model, frozen (linear probe)'].paperValue, 8.48);
    assert.equal(v['ExPLoRA > source model, frozen (kNN)'].verdict, 'inconclusive');
    assert.equal(v['ExPLoRA ≥ unfreeze-only at equal budget (within 1 point)'].verdict, 'reproduced');
    assert.equal(v['ExPLoRA ≫ pre-training from scratch (by > 10 points)'].verdict, 'reproduced');
    assert.equal(v['ExPLoRA > source model, frozen (closed-form ridge probe)'].verdict, 'reproduced');
    assert.ok(items.length === 15);
    const rows = summaryRows(evals);
    assert.equal(rows.find((r) => r.method === 'explora')!['LP per seed'], '60.0 61.0 62.0 90.0');
    writeFileSync(path.join(tmp, 'x.json'), JSON.stringify(claims));
  });
});
