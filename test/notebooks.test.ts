/**
 * Every notebook of notebooks/ executed headless through the real tslab kernel (environment/run_notebooks.py, the
 * kernel started in notebooks/ as Jupyter does), its HTML export opened in headless Chromium (the plotly chart must
 * draw), and re-run cells checked for leaks. Skipped, with the reason, where Jupyter is not installed.
 *
 * The notebooks run at the `ci` scale (VITPEFT_SCALE=ci: every cell, smallest budgets) and write their runs to a temporary folder.
 * `VITPEFT_NOTEBOOK_TESTS` selects them: `all` (default), `none`, or a comma list of names (`00-quickstart,...`).
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, readdirSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { committedNotebooks } from '../environment/notebooks';
import { readClaims } from '../lib/report/claims';
import { ROOT, jupyterMissing, chromiumPath, runNotebooks, RunResult, executedCells, streamText, mimes, displayText } from './notebook-harness';

/** The committed notebooks this run executes (VITPEFT_NOTEBOOK_TESTS). */
function selectedNotebooks(): string[] {
  const sel = (process.env.VITPEFT_NOTEBOOK_TESTS ?? 'all').trim();
  const all = committedNotebooks();
  if (sel === 'all' || sel === '') return all;
  if (sel === 'none') return [];
  const names = sel.split(',').map((s) => s.trim().replace(/\.ipynb$/, ''));
  const byName = new Map(all.map((f) => [path.basename(f, '.ipynb'), f]));
  const unknown = names.filter((n) => !byName.has(n));
  if (unknown.length) throw new Error(`VITPEFT_NOTEBOOK_TESTS: no notebook ${unknown.join(', ')}; valid: ${[...byName.keys()].join(', ')}, all, none`);
  return names.map((n) => byName.get(n)!);
}

/** Per-notebook budget for a smoke run on 2 shared cores (issue 8: ≤ 10 minutes each), plus kernel start-up. */
const NOTEBOOK_BUDGET_S = 12 * 60;

