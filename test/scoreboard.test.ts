/**
 * The reproduction scoreboard: notebooks record claims (recordClaims), the gatherer collects them with each notebook
 * run's scale and time (gatherScoreboard / mergeScoreboards / environment/scoreboard.ts), the page draws in headless
 * Chromium.
 */
import { strict as assert } from 'assert';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { ClaimHeader, ClaimRecord, claimFromPairs, claimFromSeeds } from '../lib/report/claims';
import { recordClaims, notebookClaimsFile, notebookOutDir, claimKey } from '../lib/report/notebook-claims';
import {
  gatherScoreboard, mergeScoreboards, readScoreboard, scoreboardMarkdown, scoreboardRows, writeScoreboard, verdictCounts, Scoreboard,
} from '../lib/report/scoreboard';
import { scoreboardHtml, forestFigure, claimThreshold } from '../lib/report/scoreboard-html';
import { notebookScale, NOTEBOOK_SCALES } from '../lib/report/notebook';
import { README_START, README_END, replaceReadmeBlock } from '../environment/scoreboard';
import { chromiumPath } from './notebook-harness';

const ROOT = path.resolve(__dirname, '..');
const TSX = path.join(ROOT, 'node_modules', '.bin', 'tsx');

const H = (row: string, o: Partial<ClaimHeader> = {}): ClaimHeader => ({
  paper: 'ExPLoRA (arXiv 2406.10973)', tableOrFigure: 'Table 1', row, metric: 'linear-probe top-1 difference (points)', paperValue: 8.48,
  claim: 'ExPLoRA > source model, frozen', test: { kind: 'greater', margin: 0 }, scale: 'smoke: ViT D96×6, 32 px', seeds: [0, 1, 2], ...o,
});
// Three claims with the three verdicts, from real per-seed numbers (paired t intervals).
const REPRO = (): ClaimRecord => claimFromPairs(H('ExPLoRA vs source'), [61, 62.5, 63], [58, 59, 59.5]);
const NOT = (): ClaimRecord => claimFromPairs(H('ExPLoRA vs unfreeze-only', { claim: 'ExPLoRA ≥ unfreeze-only', test: { kind: 'not-less', tolerance: 0.5 }, paperValue: 1.2 }), [55, 54, 55.5], [60, 60.5, 61]);
const ONE = (): ClaimRecord => claimFromSeeds(H('PYRA high vs ToMe high', { paper: 'PYRA (ECCV 2024)', tableOrFigure: 'VTAB-1k averages', seeds: [0], paperValue: null }), [1.5]);

function tmp(): string {
  return mkdtempSync(path.join(os.tmpdir(), 'vitpeft-scoreboard-'));
}

function summary(out: string, entries: object[]): void {
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'summary.json'), JSON.stringify(entries));
}

