/**
 * `npx tsx bench/beyondrgb-steps.ts [config…]`: per-step costs of the beyond-RGB smoke configurations
 * (recipes/beyondrgb-smoke.ts), JSON lines: process CPU ms and wall ms per training step (median of BENCH_ITERS after
 * 2 warm-up steps) and per evaluated image. The models are the smoke sizes with random weights and synthetic inputs
 * of the right shapes (data decoding is measured by bench/embedded-beyond.ts). The machine is shared: the load average
 * is printed at the start and the end; CPU time is the number to read (wall time includes waiting for the cores).
 */
import * as tf from '@tensorflow/tfjs';
import * as os from 'os';
import { init, backendReport } from '../lib/backend';
import { Rng } from '../lib/rng';
import { Optimizer, ADAMW_DEFAULTS } from '../lib/train/optim';
import { trainStep } from '../lib/train/step';
import { crossEntropy } from '../lib/train/loss';
import { createMae, disposeMae } from '../lib/mae/mae';
import { createSatMaeGroup, disposeSatMaeGroup } from '../lib/mae/satmae-group';
import { createSatMaeTemporal, disposeSatMaeTemporal } from '../lib/mae/satmae-temporal';
import { createSatMaeGroupVit, satMaeGroupVitForward, disposeSatMaeGroupVit } from '../lib/mae/satmae-group-vit';
import { createSatMaeTemporalVit, satMaeTemporalVitForward, disposeSatMaeTemporalVit } from '../lib/mae/satmae-temporal-vit';
import { createVit, disposeVit } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';
import { createLora, qvTarget, loraHooks, disposeLora } from '../lib/peft/lora';
import { selectTrainable } from '../lib/peft/trainable';
import { createSegHead, segHeadForward, segCrossEntropy, disposeSegHead, segHeadVariables } from '../lib/seg/head';
import { vitSegTokens } from '../lib/seg/features';
import { setupExploraMae, setupExploraSatMaeGroup, setupExploraSatMaeTemporal } from '../recipes/explora-mae';
import { FINETUNE_SPEC } from '../recipes/finetune';
import { BEYOND_RGB_SMOKE as P } from '../recipes/beyondrgb-smoke';

const ITERS = Number(process.env.BENCH_ITERS ?? 5);
const out = (r: Record<string, unknown>): void => console.log(JSON.stringify(r));
const cpu = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Time `step` (2 warm-up + ITERS measured): median CPU and wall ms. */
function time(step: () => void): { cpuMs: number; wallMs: number } {
  for (let i = 0; i < 2; i++) step();
  const c: number[] = [];
  const w: number[] = [];
  for (let i = 0; i < ITERS; i++) {
    const c0 = cpu();
    const w0 = Date.now();
    step();
    c.push(cpu() - c0);
    w.push(Date.now() - w0);
  }
  return { cpuMs: Math.round(median(c)), wallMs: Math.round(median(w)) };
}

const rand = (shape: number[], seed: number): tf.Tensor => tf.randomUniform(shape, 0, 1, 'float32', seed);

