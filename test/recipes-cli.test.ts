/**
 * The `vitpeft` command line as a user runs it: a child process of bin/vitpeft.js runs a tiny recipe file into a run
 * folder; a run stopped with `--until` and resumed from its folder gives the same metrics; bad recipe files, bad
 * options and `--workers 2` fail with messages that name the problem.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readMetrics, readRun } from '../lib/report/runs';
import { jsonErrorOffset, parseArgs } from '../recipes/cli';

const ROOT = path.resolve(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'vitpeft.js');

const RECIPE = {
  format: 'vitpeft-recipe/1',
  name: 'cli-tiny',
  seed: 2,
  model: { kind: 'vit', preset: 'vit_tiny_patch16_224', overrides: { imgSize: 16, patchSize: 4, embedDim: 32, depth: 2, numHeads: 2, numClasses: 10 } },
  adapters: { kind: 'lora', rank: 4, targets: [{ sites: 'attn.qkv', kind: 'qkv' }], train: ['head.*'] },
  objective: { kind: 'supervised', labelSmoothing: 0.1 },
  data: {
    source: { kind: 'embedded', domain: 'satellite-rgb', seed: 3, size: 16, satellitePerClass: 5, naturalPerClass: 5 },
    train: { splits: [{ split: 'train' }], transform: { name: 'supervised', size: 16, rrcScale: [0.5, 1], hflip: true } },
  },
  batch: 8,
  steps: 5,
  lr: 0.01,
  schedule: { kind: 'cosine', warmup: { steps: 1 } },
  eval: { kind: 'accuracy', test: { splits: [{ split: 'test' }], transform: { name: 'normalize' } }, at: { every: 2 } },
};

describe('vitpeft command line (child process)', function () {
  this.timeout(300000);
  let tmp = '';
  let env: NodeJS.ProcessEnv = {};
  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-cli-'));
    env = { ...process.env, VITPEFT_CACHE_DIR: path.join(tmp, 'cache') };
    writeFileSync(path.join(tmp, 'tiny.json'), JSON.stringify(RECIPE, null, 2));
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  const cli = (...args: string[]): { code: number | null; out: string; err: string } => {
    const r = spawnSync(process.execPath, [BIN, ...args], { cwd: tmp, env, encoding: 'utf8', timeout: 240000 });
    if (r.error) throw r.error;
    return { code: r.status, out: r.stdout, err: r.stderr };
  };
  const folderOf = (out: string): string => {
    const m = /^run folder: (.+)$/m.exec(out);
    assert.ok(m, out);
    return m![1];
  };
  const strip = (rows: Array<Record<string, unknown>>): Array<Record<string, unknown>> => rows.map(({ time: _t, seconds: _s, ...r }) => r);

  it('runs a recipe file into a run folder, and a stopped run resumes from its folder to the same metrics', () => {
    const a = cli('run', 'tiny.json', '--runs-dir', 'runs');
    assert.equal(a.code, 0, a.err);
    assert.match(a.out, /^status: done$/m);
    assert.match(a.out, /^check: LoRA = identity at init \(max \|Δ CLS\|\): 0 \(tolerance 0\) ok$/m);
    assert.match(a.err, /cli-tiny 5\/5 \[#{24}\] 100% .* it\/s loss=/, 'a progress bar with steps, it/s and the loss');
    const full = folderOf(a.out);
    assert.equal(path.dirname(full), path.join(tmp, 'runs'));
    assert.equal(readRun(full).status, 'done');
    assert.equal(readMetrics(full).filter((r) => typeof r.loss === 'number').length, 5);

    const b = cli('run', 'tiny.json', '--runs-dir', 'runs', '--until', '3');
    assert.equal(b.code, 0, b.err);
    assert.match(b.out, /^status: stopped after step 3 \(resume: vitpeft run /m);
    const part = folderOf(b.out);
    const c = cli('run', part);
    assert.equal(c.code, 0, c.err);
    assert.equal(folderOf(c.out), part);
    assert.match(c.out, /^status: done$/m);
    assert.deepEqual(strip(readMetrics(part)), strip(readMetrics(full)));
    const d = cli('run', part, '--quiet');
    assert.equal(d.code, 0, d.err);
    assert.match(d.out, /the run had already finished/);
    assert.equal(d.err, '');
  });

  it('bad recipe files, options and worker counts fail with the reason', () => {
    writeFileSync(path.join(tmp, 'bad.json'), JSON.stringify({ ...RECIPE, optimizer: { kind: 'adamw', betas: [0.9, '0.9'] } }));
    const bad = cli('run', 'bad.json');
    assert.equal(bad.code, 1);
    assert.equal(bad.err.trim(), 'vitpeft: bad.json: recipe.optimizer.betas[1]: expected a number in [0, 1), got "0.9"');
    writeFileSync(path.join(tmp, 'syntax.json'), '{"name": "x",\n "batch": }');
    const syn = cli('run', 'syntax.json');
    assert.equal(syn.code, 1);
    assert.match(syn.err, /^vitpeft: syntax\.json: not valid JSON at line 2/);
    const workers = cli('run', 'tiny.json', '--workers', '2', '--runs-dir', 'runs2');
    assert.equal(workers.code, 1);
    assert.match(workers.err, /workers: only 1 is supported for now/);
    const unknown = cli('run', 'tiny.json', '--epochs', '3');
    assert.equal(unknown.code, 2);
    assert.match(unknown.err, /^vitpeft: unknown option '--epochs'\n\nusage: vitpeft run/);
    const missing = cli('run', 'nope.json');
    assert.equal(missing.code, 1);
    assert.match(missing.err, /^vitpeft: nope\.json: cannot read/);
    const help = cli('--help');
    assert.equal(help.code, 0);
    assert.match(help.out, /^usage: vitpeft run <recipe\.json \| run-folder \| preset> \[options\]/);
    const show = cli('show', 'd_explora_small');
    assert.equal(show.code, 0);
    assert.equal(JSON.parse(show.out).name, 'd-explora-small');
  });

  it('parses its arguments', () => {
    assert.deepEqual(parseArgs(['run', 'r.json', '--until', '7', '--quiet']), { command: 'run', target: 'r.json', runsDir: null, until: 7, workers: 1, checks: true, quiet: true });
    assert.throws(() => parseArgs(['run']), /run: expected one recipe file, run folder or preset, got 0/);
    assert.throws(() => parseArgs(['fly']), /unknown command 'fly'; valid: run, presets, show/);
    assert.throws(() => parseArgs(['run', 'x', '--until', 'soon']), /--until: expected an integer ≥ 0, got 'soon'/);
    assert.equal(jsonErrorOffset('{"a": [1, 2,]}'), 12);
    assert.equal(jsonErrorOffset('{"a": "b\\"c", "d": [1e5, -0.5, true, null]}'), -1);
    assert.equal(jsonErrorOffset('{"a": 1} x'), 9);
  });
});