function runCli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(TSX, [path.join(ROOT, 'environment', 'scoreboard.ts'), ...args], { cwd: ROOT, encoding: 'utf8', timeout: 120000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('reproduction scoreboard', function () {
  this.timeout(180000);
  let dir: string;
  beforeEach(() => {
    dir = tmp();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('the claims used here carry the verdicts the rule gives (reproduced / not reproduced / no interval → inconclusive)', () => {
    assert.equal(REPRO().verdict, 'reproduced');
    assert.equal(NOT().verdict, 'not reproduced');
    assert.equal(ONE().verdict, 'inconclusive');
    assert.match(ONE().reason, /no interval/);
    assert.ok(Number.isNaN(ONE().ours.lo));
  });

  it('recordClaims writes validated JSON lines; a re-recorded claim replaces its earlier record, others are kept', () => {
    const r1 = recordClaims('01-explora', [REPRO(), NOT()], { dir });
    assert.equal(r1.file, path.join(dir, '01-explora', 'claims.jsonl'));
    assert.equal(r1.file, notebookClaimsFile('01-explora', dir));
    const lines = readFileSync(r1.file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as ClaimRecord);
    assert.deepEqual(lines.map((c) => c.row), ['ExPLoRA vs source', 'ExPLoRA vs unfreeze-only']);
    assert.equal(lines[0].source, '01-explora', 'the notebook is the source when none is given');
    // The first claim again, with other numbers (a re-run cell), and a new one from another cell.
    const again = claimFromPairs(H('ExPLoRA vs source'), [60, 60.5, 61], [60.2, 60.1, 60.9]);
    const r2 = recordClaims('01-explora', [again, ONE()], { dir });
    assert.equal(r2.replaced, 1);
    assert.deepEqual(r2.claims.map((c) => c.row), ['ExPLoRA vs source', 'ExPLoRA vs unfreeze-only', 'PYRA high vs ToMe high']);
    assert.equal(r2.claims[0].verdict, 'inconclusive');
    assert.deepEqual(gatherScoreboard(dir).notebooks[0].claims.map((c) => c.ours.mean), r2.claims.map((c) => c.ours.mean));
    assert.notEqual(claimKey(REPRO()), claimKey(NOT()));
  });

  it('recordClaims refuses a bad record (naming the claim and field), duplicates and bad names, and writes nothing', () => {
    recordClaims('nb', [REPRO()], { dir });
    const file = notebookClaimsFile('nb', dir);
    const before = readFileSync(file, 'utf8');
    const faked = { ...ONE(), verdict: 'reproduced' as const };
    assert.throws(() => recordClaims('nb', [NOT(), faked], { dir }), /recordClaims\(nb\) claim 1\.verdict: 'reproduced' but the rule gives 'inconclusive'/);
    const noPaper = { ...NOT() } as Partial<ClaimRecord>;
    delete noPaper.paper;
    assert.throws(() => recordClaims('nb', [noPaper as ClaimRecord], { dir }), /claim 0\.paper: expected a string/);
    assert.throws(() => recordClaims('nb', [NOT(), NOT()], { dir }), /claim 1: same paper \/ table \/ row \/ metric as claim 0/);
    assert.throws(() => recordClaims('../evil', [NOT()], { dir }), /recordClaims: expected the notebook's file name/);
    assert.throws(() => recordClaims('nb.ipynb', [NOT()], { dir }), /without \.ipynb/);
    assert.equal(readFileSync(file, 'utf8'), before, 'the file is unchanged');
  });

  it('claims go to $VITPEFT_NOTEBOOK_OUT (the runner\'s --out), else out/notebooks of the checkout', () => {
    const old = process.env.VITPEFT_NOTEBOOK_OUT;
    try {
      delete process.env.VITPEFT_NOTEBOOK_OUT;
      assert.equal(notebookOutDir(), path.join(ROOT, 'out', 'notebooks'));
      process.env.VITPEFT_NOTEBOOK_OUT = dir;
      assert.equal(recordClaims('env-nb', [REPRO()]).file, path.join(dir, 'env-nb', 'claims.jsonl'));
    } finally {
      if (old === undefined) delete process.env.VITPEFT_NOTEBOOK_OUT;
      else process.env.VITPEFT_NOTEBOOK_OUT = old;
    }
  });

  it('gathers the runner summary (scale, time, status) with each notebook\'s claims, and claims of interactive runs', () => {
    const out = path.join(dir, 'notebooks');
    summary(out, [
      { notebook: 'notebooks/01-explora.ipynb', ok: true, finished: '2026-12-02T08:00:00Z', scale: 'smoke', seconds: 812.5, html: 'out/notebooks/01-explora.html' },
      { notebook: 'notebooks/00-quickstart.ipynb', ok: true, finished: '2026-12-02T07:00:00Z', scale: null, seconds: 30, html: null },
    ]);
    recordClaims('01-explora', [REPRO(), NOT()], { dir: out });
    recordClaims('02-pyra', [ONE()], { dir: out });
    const sb = gatherScoreboard(out, new Date('2026-12-02T09:00:00.123Z'));
    assert.equal(sb.generated, '2026-12-02T09:00:00Z');
    assert.deepEqual(sb.notebooks.map((e) => [e.notebook, e.origin, e.claims.length]), [['01-explora', 'runner', 2], ['00-quickstart', 'runner', 0], ['02-pyra', 'claims file', 1]]);
    const e0 = sb.notebooks[0];
    assert.deepEqual([e0.ok, e0.scale, e0.seconds, e0.finished, e0.html, e0.path], [true, 'smoke', 812.5, '2026-12-02T08:00:00Z', path.join('notebooks', '01-explora.html'), 'notebooks/01-explora.ipynb']);
    assert.match(sb.notebooks[2].finished!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.deepEqual(verdictCounts(sb), { reproduced: 1, 'not reproduced': 1, inconclusive: 1 });
    const rows = scoreboardRows(sb);
    assert.equal(rows.length, 3);
    assert.equal(rows[0].interval, `[${+REPRO().ours.lo.toFixed(2)}, ${+REPRO().ours.hi.toFixed(2)}] (95 %, paired-t)`);
    assert.equal(rows[0]['paper value'], '8.48');
    assert.equal(rows[2].interval, '–');
    assert.equal(rows[2]['paper value'], '–');
    assert.equal(rows[0].run, '2026-12-02T08:00:00Z (smoke)');
  });

  it('a bad claims record is refused naming the file, the line and the field', () => {
    const out = path.join(dir, 'notebooks');
    const file = recordClaims('01-explora', [REPRO(), NOT()], { dir: out }).file;
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    const bad = JSON.parse(lines[1]) as Record<string, unknown>;
    (bad.ours as Record<string, unknown>).perSeed = [1, 2];
    writeFileSync(file, `${lines[0]}\n${JSON.stringify(bad)}\n`);
    assert.throws(() => gatherScoreboard(out), (e: Error) => e.message.startsWith(`${file}:2.ours.perSeed: expected 3 values`));
    writeFileSync(file, `${lines[0]}\n{"format": "vitpeft-claim/1", "paper": 3}\n`);
    assert.throws(() => gatherScoreboard(out), new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2\\.paper: expected a string, got number`));
    writeFileSync(file, `${lines[0]}\n{not json\n`);
    assert.throws(() => gatherScoreboard(out), /claims\.jsonl:2: not valid JSON/);
    summary(out, [{ ok: true }]);
    assert.throws(() => gatherScoreboard(out), /summary\.json: entry 0\.notebook: expected a string/);
  });

  it('merging keeps earlier entries of notebooks not gathered now, replaces re-gathered ones in place, appends new ones', () => {
    const out = path.join(dir, 'notebooks');
    summary(out, [{ notebook: 'notebooks/a.ipynb', ok: true, finished: '2026-12-01T10:00:00Z', scale: 'smoke', seconds: 1 }, { notebook: 'notebooks/b.ipynb', ok: true, finished: '2026-12-01T10:00:00Z', scale: 'smoke', seconds: 1 }]);
    recordClaims('a', [REPRO()], { dir: out });
    recordClaims('b', [NOT()], { dir: out });
    const earlier = gatherScoreboard(out);
    const file = path.join(dir, 'scoreboard.json');
    writeScoreboard(file, earlier);
    assert.deepEqual(readScoreboard(file), earlier);
    rmSync(out, { recursive: true });
    summary(out, [{ notebook: 'notebooks/c.ipynb', ok: false, finished: '2026-12-02T10:00:00Z', scale: 'ci', seconds: 2 }, { notebook: 'notebooks/b.ipynb', ok: true, finished: '2026-12-02T10:00:00Z', scale: 'ci', seconds: 1 }]);
    recordClaims('b', [ONE()], { dir: out });
    const merged = mergeScoreboards(readScoreboard(file), gatherScoreboard(out));
    assert.deepEqual(merged.notebooks.map((e) => [e.notebook, e.origin, e.scale, e.claims.map((c) => c.verdict).join()]), [
      ['a', 'earlier scoreboard', 'smoke', 'reproduced'],
      ['b', 'runner', 'ci', 'inconclusive'],
      ['c', 'runner', 'ci', ''],
    ]);
    assert.equal(mergeScoreboards(null, earlier), earlier);
    writeFileSync(file, JSON.stringify({ ...earlier, notebooks: [{ ...earlier.notebooks[0], claims: [{ ...REPRO(), seeds: [0, 0, 1] }] }] }));
    assert.throws(() => readScoreboard(file), /scoreboard\.json\.notebooks\[0\]\.claims\[0\]\.seeds: duplicate seeds/);
  });

  it('Markdown: the summary line, one row per claim, notebooks without claims named', () => {
    const out = path.join(dir, 'notebooks');
    summary(out, [{ notebook: 'notebooks/00-quickstart.ipynb', ok: true, finished: 't', scale: null, seconds: 1 }]);
    recordClaims('01-explora', [REPRO(), ONE()], { dir: out });
    const md = scoreboardMarkdown(gatherScoreboard(out, new Date('2026-12-02T09:00:00Z'))).split('\n');
    assert.equal(md[0], '2 claim(s) from 1 of 2 notebook(s): 1 reproduced, 0 not reproduced, 1 inconclusive (gathered 2026-12-02T09:00:00Z).');
    assert.equal(md[2], '| notebook | paper | table/figure | row | metric | paper value | ours | interval | seeds | scale | verdict |');
    assert.match(md[4], /^\| 01-explora \| ExPLoRA \(arXiv 2406\.10973\) \| Table 1 \| ExPLoRA vs source \| .* \| 8\.48 \| 3\.33 \| \[.*\] \(95 %, paired-t\) \| 3 \| smoke: ViT D96×6, 32 px \| reproduced \|$/);
    assert.match(md[5], /\| – \| 1 \| smoke: ViT D96×6, 32 px \| inconclusive \|$/);
    assert.equal(md[md.length - 1], 'Notebooks with no claims recorded: 00-quickstart.');
    const readme = `# x\n\n${README_START}\nold\n${README_END}\nafter\n`;
    assert.equal(replaceReadmeBlock('R.md', readme, 'new table'), `# x\n\n${README_START}\nnew table\n${README_END}\nafter\n`);
    assert.throws(() => replaceReadmeBlock('R.md', '# x\n', 't'), /R\.md: no scoreboard block/);
  });

  it('the forest plot: x = estimate − threshold with interval error bars, one trace per verdict, the paper\'s value', () => {
    const out = path.join(dir, 'notebooks');
    recordClaims('nb', [REPRO(), NOT(), ONE()], { dir: out });
    const fig = forestFigure(gatherScoreboard(out));
    const byName = new Map(fig.data.map((t) => [t.name as string, t]));
    assert.deepEqual([...byName.keys()], ['reproduced', 'not reproduced', 'no interval (inconclusive)', "paper's value"]);
    const n = NOT();
    assert.equal(claimThreshold(n.test), -0.5);
    const t = byName.get('not reproduced')! as { x: number[]; error_x: { array: number[]; arrayminus: number[] } };
    assert.ok(Math.abs(t.x[0] - (n.ours.mean + 0.5)) < 1e-12);
    assert.ok(Math.abs(t.x[0] + t.error_x.array[0] - (n.ours.hi + 0.5)) < 1e-12);
    assert.ok(Math.abs(t.x[0] - t.error_x.arrayminus[0] - (n.ours.lo + 0.5)) < 1e-12);
    assert.deepEqual((byName.get("paper's value") as { x: number[] }).x, [8.48, 1.7]);
    assert.equal(claimThreshold({ kind: 'within', lo: 2, hi: 3 }), 2);
    const twin = claimFromPairs(H('ExPLoRA vs source', { metric: 'kNN top-1 difference (points)' }), [61, 62.5, 63], [58, 59, 59.5]);
    recordClaims('nb', [twin], { dir: out });
    const ys = forestFigure(gatherScoreboard(out)).data.flatMap((t) => t.y as string[]);
    assert.ok(ys.includes('nb · ExPLoRA vs source (Table 1, kNN top-1 difference (points))'), ys.join(' | '));
    assert.equal(new Set(ys.filter((y) => y.startsWith('nb · ExPLoRA vs source'))).size, 2, 'two rows, one per claim');
  });

  it('the CLI writes scoreboard.json and .html next to the output folder, keeps earlier entries, prints Markdown, refuses bad files', () => {
    const out = path.join(dir, 'out', 'notebooks');
    summary(out, [{ notebook: 'notebooks/a.ipynb', ok: true, finished: '2026-12-01T10:00:00Z', scale: 'smoke', seconds: 1 }]);
    recordClaims('a', [REPRO()], { dir: out });
    let r = runCli(['--out', out]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /scoreboard: 1 claim\(s\) from 1 of 1 notebook\(s\): 1 reproduced/);
    const json = path.join(dir, 'out', 'scoreboard.json');
    assert.ok(existsSync(path.join(dir, 'out', 'scoreboard.html')));
    assert.equal(readScoreboard(json).notebooks[0].claims[0].row, 'ExPLoRA vs source');
    rmSync(out, { recursive: true });
    summary(out, [{ notebook: 'notebooks/b.ipynb', ok: true, finished: '2026-12-02T10:00:00Z', scale: 'ci', seconds: 1 }]);
    recordClaims('b', [ONE()], { dir: out });
    r = runCli(['--out', out, '--markdown']);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(readScoreboard(json).notebooks.map((e) => [e.notebook, e.origin]), [['a', 'earlier scoreboard'], ['b', 'runner']]);
    assert.match(r.stdout, /^2 claim\(s\) from 2 of 2 notebook\(s\)/);
    const before = readFileSync(json, 'utf8');
    writeFileSync(path.join(out, 'b', 'claims.jsonl'), '{"format":"vitpeft-claim/1"}\n');
    r = runCli(['--out', out]);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /b\/claims\.jsonl:1\.paper: expected a string, got undefined/);
    assert.equal(readFileSync(json, 'utf8'), before, 'nothing written');
    assert.equal(runCli(['--bogus']).status, 2);
  });

  it('workstation is a notebook scale between smoke and paper', () => {
    assert.deepEqual(NOTEBOOK_SCALES, ['ci', 'smoke', 'workstation', 'paper']);
    const old = process.env.VITPEFT_SCALE;
    try {
      process.env.VITPEFT_SCALE = 'workstation';
      assert.equal(notebookScale('smoke'), 'workstation');
      assert.throws(() => notebookScale<'ci' | 'smoke'>('smoke', ['ci', 'smoke']), /'workstation' \(from VITPEFT_SCALE\) is not one of ci, smoke/);
    } finally {
      if (old === undefined) delete process.env.VITPEFT_SCALE;
      else process.env.VITPEFT_SCALE = old;
    }
  });

  it('the page draws in headless Chromium, offline: the danfo table with every claim and the forest plot with error bars', function () {
    const chromium = chromiumPath();
    if (!chromium) {
      console.log('      (skipping: chromium is not installed; sudo environment/setup-system.sh installs it)');
      this.skip();
    }
    const out = path.join(dir, 'notebooks');
    summary(out, [{ notebook: 'notebooks/01-explora.ipynb', ok: true, finished: '2026-12-02T08:00:00Z', scale: 'smoke', seconds: 812 }]);
    recordClaims('01-explora', [REPRO(), NOT(), ONE()], { dir: out });
    const sb: Scoreboard = gatherScoreboard(out);
    const html = path.join(dir, 'scoreboard.html');
    writeFileSync(html, scoreboardHtml(sb));
    const profile = mkdtempSync(path.join(dir, 'chromium-'));
    const r = spawnSync(
      chromium!,
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--virtual-time-budget=10000', '--dump-dom', `file://${html}`],
      { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 120000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const dom = r.stdout;
    // The table: one body row per claim, in order, with the verdicts.
    const table = /<table[^>]*>.*?claims \(one row per claim\).*?<\/table>/s.exec(dom);
    assert.ok(table, 'the claims table');
    const bodyRows = table![0].split('<tbody>')[1].split('</tr>').filter((x) => /<td/.test(x));
    assert.equal(bodyRows.length, 3);
    assert.deepEqual(bodyRows.map((x) => (/(reproduced|not reproduced|inconclusive)<\/td>\s*<td[^>]*>[^<]*<\/td>\s*$/.exec(x) ?? [])[1]), ['reproduced', 'not reproduced', 'inconclusive']);
    // The chart: plotly drew it (SVG, a point per claim and per paper value, the error bars of the two intervals).
    assert.match(dom, /id="vitpeft-forest"[^>]*><div class="plot-container plotly"/);
    assert.match(dom, /class="main-svg"/);
    assert.equal((dom.match(/<path class="point"/g) ?? []).length, 3 + 2, 'three claims, two paper values');
    assert.equal((dom.match(/<g class="errorbar"/g) ?? []).length, 2, 'error bars for the two claims with intervals');
    assert.match(dom, /class="ytick"><text[^>]*>01-explora · ExPLoRA vs source</);
  });
});
