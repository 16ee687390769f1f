/**
 * Run records: folder layout, metrics lines, checkpoints, listing and comparing runs.
 */
import { strict as assert } from 'assert';
import { mkdtempSync, readFileSync, rmSync, existsSync, appendFileSync, writeFileSync, realpathSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { RunRecord, listRuns, runsTable, readMetrics, readRun, runsRoot, flattenConfig } from '../lib/report/runs';
import { assertJsonable } from '../lib/check';
import { projectRoot } from '../lib/report/paths';
import { backendReport } from '../lib/backend';
import { createVit, disposeVit, vitVariables } from '../lib/vit/params';
import { loadCheckpoint } from '../lib/io/checkpoint';
import { toDataFrame } from '../lib/report/table';
import { stepReporter } from '../lib/report/steps';
import { ProgressBar } from '../lib/report/progress';

describe('report/runs', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-runs-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('creates <name>-<UTC stamp>/ with run.json (config, seed, backend, git) and an empty metrics file', () => {
    const now = new Date(Date.UTC(2025, 0, 2, 3, 4, 5));
    const run = RunRecord.create('lora-r8', { config: { lr: 1e-3, model: { depth: 2 } }, seed: 7, root, now });
    assert.equal(path.basename(run.dir), 'lora-r8-20250102-030405');
    const second = RunRecord.create('lora-r8', { config: {}, seed: 7, root, now });
    assert.equal(path.basename(second.dir), 'lora-r8-20250102-030405-2', 'same second → suffixed, never overwritten');
    const stored = JSON.parse(readFileSync(path.join(run.dir, 'run.json'), 'utf8'));
    assert.equal(stored.format, 'vitpeft-run/1');
    assert.equal(stored.name, 'lora-r8');
    assert.equal(stored.seed, 7);
    assert.equal(stored.created, '2025-01-02T03:04:05.000Z');
    assert.deepEqual(stored.config, { lr: 1e-3, model: { depth: 2 } });
    assert.equal(stored.backend.backend, backendReport().backend);
    assert.equal(stored.status, 'running');
    assert.ok(stored.git === null || /^[0-9a-f]{12}$/.test(stored.git), String(stored.git));
    assert.equal(stored.dir, undefined, 'the folder is not stored (runs can move)');
    assert.equal(readFileSync(path.join(run.dir, 'metrics.jsonl'), 'utf8'), '');
  });

  it('logs metrics as JSON lines and finishes with a summary', () => {
    const run = RunRecord.create('probe', { config: { lr: 0.1 }, seed: 0, root });
    run.log(0, { loss: 2.5, phase: 'warmup' });
    run.log(1, { loss: 1.5, acc: 0.5 });
    run.log(2, { loss: NaN });
    const lines = readFileSync(path.join(run.dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.length, 3);
    assert.deepEqual({ ...lines[0], time: 't' }, { step: 0, loss: 2.5, phase: 'warmup', time: 't' });
    assert.equal(lines[2].loss, null, 'non-finite numbers are stored as null');
    assert.deepEqual(run.metrics().map((m) => m.step), [0, 1, 2]);
    run.finish({ finalLoss: 1.5 });
    const info = readRun(run.dir);
    assert.equal(info.status, 'done');
    assert.deepEqual(info.summary, { finalLoss: 1.5 });
    assert.ok(info.finished);
    assert.throws(() => run.log(-1, {}), /step must be an integer ≥ 0/);
    assert.throws(() => run.log(3, { step: 1 }), /'step' is reserved/);
    assert.throws(() => run.log(3, { x: {} as unknown as number }), /metric 'x' must be a number or string/);
  });

  it('saves checkpoints under the run that load back exactly', () => {
    const vit = createVit('vit_tiny_patch16_224', { imgSize: 32, depth: 1, numClasses: 3 }, { seed: 3 });
    const copy = createVit('vit_tiny_patch16_224', { imgSize: 32, depth: 1, numClasses: 3 }, { skipInit: true });
    try {
      const run = RunRecord.create('ckpt', { config: {}, seed: 3, root });
      const file = run.saveCheckpoint('step-10', { params: vit.params, meta: { note: 'x' } });
      assert.equal(file, path.join(run.dir, 'checkpoints', 'step-10.safetensors'));
      assert.deepEqual(run.checkpoints(), ['step-10']);
      const rep = loadCheckpoint(file, { params: copy.params });
      assert.equal(rep.meta.run, 'ckpt');
      assert.equal(rep.meta.tag, 'step-10');
      assert.equal(rep.meta.note, 'x');
      const a = vitVariables(vit).get('blocks.0.attn.qkv.weight')!;
      const b = vitVariables(copy).get('blocks.0.attn.qkv.weight')!;
      assert.equal(tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]), 0);
      assert.throws(() => run.checkpointPath('../x'), /checkpoint tag '..\/x'/);
    } finally {
      disposeVit(vit);
      disposeVit(copy);
    }
  });

  it('lists runs oldest first, filters by name, and tabulates differing config keys and metrics', () => {
    const t0 = Date.UTC(2025, 5, 1);
    const a = RunRecord.create('sweep', { config: { lr: 0.1, depth: 2, opt: { beta2: 0.95 } }, seed: 0, root, now: new Date(t0 + 1000) });
    const b = RunRecord.create('sweep', { config: { lr: 0.01, depth: 2, opt: { beta2: 0.999 } }, seed: 1, root, now: new Date(t0) });
    RunRecord.create('other', { config: {}, seed: 0, root, now: new Date(t0 + 5000) });
    [3, 2, 1].forEach((l, i) => a.log(i, { loss: l }));
    [5, 1, 4].forEach((l, i) => b.log(i, { loss: l, acc: i / 10 }));
    b.finish();
    assert.equal(listRuns({ root }).length, 3);
    const sweep = listRuns({ root, name: 'sweep' });
    assert.deepEqual(sweep.map((r) => r.seed), [1, 0], 'oldest first');
    assert.equal(listRuns({ root, name: /^oth/ }).length, 1);
    const rows = runsTable(sweep, { reduce: { loss: 'min' } });
    assert.deepEqual(Object.keys(rows[0]), ['run', 'status', 'seed', 'backend', 'steps', 'lr', 'opt.beta2', 'loss', 'acc']);
    assert.deepEqual(rows.map((r) => [r.lr, r['opt.beta2'], r.loss, r.acc, r.steps, r.status]), [
      [0.01, 0.999, 1, 0.2, 3, 'done'],
      [0.1, 0.95, 1, null, 3, 'running'],
    ]);
    assert.deepEqual(runsTable(sweep, { configKeys: ['depth'], metrics: ['loss'] }).map((r) => [r.depth, r.loss]), [[2, 4], [2, 1]]);
    const df = toDataFrame(rows);
    assert.deepEqual(df.shape, [2, 9]);
    assert.deepEqual(listRuns({ root: path.join(root, 'nope') }), []);
  });

  it('tolerates a torn last metrics line (killed run) but not corruption elsewhere', () => {
    const run = RunRecord.create('torn', { config: {}, seed: 0, root });
    run.log(0, { loss: 1 });
    appendFileSync(path.join(run.dir, 'metrics.jsonl'), '{"step": 1, "lo');
    assert.equal(readMetrics(run.dir).length, 1);
    writeFileSync(path.join(run.dir, 'metrics.jsonl'), '{"step": 0}\n{bad\n{"step": 2}\n');
    assert.throws(() => readMetrics(run.dir), /line 2 is not valid JSON/);
  });

  it('rejects bad names, seeds and non-JSON configs naming the offending key', () => {
    assert.throws(() => RunRecord.create('a/b', { config: {}, seed: 0, root }), /name 'a\/b' must start with a letter or digit/);
    assert.throws(() => RunRecord.create('a', { config: {}, seed: 0.5, root }), /seed must be an integer/);
    assert.throws(() => RunRecord.create('a', { config: { f: () => 1 } as never, seed: 0, root }), /'config\.f' is a function/);
    assert.throws(() => RunRecord.create('a', { config: { t: tf.scalar(1) } as never, seed: 0, root }), /'config\.t' is a (Tensor|Variable)/);
    const cyc: Record<string, unknown> = {};
    cyc.self = cyc;
    assert.throws(() => assertJsonable('cfg', cyc), /'cfg\.self' is a circular reference/);
    assert.throws(() => readRun(root), /run\.json does not exist/);
    assert.equal(existsSync(path.join(root, 'a')), false, 'nothing is left half written');
  });

  it('resolves the runs root from the project (not the cwd) unless VITPEFT_RUNS_DIR is set', () => {
    const saved = process.env.VITPEFT_RUNS_DIR;
    try {
      delete process.env.VITPEFT_RUNS_DIR;
      assert.equal(runsRoot(), path.join(projectRoot(), 'runs'));
      assert.equal(projectRoot(), realpathSync(path.resolve(__dirname, '..')));
      process.env.VITPEFT_RUNS_DIR = root;
      assert.equal(runsRoot(), root);
    } finally {
      if (saved === undefined) delete process.env.VITPEFT_RUNS_DIR;
      else process.env.VITPEFT_RUNS_DIR = saved;
    }
    assert.deepEqual(flattenConfig({ a: { b: 1, c: [1] }, d: null }), { 'a.b': 1, 'a.c': [1], d: null });
  });

  it('stepReporter logs trainLoop steps to the run (every n) and ticks the bar every step', () => {
    const run = RunRecord.create('steps', { config: {}, seed: 0, root });
    const bar = new ProgressBar(5, { mode: 'silent' });
    const on = stepReporter({ run, bar, logEvery: 2, extra: (i): Record<string, number> => (i.step === 3 ? { acc: 0.5 } : {}) });
    for (let step = 0; step < 5; step++) on({ step, loss: 5 - step, gradNorm: 1, lr: 0.1, weightDecay: 0, seconds: 0.01 });
    const rows = run.metrics();
    assert.deepEqual(rows.map((r) => r.step), [0, 2, 3, 4]);
    assert.equal(rows[2].acc, 0.5);
    assert.deepEqual(Object.keys(rows[0]), ['step', 'loss', 'gradNorm', 'lr', 'weightDecay', 'seconds', 'time']);
    assert.equal(bar.state.done, 5);
    assert.deepEqual(bar.state.metrics, { loss: 1, acc: 0.5 });
    assert.throws(() => stepReporter({ logEvery: 0 }), /logEvery must be an integer ≥ 1/);
  });
});