const CONFIGS: Record<string, () => void> = {
  'multispectral/explora'() {
    const c = P.multispectral;
    const m = createSatMaeGroup('satmae_group_vit_base_patch8', { ...P.backbone, imgSize: c.imgSize, patchSize: c.patchSize, channelEmbedDim: c.channelEmbedDim, decoder: P.decoder, decoderChannelEmbedDim: c.decoderChannelEmbedDim });
    const run = setupExploraSatMaeGroup(m, c.explora.recipe, { train: { effectiveBatch: c.explora.batch, blr: c.explora.blr } });
    const x = rand([c.explora.batch, c.imgSize, c.imgSize, 13], 1) as tf.Tensor4D;
    const rng = new Rng(0);
    const t = time(() => trainStep({ params: run.trainable, optimizer: run.optimizer, lr: 1e-3, loss: () => run.loss(x, rng) }));
    out({ config: 'multispectral/explora', batch: c.explora.batch, ...t, trainable: run.explora.selection.summary.trainable });
    x.dispose();
    run.dispose();
    disposeSatMaeGroup(m);
  },
  'multispectral/finetune'() {
    const c = P.multispectral;
    const m = createSatMaeGroupVit('satmae_group_vit_base_patch8', { ...P.backbone, imgSize: c.imgSize, patchSize: c.patchSize, channelEmbedDim: c.channelEmbedDim, numClasses: 10, dropPathRate: c.finetune.dropPath });
    const lora = createLora(m.params, { rank: c.finetune.rank, alpha: 1, targets: [qvTarget()] });
    const sel = selectTrainable([m.params, lora.params], FINETUNE_SPEC);
    const hooks = { linear: loraHooks(lora) };
    const opt = new Optimizer(ADAMW_DEFAULTS, sel.trainable);
    const x = rand([c.finetune.batch, c.imgSize, c.imgSize, 13], 2) as tf.Tensor4D;
    const y = tf.tensor1d(Array.from({ length: c.finetune.batch }, (_, i) => i % 10), 'int32');
    const rng = new Rng(1);
    const t = time(() => trainStep({ params: sel.trainable, optimizer: opt, lr: 1e-3, loss: () => crossEntropy(satMaeGroupVitForward(m, x, { hooks, training: true, rng: rng.fork('s') }).logits!, y, 0.1) }));
    const xe = rand([128, c.imgSize, c.imgSize, 13], 3) as tf.Tensor4D;
    const e = time(() => tf.tidy(() => satMaeGroupVitForward(m, xe, { hooks }).logits!.dataSync()));
    out({ config: 'multispectral/finetune', batch: c.finetune.batch, ...t, trainable: sel.summary.trainable, evalCpuMsPerImage: +(e.cpuMs / 128).toFixed(2) });
    tf.dispose([x, y, xe]);
    opt.dispose();
    disposeLora(lora);
    disposeSatMaeGroupVit(m);
  },
  'temporal/explora'() {
    const c = P.temporal;
    const m = createSatMaeTemporal('satmae_temporal_vit_base_patch16', { ...P.backbone, imgSize: c.imgSize, patchSize: P.backbone.patchSize, timeEmbedDim: c.timeEmbedDim, decoder: P.decoder, decoderTimeEmbedDim: c.decoderTimeEmbedDim });
    const run = setupExploraSatMaeTemporal(m, c.explora.recipe, { train: { effectiveBatch: c.explora.batch, blr: c.explora.blr } });
    const x = rand([c.explora.batch, 3, c.imgSize, c.imgSize, 3], 4) as tf.Tensor5D;
    const ts = Array.from({ length: c.explora.batch }, () => [[10, 5, 11], [11, 2, 12], [13, 8, 10]]);
    const rng = new Rng(2);
    const t = time(() => trainStep({ params: run.trainable, optimizer: run.optimizer, lr: 1e-3, loss: () => run.loss({ images: x, timestamps: ts }, rng) }));
    out({ config: 'temporal/explora', batch: c.explora.batch, imgSize: c.imgSize, tokens: 3 * (c.imgSize / P.backbone.patchSize) ** 2, ...t, trainable: run.explora.selection.summary.trainable });
    x.dispose();
    run.dispose();
    disposeSatMaeTemporal(m);
  },
  'temporal/finetune'() {
    const c = P.temporal;
    const m = createSatMaeTemporalVit('satmae_temporal_vit_base_patch16', { ...P.backbone, imgSize: c.imgSize, patchSize: P.backbone.patchSize, timeEmbedDim: c.timeEmbedDim, numClasses: 62, dropPathRate: c.finetune.dropPath });
    const lora = createLora(m.params, { rank: c.finetune.rank, alpha: 1, targets: [qvTarget()] });
    const sel = selectTrainable([m.params, lora.params], FINETUNE_SPEC);
    const hooks = { linear: loraHooks(lora) };
    const opt = new Optimizer(ADAMW_DEFAULTS, sel.trainable);
    const B = c.finetune.batch;
    const x = rand([B, 3, c.imgSize, c.imgSize, 3], 5) as tf.Tensor5D;
    const ts = Array.from({ length: B }, () => [[10, 5, 11], [11, 2, 12], [13, 8, 10]]);
    const y = tf.tensor1d(Array.from({ length: B }, (_, i) => i % 8), 'int32');
    const rng = new Rng(3);
    const t = time(() => trainStep({ params: sel.trainable, optimizer: opt, lr: 1e-3, loss: () => crossEntropy(satMaeTemporalVitForward(m, x, ts, { hooks, training: true, rng: rng.fork('s') }).logits!, y, 0.1) }));
    const e = time(() => tf.tidy(() => satMaeTemporalVitForward(m, x, ts, { hooks }).logits!.dataSync()));
    out({ config: 'temporal/finetune', batch: B, ...t, trainable: sel.summary.trainable, evalCpuMsPerSample: +(e.cpuMs / B).toFixed(2) });
    tf.dispose([x, y]);
    opt.dispose();
    disposeLora(lora);
    disposeSatMaeTemporalVit(m);
  },
  'rgb/explora'() {
    const c = P.wilds;
    const mae = createMae('mae_vit_base_patch16', { encoder: { ...P.backbone, imgSize: c.imgSize }, decoder: P.decoder });
    const run = setupExploraMae(mae, c.explora.recipe, { train: { effectiveBatch: c.explora.batch, blr: c.explora.blr } });
    const x = rand([c.explora.batch, c.imgSize, c.imgSize, 3], 6) as tf.Tensor4D;
    const rng = new Rng(4);
    const t = time(() => trainStep({ params: run.trainable, optimizer: run.optimizer, lr: 1e-3, loss: () => run.loss(x, rng) }));
    out({ config: 'rgb/explora (camelyon, iwildcam, spacenet)', batch: c.explora.batch, ...t, trainable: run.explora.selection.summary.trainable });
    x.dispose();
    run.dispose();
    disposeMae(mae);
  },
  'rgb/finetune'() {
    const c = P.wilds;
    const vit = createVit('vit_base_patch16_224', { ...P.backbone, imgSize: c.imgSize, pool: 'avg', numClasses: 10, dropPathRate: c.finetune.dropPath });
    const lora = createLora(vit.params, { rank: c.finetune.rank, alpha: 1, targets: [qvTarget()] });
    const sel = selectTrainable([vit.params, lora.params], FINETUNE_SPEC);
    const hooks = { linear: loraHooks(lora) };
    const opt = new Optimizer(ADAMW_DEFAULTS, sel.trainable);
    const B = c.finetune.batch;
    const x = rand([B, c.imgSize, c.imgSize, 3], 7) as tf.Tensor4D;
    const y = tf.tensor1d(Array.from({ length: B }, (_, i) => i % 10), 'int32');
    const rng = new Rng(5);
    const t = time(() => trainStep({ params: sel.trainable, optimizer: opt, lr: 1e-3, loss: () => crossEntropy(vitForward(vit, x, { hooks, training: true, rng: rng.fork('s') }).logits!, y, 0.1) }));
    const xe = rand([128, c.imgSize, c.imgSize, 3], 8) as tf.Tensor4D;
    const e = time(() => tf.tidy(() => vitForward(vit, xe, { hooks }).logits!.dataSync()));
    out({ config: 'rgb/finetune (camelyon, iwildcam)', batch: B, ...t, trainable: sel.summary.trainable, evalCpuMsPerImage: +(e.cpuMs / 128).toFixed(2) });
    tf.dispose([x, y, xe]);
    opt.dispose();
    disposeLora(lora);
    disposeVit(vit);
  },
  'spacenet/seg'() {
    const c = P.spacenet;
    const vit = createVit('vit_base_patch16_224', { ...P.backbone, imgSize: c.imgSize, pool: 'avg', numClasses: 0 });
    const lora = createLora(vit.params, { rank: c.finetune.rank, alpha: 1, targets: [qvTarget()] });
    const head = createSegHead({ mode: c.head.mode, layers: c.head.layers, embedDim: P.backbone.embedDim, patchSize: P.backbone.patchSize });
    const sel = selectTrainable([vit.params, lora.params, head.params], [{ match: /(^|\.)lora_[AB]\./, train: true }, { match: /^decode_head\./, train: true }, { match: /.*/, train: false }]);
    const hooks = { linear: loraHooks(lora) };
    const opt = new Optimizer(ADAMW_DEFAULTS, sel.trainable);
    const B = c.finetune.batch;
    const x = rand([B, c.imgSize, c.imgSize, 3], 9) as tf.Tensor4D;
    const m = tf.tidy(() => tf.floor(rand([B, c.imgSize, c.imgSize, 1], 10).mul(2))) as tf.Tensor4D;
    const t = time(() =>
      trainStep({
        params: sel.trainable,
        optimizer: opt,
        lr: 1e-3,
        loss: () => {
          const f = vitSegTokens(vit, x, { layers: c.head.layers, hooks });
          return segCrossEntropy(segHeadForward(head, f.tokens, f.grid), m);
        },
      }),
    );
    out({ config: 'spacenet/seg (linear head + LoRA)', batch: B, ...t, trainable: sel.summary.trainable, headParams: [...segHeadVariables(head).values()].reduce((s, v) => s + v.size, 0) });
    tf.dispose([x, m]);
    opt.dispose();
    disposeSegHead(head);
    disposeLora(lora);
    disposeVit(vit);
  },
};

async function main(): Promise<void> {
  await init();
  out({ host: `${os.cpus().length}-CPU ${os.cpus()[0]?.model ?? ''}`, node: process.version, backend: backendReport().backend, loadavg: os.loadavg().map((v) => +v.toFixed(1)), iters: ITERS });
  const want = process.argv.slice(2);
  for (const k of want.length ? want : Object.keys(CONFIGS)) {
    if (!CONFIGS[k]) throw new Error(`unknown config '${k}'; valid: ${Object.keys(CONFIGS).join(', ')}`);
    CONFIGS[k]();
  }
  out({ loadavgEnd: os.loadavg().map((v) => +v.toFixed(1)), numTensors: tf.memory().numTensors });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