describe('notebooks through the real tslab kernel', function () {
  const notebooks = selectedNotebooks();
  this.timeout(Math.max(300, notebooks.length * NOTEBOOK_BUDGET_S + 120) * 1000);
  let tmp = '';
  let all: RunResult | null = null;
  const selected = (name: string): boolean => notebooks.some((f) => path.basename(f) === name);

  before(function () {
    const why = jupyterMissing();
    if (why) {
      console.log(`      (skipping the notebook tests: ${why})`);
      this.skip();
    }
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-nb-'));
    if (notebooks.length) {
      all = runNotebooks(['--scale', 'ci', ...notebooks], path.join(tmp, 'out'), { VITPEFT_RUNS_DIR: path.join(tmp, 'runs') },
        notebooks.length * NOTEBOOK_BUDGET_S + 60);
    }
  });
  after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

  for (const file of committedNotebooks()) {
    const rel = path.relative(ROOT, file);
    it(`${rel} runs without a cell error`, function () {
      if (!notebooks.includes(file)) this.skip();
      const s = all!.summary.find((x) => x.notebook === rel);
      assert.ok(s, `${rel} was not run:\n${all!.stderr}`);
      console.log(`      ${rel}: ${s!.seconds} s`);
      assert.ok(s!.ok, `${rel} failed:\n${s!.error}`);
    });
  }

  it('00-quickstart: outputs as expected (tables, chart, progress, checks) and nothing on stderr', function () {
    if (!selected('00-quickstart.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '00-quickstart.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const all = cells.flatMap(mimes);
    assert.ok(all.includes('application/vnd.plotly.v1+json'), 'a plotly chart');
    assert.ok(all.includes('text/html'));
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /backend\s+wasm/);
    assert.match(text, /LoRA \+ head 30\/30 \[#{24}\] 100%/, 'the progress bar ends complete');
    assert.match(text, /identity at init: max \|Δlogits\| = 0/);
    assert.match(text, /merged == base \+ LoRA\s.*\strue/);
    const loss = /loss ([\d.]+) → ([\d.]+); train accuracy ([\d.]+)/.exec(text);
    assert.ok(loss, text);
    assert.ok(Number(loss![2]) < Number(loss![1]) / 2, `LoRA + head should fit one batch: ${loss![0]}`);
    // The run record landed where VITPEFT_RUNS_DIR points.
    const runs = readdirSync(path.join(tmp, 'runs')).filter((d) => d.startsWith('quickstart-'));
    assert.equal(runs.length, 1);
    const info = JSON.parse(readFileSync(path.join(tmp, 'runs', runs[0], 'run.json'), 'utf8'));
    assert.equal(info.status, 'done');
    assert.equal(info.config.scale, 'ci');
    assert.equal(info.backend.backend, 'wasm');
    assert.equal(info.summary.reloadGap, 0);
    assert.ok(existsSync(path.join(tmp, 'runs', runs[0], 'checkpoints', 'merged.safetensors')));
    assert.equal(readFileSync(path.join(tmp, 'runs', runs[0], 'metrics.jsonl'), 'utf8').trim().split('\n').length, 30);
  });

  it('01-explora-mae: walkthrough (counts, invariants, run folder with checkpoints, reconstructions), 3-seed comparison, claims, forest plot; nothing on stderr', function () {
    if (!selected('01-explora-mae.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '01-explora-mae.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const all = cells.flatMap(mimes);
    assert.ok(all.filter((m) => m === 'application/vnd.plotly.v1+json').length >= 2, 'Fig. 3 and the forest plot');
    assert.ok(all.includes('image/png'), 'sample grid and reconstructions');
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /counts check: ours = formula for all three recipes; ViT-L\/16 M-ExPLoRA-\[L\]-r64 = 18,722,816/);
    assert.match(text, /LoRA = identity at init \(max \|Δ CLS\|\)\s+0\s+0\s+true/);
    assert.match(text, /frozen parameters changed \(of \d+\)\s+0\s+0\s+true/);
    assert.match(text, /merged == base \+ LoRA after training \(max \|Δ CLS\|\)\s+\S+\s+\S+\s+true/);
    assert.match(text, /source-mae-d96x6-p4-32px-1200s-seed0\.safetensors/, 'the committed source checkpoint was loaded');
    // The walkthrough's M-ExPLoRA recipe run, done, with no leak and its checkpoints.
    const dirs = readdirSync(path.join(tmp, 'runs')).filter((d) => d.startsWith('nb01-explora-') && !d.startsWith('nb01-explora-mae-'));
    assert.equal(dirs.length, 1, `one nb01-explora run: ${dirs.join(', ')}`);
    const info = JSON.parse(readFileSync(path.join(tmp, 'runs', dirs[0], 'run.json'), 'utf8'));
    assert.equal(info.status, 'done');
    assert.equal(info.config.tags.scale, 'ci');
    assert.equal(info.summary.leakedTensors, 0);
    assert.ok(existsSync(path.join(tmp, 'runs', dirs[0], 'recipe.json')), 'a recipe run (recipe.json)');
    assert.ok(readdirSync(path.join(tmp, 'runs', dirs[0], 'checkpoints')).some((f) => /^encoder-step\d+\.safetensors$/.test(f)), 'a merged-encoder checkpoint');
    // The comparison: source / ExPLoRA / unfreeze on 3 seeds, scratch on seed 0; claims written and readable.
    for (const m of ['source', 'explora', 'unfreeze']) {
      for (const seed of [0, 1, 2]) assert.match(text, new RegExp(`"method":"${m}","seed":${seed},`), `${m} seed ${seed} evaluated`);
    }
    assert.match(text, /"method":"scratch","seed":0,/);
    assert.doesNotMatch(text, /"method":"scratch","seed":[12],/);
    assert.match(text, /live tensors after the comparison: \d+/);
    const claims = readClaims(path.join(tmp, 'runs', 'nb01-explora-mae-ci', 'claims.jsonl'));
    assert.ok(claims.length >= 5, `${claims.length} claims`);
    for (const c of claims) {
      assert.ok(['reproduced', 'not reproduced', 'inconclusive'].includes(c.verdict));
      assert.match(c.scale, /^ci: M-ExPLoRA miniature/);
      assert.match(c.row, /^M-ExPLoRA miniature: /);
    }
    assert.equal(claims.find((c) => /from scratch/.test(c.claim))!.ours.perSeed.length, 1);
    assert.match(JSON.stringify(cells), /This execution\*\* \(ci: M-ExPLoRA miniature/, 'the claims restated as markdown');
    assert.ok(existsSync(path.join(tmp, 'out', '01-explora-mae', 'claims.jsonl')), 'claims recorded for the scoreboard');
  });

  it('02-tome-pyra: token counts, MACs, identity at init, six fine-tuning runs, plots and parameter counts; nothing on stderr', function () {
    if (!selected('02-tome-pyra.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '02-tome-pyra.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /high\s+\[26,15,10,5,3,1\]\s+65 → 39, 24, 14, 9, 6, 5\s+65 → 39, 24, 14, 9, 6, 5\s+true/, 'tokens per block = schedule');
    assert.match(text, /vit_base_patch16_224\s+high\s+5\s+5\.071\s+5\.07/, "ViT-B high MACs as the paper's");
    assert.equal((text.match(/= ToMe \+ LoRA (low|high)\s+0\s+true/g) ?? []).length, 2, 'PYRA = ToMe + LoRA at init, both schedules');
    assert.match(text, /pyra_vit_b16_low\s+85798656\s+294912\s+9402/);
    const charts = cells.flatMap(mimes).filter((m) => m === 'application/vnd.plotly.v1+json').length;
    assert.ok(charts >= 2, `accuracy curves and accuracy-vs-throughput charts (${charts})`);
    const runs = readdirSync(path.join(tmp, 'runs'));
    for (const m of ['lora', 'tome-low', 'tome-high', 'pyra-low', 'pyra-high', 'small-lora']) {
      const dirs = runs.filter((d) => d.startsWith(`tome-pyra-${m}-`));
      assert.equal(dirs.length, 1, `one run of ${m}: ${runs.join(', ')}`);
      const info = JSON.parse(readFileSync(path.join(tmp, 'runs', dirs[0], 'run.json'), 'utf8'));
      assert.equal(info.status, 'done');
      assert.equal(info.config.tags.scale, 'ci');
      assert.ok(existsSync(path.join(tmp, 'runs', dirs[0], 'recipe.json')), `${m}: a recipe run (recipe.json)`);
      assert.ok(info.summary.finalTestAcc >= 0 && info.summary.finalTestAcc <= 1);
      if (m.startsWith('pyra')) assert.equal(info.summary.lastBlockWD, 0, 'the last merging block\'s W_D never moves');
    }
    // Its claims (one seed: recorded without an interval, so inconclusive) reach the scoreboard next to the output folder.
    const claims = readFileSync(path.join(tmp, 'out', '02-tome-pyra', 'claims.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(claims.map((c) => [c.row, c.verdict, c.ours.lo, c.seeds.length, c.paperValue]), [
      ['ours: smaller model − ToMe + LoRA high', 'inconclusive', null, 1, 0.66],
      ['ours: PYRA high − ToMe + LoRA high', 'inconclusive', null, 1, 1.56],
      ['ours: PYRA high − smaller model', 'inconclusive', null, 1, 0.9],
    ]);
    const sb = JSON.parse(readFileSync(path.join(tmp, 'scoreboard.json'), 'utf8'));
    const entry = sb.notebooks.find((e: { notebook: string }) => e.notebook === '02-tome-pyra');
    assert.equal(entry.scale, 'ci');
    assert.equal(entry.claims.length, 3);
    assert.ok(existsSync(path.join(tmp, 'scoreboard.html')));
  });

  it('03-explora-dino: paper counts, every method × 3 seeds evaluated, Fig. 3, claims written and readable, nothing on stderr', function () {
    if (!selected('03-explora-dino.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '03-explora-dino.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /D-ExPLoRA-\[L\]-r64\s+18724864\s+6\.17\s+18\.7M\s+77\.48/, 'the paper-scale ExPLoRA row with its exact count');
    assert.match(text, /D-ExPLoRA-\[L\]\s+12695552\s+4\.19\s+12\.7M\s+74\.83/);
    assert.match(text, /source-dino-d32x2-p8-32px-2ep-seed0\.safetensors/, 'the committed ci source was loaded');
    for (const m of ['source', 'explora', 'unfreeze', 'scratch']) {
      for (const seed of [0, 1, 2]) assert.match(text, new RegExp(`"method":"${m}","seed":${seed},`), `${m} seed ${seed} evaluated`);
    }
    assert.ok(cells.flatMap(mimes).includes('application/vnd.plotly.v1+json'), 'the Fig. 3 chart');
    const file = path.join(tmp, 'runs', 'nb03-explora-dino-ci', 'claims.jsonl');
    const claims = readClaims(file);
    assert.ok(claims.length >= 5, `${claims.length} claims`);
    for (const c of claims) {
      assert.deepEqual(c.ours.perSeed.length, 3);
      assert.ok(['reproduced', 'not reproduced', 'inconclusive'].includes(c.verdict));
      assert.match(c.scale, /^ci: /);
    }
  });

  it('10-pyra-vtab: VTAB-style table (one task per group, group means, the mean of group means), claims written, cost rows; nothing on stderr', function () {
    if (!selected('10-pyra-vtab.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '10-pyra-vtab.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /objects\s+natural\s+10/);
    assert.match(text, /count\s+structured\s+6/);
    assert.match(text, /method\s+objects\s+satellite\s+count\s+natural\s+specialized\s+structured\s+VTAB avg \(ours\)\s+VTAB avg \(paper\)/);
    assert.match(text, /pyra-high\s+.*\s72\.06\n/, "the paper's ViT-B PYRA high average beside ours");
    assert.match(text, /adverse compression/);
    const runs = readdirSync(path.join(tmp, 'runs'));
    for (const m of ['tome-high', 'pyra-high', 'small-lora']) {
      assert.equal(runs.filter((d) => d.startsWith(`vtab10-${m}-count-s`)).length, 2, `two final seeds of ${m} on count: ${runs.join(', ')}`);
    }
  });

  it('11-pyra-ablations: ablation rows as recipe variants, the table beside the paper, claims; nothing on stderr', function () {
    if (!selected('11-pyra-ablations.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '11-pyra-ablations.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /wr_noact\s+\+ W_r only, no activation\s+\{"design":"parallel","generators":"wr","activation":false/);
    assert.match(text, /PYRA \(W_r & W_D, activation\)\s+.*73\.91 \/ 82\.6 \/ 59\.66\s+72\.06/);
    const runs = readdirSync(path.join(tmp, 'runs'));
    assert.ok(runs.some((d) => d.startsWith('vtab11-wd_act-count-s1')), runs.join(', '));
    const rec = JSON.parse(readFileSync(path.join(tmp, 'runs', runs.find((d) => d.startsWith('vtab11-wd_act-count-s1'))!, 'recipe.json'), 'utf8'));
    assert.equal(rec.adapters.variant.generators, 'wd');
  });

  it('12-pyra-compression: schedule family, interleaved throughput per schedule, accuracy over seeds, curves, training cost, bench rows, claims; nothing on stderr', function () {
    if (!selected('12-pyra-compression.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '12-pyra-compression.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    const all = cells.flatMap(mimes);
    assert.ok(all.filter((m) => m === 'application/vnd.plotly.v1+json').length >= 2, 'accuracy and speed-up charts');
    assert.match(text, /65 → 42 → 25 → 15 → 9 → 7 → 5/, "T = 5: PYRA's high token profile rescaled to 65 tokens, 6 blocks");
    assert.match(text, /\[40,34,30,24,18,14,10,8,4,4,3,3\]\s+5\.07/, "T = 5 on ViT-B/16 is PYRA's released high schedule, 5.07 GMACs");
    assert.match(text, /PYRA ÷ ToMe time/);
    assert.match(text, /adverse compression/);
    assert.match(text, /What this run shows/);
    assert.match(text, /live tensors: 0/);
    const runs = readdirSync(path.join(tmp, 'runs'));
    for (const m of ['lora', 'small-lora', 'tome-T5', 'pyra-T5']) {
      assert.equal(runs.filter((d) => d.startsWith(`nb12-${m}-satellite-s`)).length, 2, `two seeds of ${m}: ${runs.join(', ')}`);
    }
    const claims = readClaims(path.join(tmp, 'out', '12-pyra-compression', 'claims.jsonl'));
    assert.equal(claims.length, 3);
    assert.deepEqual(claims.map((c) => c.seeds), [[0, 1], [0, 1], [0, 1]]);
  });

  it('08-wilds: hospital protocol, six runs probed at step 0 (the source) and at the end, macro F1, intervals, claims file; nothing on stderr', function () {
    if (!selected('08-wilds.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '08-wilds.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /pretrain\s+\d+\s+1, 2\s+0/, 'pre-training on the unlabelled target hospitals');
    assert.match(text, /train\s+\d+\s+0, 3, 4\s+2/);
    assert.match(text, /tensors leaked over the run\s+0\s+0\s+true/);
    assert.equal((text.match(/mean \[95 % CI\], n = 3/g) ?? []).length, 2, 'both tasks summarised over 3 seeds');
    for (const task of ['camelyon17', 'iwildcam']) {
      for (const seed of [0, 1, 2]) {
        const dirs = readdirSync(path.join(tmp, 'runs')).filter((d) => d.startsWith(`nb08-${task}-explora-s${seed}-`));
        assert.equal(dirs.length, 1, `one nb08-${task} seed-${seed} run`);
        const info = JSON.parse(readFileSync(path.join(tmp, 'runs', dirs[0], 'run.json'), 'utf8'));
        assert.equal(info.status, 'done');
        assert.equal(info.config.tags.scale, 'ci');
        assert.equal(info.config.seed, seed);
        const evals = readFileSync(path.join(tmp, 'runs', dirs[0], 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => typeof l.probeTest === 'number');
        assert.deepEqual(evals.map((e) => e.step), [0, 3]);
        if (task === 'iwildcam') assert.ok(evals.every((e) => e.probeTestMacroF1 >= 0 && e.probeTestMacroF1 <= 1));
      }
    }
    const claims = readFileSync(path.join(tmp, 'out', '08-wilds', 'claims.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(claims.length, 2);
    for (const c of claims) {
      assert.equal(c.ours.n, 3);
      assert.equal(c.paperValue, null);
      assert.ok(['reproduced', 'not reproduced', 'inconclusive'].includes(c.verdict));
    }
  });

  it('04-explora-finetune: stage 1 merged encoder → stage 2 runs per seed from it, Table 2 beside ours, 3 paired claims; nothing on stderr', function () {
    if (!selected('04-explora-finetune.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '04-explora-finetune.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /LoRA = identity at init \(max \|Δ CLS\|\)\s+0\s+0\s+true/);
    assert.match(text, /merged == base \+ LoRA after training/);
    assert.match(text, /D-\[L\]-r64 \+ LoRA-r8 \(ExPLoRA\)\s+79\.28/, "the paper's Table 2 row beside ours");
    assert.match(text, /DinoV2 \+ LoRA-r8\s+78\.08/);
    const runs = readdirSync(path.join(tmp, 'runs'));
    const stage1 = runs.filter((d) => d.startsWith('nb04-explora-2'));
    assert.equal(stage1.length, 1, `one shared stage-1 run: ${runs.join(', ')}`);
    const encoder = path.join(tmp, 'runs', stage1[0], 'checkpoints', 'encoder-step2.safetensors');
    assert.ok(existsSync(encoder), 'stage 1 saved the merged encoder');
    for (const m of ['nb04-explora-lora-r8', 'nb04-source-lora-r8', 'nb04-source-full']) {
      // full fine-tuning on seeds 0 and 1 only at ci (fullSeeds: the claims' pairing over a subset, through the kernel)
      const seeds = m === 'nb04-source-full' ? [0, 1] : [0, 1, 2];
      const dirs = runs.filter((d) => d.startsWith(`${m}-`));
      assert.equal(dirs.length, seeds.length, `${seeds.length} seeds of ${m}`);
      const infos = dirs.map((d) => JSON.parse(readFileSync(path.join(tmp, 'runs', d, 'run.json'), 'utf8')));
      assert.deepEqual(infos.map((i) => i.config.seed).sort(), seeds);
      for (const i of infos) {
        assert.equal(i.status, 'done');
        if (m === 'nb04-explora-lora-r8') assert.equal(i.config.weights.path, encoder, 'stage 2 starts from the stage-1 encoder');
        else assert.match(i.config.weights.path, /source-mae-.*\.safetensors$/);
        assert.equal(i.config.adapters.kind, m === 'nb04-source-full' ? 'full' : 'finetune-lora');
      }
    }
    const claims = readClaims(path.join(tmp, 'out', '04-explora-finetune', 'claims.jsonl'));
    assert.equal(claims.length, 3);
    assert.deepEqual(claims.map((c) => c.ours.n), [3, 2, 2], 'the full fine-tuning claims pair over seeds 0 and 1');
    for (const c of claims) {
      assert.equal(c.tableOrFigure, 'Table 2 (fMoW-RGB fine-tuning)');
      assert.ok(c.paperValue !== null);
      assert.match(c.scale, /^ci: every stage/, 'the scale named once, from the scale description');
    }
  });

  it('09-spacenet: unlabelled pretrain split, three runs segmented at step 0 (the source) and at the end, IoU with intervals, mask figure, claims file; nothing on stderr', function () {
    if (!selected('09-spacenet.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '09-spacenet.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const all = cells.flatMap(mimes);
    assert.ok(all.includes('application/vnd.plotly.v1+json'), 'the IoU chart');
    assert.ok(all.includes('image/png'), 'the mask figure');
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /pretrain\s+24\s+no \(unlabelled\)/, 'pre-training on the chips without masks');
    assert.match(text, /tensors leaked over the run\s+0\s+0\s+true/);
    assert.equal((text.match(/mean \[95 % CI\], n = 3/g) ?? []).length, 1, 'summarised over 3 seeds');
    assert.match(text, /unknown \(table not retrieved\)/, 'the paper number is stated as unknown');
    assert.match(text, /Measured at `ci`/);
    assert.match(text, /live tensors: 0/);
    for (const seed of [0, 1, 2]) {
      const dirs = readdirSync(path.join(tmp, 'runs')).filter((d) => d.startsWith(`nb09-spacenet-explora-s${seed}-`));
      assert.equal(dirs.length, 1, `one nb09 seed-${seed} run`);
      const info = JSON.parse(readFileSync(path.join(tmp, 'runs', dirs[0], 'run.json'), 'utf8'));
      assert.equal(info.status, 'done');
      assert.equal(info.config.tags.scale, 'ci');
      const evals = readFileSync(path.join(tmp, 'runs', dirs[0], 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => typeof l.segMIoU === 'number');
      assert.deepEqual(evals.map((e) => e.step), [0, 3]);
    }
    const claims = readFileSync(path.join(tmp, 'out', '09-spacenet', 'claims.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(claims.length, 1);
    assert.equal(claims[0].ours.n, 3);
    assert.equal(claims[0].paperValue, null);
    assert.ok(['reproduced', 'not reproduced', 'inconclusive'].includes(claims[0].verdict));
  });

  it('06-multispectral: group-MAE M-ExPLoRA runs fine-tuned at step 0 and at the end (sites + EuroSAT-13), 3 seeds, paper row, claims file; nothing on stderr', function () {
    if (!selected('06-multispectral.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '06-multispectral.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /embedded-temporal-sentinel-train\s+train\s+M-ExPLoRA pre-training \(labels unused\)\s+\d+\s+8\s+13/, 'the 13-band sites');
    assert.match(text, /tensors leaked over the run\s+0\s+0\s+true/);
    assert.match(text, /mean \[95 % CI\], n = 3/);
    assert.match(text, /60\.15 \(29\.7M\)/, "the paper's number beside ours");
    for (const seed of [0, 1, 2]) {
      const dirs = readdirSync(path.join(tmp, 'runs')).filter((d) => d.startsWith(`nb06-multispectral-explora-s${seed}-`));
      assert.equal(dirs.length, 1, `one nb06 seed-${seed} run`);
      const info = JSON.parse(readFileSync(path.join(tmp, 'runs', dirs[0], 'run.json'), 'utf8'));
      assert.equal(info.status, 'done');
      assert.equal(info.config.tags.scale, 'ci');
      const evals = readFileSync(path.join(tmp, 'runs', dirs[0], 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => typeof l.sitesTest === 'number');
      assert.deepEqual(evals.map((e) => e.step), [0, 3]);
      assert.ok(evals.every((e) => e.eurosatTest >= 0 && e.eurosatTest <= 1));
    }
    const claims = readFileSync(path.join(tmp, 'out', '06-multispectral', 'claims.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(claims.length, 2);
    for (const c of claims) {
      assert.equal(c.ours.n, 3);
      assert.ok(['reproduced', 'not reproduced', 'inconclusive'].includes(c.verdict));
    }
  });

  it('07-temporal: temporal-MAE M-ExPLoRA runs on 3-date samples fine-tuned at step 0 and at the end, 3 seeds, reference row, claims file; nothing on stderr', function () {
    if (!selected('07-temporal.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '07-temporal.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /train\s+\d+\s+8\s+3\s+\[\d+, \d+, \d+\]/, 'triplets with timestamp codes');
    assert.match(text, /tensors leaked over the run\s+0\s+0\s+true/);
    assert.match(text, /mean \[95 % CI\], n = 3/);
    assert.match(text, /79\.99/, 'the reference number beside ours');
    for (const seed of [0, 1, 2]) {
      const dirs = readdirSync(path.join(tmp, 'runs')).filter((d) => d.startsWith(`nb07-temporal-explora-s${seed}-`));
      assert.equal(dirs.length, 1, `one nb07 seed-${seed} run`);
      const evals = readFileSync(path.join(tmp, 'runs', dirs[0], 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((l) => typeof l.sitesTest === 'number');
      assert.deepEqual(evals.map((e) => e.step), [0, 3]);
    }
    const claims = readFileSync(path.join(tmp, 'out', '07-temporal', 'claims.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(claims.length, 1);
    assert.equal(claims[0].ours.n, 3);
  });

  it('05-checkpoints: malicious pickle refused, key report, forward = PyTorch, exact peft / transformers / timm round trips', function () {
    if (!selected('05-checkpoints.ipynb')) this.skip();
    const cells = executedCells(path.join(tmp, 'out', '05-checkpoints.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    const text = cells.map((c) => `${streamText(c, 'stdout')}\n${displayText(c)}`).join('\n');
    assert.match(text, /refused global 'posix\.system'/);
    assert.match(text, /explora key map: \d+ loaded, 12 ignored, 12 checked/);
    assert.match(text, /checked\s+—\s+backbone\.blocks\.0\.attn\.q_proj\.weight\s+\[24,24\]/, 'the key report table');
    assert.match(text, /within 2e-5\s+true/, 'forward equals the PyTorch reference');
    assert.match(text, /max \|Δ\| after peft round trip\s+0/);
    assert.match(text, /transformers\s+model\.safetensors\s+.*\s0\n/);
    assert.match(text, /timm\s+timm\.safetensors\s+.*1 kept\s+0\n/);
    assert.match(text, /float path vs the 8-bit path/);
  });

  it('the exported HTML draws the plotly chart in headless Chromium (no network)', function () {
    if (!selected('00-quickstart.ipynb')) this.skip();
    const chromium = chromiumPath();
    if (!chromium) {
      console.log('      (skipping: chromium is not installed; sudo environment/setup-system.sh installs it)');
      this.skip();
    }
    const html = path.join(tmp, 'out', '00-quickstart.html');
    const page = readFileSync(html, 'utf8');
    assert.equal(page.split('window.__vitpeftDefine = window.define').length - 1, 1, 'plotly.js injected exactly once');
    const profile = mkdtempSync(path.join(tmp, 'chromium-'));
    const r = spawnSync(
      chromium!,
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--virtual-time-budget=10000', '--dump-dom', `file://${html}`],
      { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 120000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const dom = r.stdout;
    assert.ok(/class="main-svg"/.test(dom), 'plotly created its SVG');
    assert.ok(/class="scatterlayer/.test(dom), 'with a scatter layer');
    const trace = /<g class="trace scatter[^"]*"[^>]*>.*?<path class="js-line"[^>]* d="(M[^"]+)"/s.exec(dom);
    assert.ok(trace, 'a drawn line trace');
    assert.ok(trace![1].split('L').length >= 10, `the loss curve is drawn through its points (plotly simplifies collinear runs): ${trace![1].slice(0, 80)}…`);
    assert.match(dom, /class="vitpeft-plot[^"]*"[^>]*><div class="plot-container plotly"/, 'the chart is inside the kit\'s plot div');
  });

  it('re-running a model-building cell in the kernel neither leaks tensors nor clashes on variable names', () => {
    const r = runNotebooks(['--no-html', path.join(ROOT, 'test', 'fixtures', 'notebooks', 'rerun.ipynb')], path.join(tmp, 'rerun'));
    assert.equal(r.status, 0, r.stderr);
    const text = executedCells(path.join(tmp, 'rerun', 'rerun.ipynb')).map((c) => streamText(c, 'stdout')).join('');
    const slots = [...text.matchAll(/^SLOT (\d+) (\S+) (\S+)$/gm)];
    assert.equal(slots.length, 3, text);
    assert.deepEqual(slots.map((m) => m[1]), [slots[0][1], slots[0][1], slots[0][1]], 'same number of live tensors after every re-run');
    assert.equal(new Set(slots.map((m) => m[2])).size, 3, 'each run has its own variable scope');
    assert.equal(new Set(slots.map((m) => m[3])).size, 1, 'same seed → same model');
    // Without a slot the same cell leaks one model per run (what the check above would catch) but still runs.
    const bare = [...text.matchAll(/^BARE (\d+) /gm)].map((m) => Number(m[1]));
    const start = Number(/^START (\d+)$/m.exec(text)![1]);
    const perModel = Number(slots[0][1]) - start;
    assert.ok(perModel > 0);
    assert.deepEqual(bare, [Number(slots[0][1]) + perModel, Number(slots[0][1]) + 2 * perModel]);
  });
});
