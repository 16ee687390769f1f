import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { init } from '../lib/backend';
import { Rng } from '../lib/rng';
import { renderCount, renderOrientation, loadStructured } from '../data-loaders/embedded-structured';
import { RECIPES } from '../recipes/presets';
import { Recipe, recipe } from '../recipes/recipe';
import { RecipeError } from '../recipes/schema';
import { runVtab, vtabAverages, vtabTable, vtabSearchRows, embeddedVtabTasks, VtabResult, VtabTask } from '../recipes/vtab';

/** Principal-axis angle (degrees in [0, 180), counter-clockwise as seen) of the pixels that differ from the median. */
function barAngle(img: { data: Float32Array; width: number; height: number }): number {
  const S = img.width;
  const bright = (i: number): number => Math.max(img.data[3 * i], img.data[3 * i + 1], img.data[3 * i + 2]);
  const vals = Array.from({ length: S * S }, (_, i) => bright(i)).sort((a, b) => a - b);
  const med = vals[Math.floor(vals.length / 2)];
  let n = 0, mx = 0, my = 0;
  const pts: Array<[number, number]> = [];
  for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) if (Math.abs(bright(y * S + x) - med) > 0.25) pts.push([x, -y]);
  for (const [x, y] of pts) { n++; mx += x; my += y; }
  mx /= n; my /= n;
  let sxx = 0, syy = 0, sxy = 0;
  for (const [x, y] of pts) { sxx += (x - mx) ** 2; syy += (y - my) ** 2; sxy += (x - mx) * (y - my); }
  const a = (0.5 * Math.atan2(2 * sxy, sxx - syy) * 180) / Math.PI;
  return (a + 180) % 180;
}

describe('VTAB-style runner and the embedded three-split tasks', function () {
  this.timeout(600_000);
  let tmp = '';
  let prevCache: string | undefined;
  before(async () => {
    await init();
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-vtab-'));
    prevCache = process.env.VITPEFT_CACHE_DIR;
    process.env.VITPEFT_CACHE_DIR = path.join(tmp, 'cache');
  });
  after(() => {
    if (prevCache === undefined) delete process.env.VITPEFT_CACHE_DIR;
    else process.env.VITPEFT_CACHE_DIR = prevCache;
    rmSync(tmp, { recursive: true, force: true });
  });

  it('orientation: the rendered bar lies in its bin (principal axis of the foreground, 64 px)', () => {
    let inBin = 0;
    let total = 0;
    for (let bin = 0; bin < 8; bin++) {
      for (let i = 0; i < 4; i++) {
        const img = renderOrientation(bin, 64, Rng.derive(7, 'orient-test', bin, i));
        const a = barAngle(img);
        const lo = bin * 22.5 - 4;
        const hi = (bin + 1) * 22.5 + 4;
        const ok = (a >= lo && a <= hi) || (bin === 0 && a >= 176) || (bin === 7 && a <= 4);
        total++;
        if (ok) inBin++;
      }
    }
    // a bright bar on a dark background is found exactly; one whose colour is close to the background may not be
    assert.ok(inBin / total >= 0.85, `${inBin} / ${total} bars in their bin`);
  });

  it('count and orientation: deterministic from the seed, bad labels are errors', () => {
    const a = renderCount(4, 32, Rng.derive(1, 'x'));
    const b = renderCount(4, 32, Rng.derive(1, 'x'));
    assert.deepEqual(Array.from(a.data), Array.from(b.data));
    assert.notDeepEqual(Array.from(renderCount(3, 32, Rng.derive(1, 'x')).data), Array.from(a.data));
    assert.throws(() => renderCount(0, 32, Rng.derive(1, 'x')), /n must be an integer in \[1, 6\]/);
    assert.throws(() => renderOrientation(8, 32, Rng.derive(1, 'x')), /bin must be an integer in \[0, 7\]/);
  });

  it('loadStructured: ImageFolder splits 60/20/20 per class, labels = class index, cached', async () => {
    const cacheDir = path.join(tmp, 'cache');
    const t = await loadStructured('count', { seed: 0, size: 16, perClass: 5, cacheDir });
    assert.equal(t.train.length, 6 * 3);
    assert.equal(t.val.length, 6 * 1);
    assert.equal(t.test.length, 6 * 1);
    assert.ok(existsSync(path.join(cacheDir, 'structured-count-0-16-5', 'COMPLETE.json')));
    await assert.rejects(() => loadStructured('nope' as never, { cacheDir }), /unknown task 'nope'|unknown task "nope"|unknown task nope/);
    const tasks = embeddedVtabTasks();
    assert.deepEqual(tasks.map((x) => x.group), ['natural', 'specialized', 'structured', 'structured']);
  });

  it('loadStructured from several workers at once on an empty cache: every caller gets the data, one folder, no leftovers', async () => {
    // two data-parallel workers rendering the same task used to race: the later one deleted the folder the first had
    // just published and was opening ("class 'ball' has no image file")
    const cacheDir = path.join(tmp, 'cache-race');
    const all = await Promise.all([0, 1, 2, 3].map(() => loadStructured('objects', { seed: 1, size: 16, perClass: 5, cacheDir })));
    for (const t of all) {
      assert.equal(t.test.length, 10 * 1);
      await t.test.get(t.test.length - 1, new Rng(0));
    }
    assert.deepEqual(readdirSync(cacheDir), ['structured-objects-1-16-5']);
  });

  it('averages: group means, then the mean of the group means (not of the tasks), per seed', () => {
    const task = (name: string, group: VtabTask['group']): VtabTask => ({ name, group, source: embeddedVtabTasks()[0].source, numClasses: 2 });
    const res: VtabResult = {
      tasks: [task('a', 'natural'), task('b', 'specialized'), task('c', 'structured'), task('d', 'structured')],
      methods: ['m'],
      seeds: [0, 1],
      cells: [
        { method: 'm', task: 'a', group: 'natural', search: [], chosen: { lr: 1, weightDecay: 0 }, best: [60, 62], last: [60, 62], seconds: [1, 1] },
        { method: 'm', task: 'b', group: 'specialized', search: [], chosen: { lr: 1, weightDecay: 0 }, best: [90, 90], last: [90, 90], seconds: [1, 1] },
        { method: 'm', task: 'c', group: 'structured', search: [], chosen: { lr: 1, weightDecay: 0 }, best: [30, 40], last: [30, 40], seconds: [1, 1] },
        { method: 'm', task: 'd', group: 'structured', search: [], chosen: { lr: 1, weightDecay: 0 }, best: [50, 60], last: [50, 60], seconds: [1, 1] },
      ],
    };
    const av = vtabAverages(res, 'm');
    assert.deepEqual(av.groups.structured, [40, 50]);
    assert.deepEqual(av.average, [(60 + 90 + 40) / 3, (62 + 90 + 50) / 3]); // the task mean would be 57.5 / 63.5
    const row = vtabTable(res, { m: 70 })[0];
    assert.equal(row['VTAB avg (paper)'], 70);
    assert.match(String(row['VTAB avg (ours)']), /^6\d\.\d ± \d+\.\d$/);
  });

  it('runs the protocol end to end: grid search on train → val, final seeds on train ∪ val → test, run folders', async () => {
    const base = RECIPES.tome_pyra_small;
    const tiny: Recipe = recipe({
      ...base,
      weights: { kind: 'init' },
      model: { kind: 'vit', preset: 'vit_tiny_patch16_224', overrides: { imgSize: 16, patchSize: 4, depth: 2, embedDim: 16, numHeads: 2, numClasses: 10 } },
      adapters: { ...(base.adapters as Extract<Recipe['adapters'], { kind: 'pyra' }>), method: 'pyra', schedule: [2, 2], variant: { generators: 'wd' } },
      data: { ...base.data, train: { ...base.data.train, transform: { ...base.data.train.transform, size: 16 } as never } },
      eval: { ...base.eval, test: { ...base.eval.test, transform: { ...base.eval.test.transform, size: 16 } as never }, at: { every: 1 } } as never,
      steps: 2,
      batch: 4,
      schedule: { kind: 'cosine', warmup: { steps: 0 }, minLr: 0, warmupStart: 0 },
    });
    const task: VtabTask = { ...embeddedVtabTasks({ size: 16, perClass: 5 })[2] };
    const seen: string[] = [];
    const n0 = tf.memory().numTensors;
    const res = await runVtab({ wd: tiny }, [task], {
      grid: { lr: [1e-3, 1e-2], weightDecay: [0] }, seeds: [0, 1], prefix: 'vt', root: path.join(tmp, 'runs'),
      onRun: (w) => seen.push(`${w.phase}:${w.lr}:${w.seed}`),
    });
    assert.equal(tf.memory().numTensors, n0, 'no leaked tensors');
    assert.deepEqual(seen.slice(0, 2), ['search:0.001:0', 'search:0.01:0']);
    const c = res.cells[0];
    const win = c.search[0].valAcc >= c.search[1].valAcc ? c.search[0] : c.search[1];
    assert.equal(c.chosen.lr, win.lr);
    assert.equal(c.best.length, 2);
    for (const [b, l] of c.best.map((x, i) => [x, c.last[i]])) assert.ok(b >= l && b >= 0 && b <= 100);
    const runs = path.join(tmp, 'runs');
    const fin = JSON.parse(readFileSync(path.join(runs, (await import('fs')).readdirSync(runs).find((d) => d.startsWith('vt-wd-count-s1'))!, 'recipe.json'), 'utf8')) as Recipe;
    assert.deepEqual(fin.data.train.splits.map((s) => s.split), ['train', 'val']);
    assert.equal(fin.eval.kind === 'accuracy' && fin.eval.test.splits[0].split, 'test');
    assert.equal(fin.model.kind === 'vit' && fin.model.overrides.numClasses, 6);
    assert.deepEqual((fin.adapters as { variant?: unknown }).variant, { generators: 'wd' });
    assert.equal(vtabSearchRows(res).length, 1);
    // the same protocol with 2 runs at once (one worker thread each): the same search, choice and accuracies
    const side = await runVtab({ wd: tiny }, [task], { grid: { lr: [1e-3, 1e-2], weightDecay: [0] }, seeds: [0, 1], prefix: 'vt2', root: path.join(tmp, 'runs2'), lanes: 2 });
    assert.equal(tf.memory().numTensors, n0, 'no leaked tensors with lanes');
    const c2 = side.cells[0];
    assert.deepEqual(c2.search, c.search);
    assert.deepEqual([c2.chosen, c2.best, c2.last], [c.chosen, c.best, c.last]);
  });

  it('a bad variant in a recipe is an error naming the key', () => {
    const a = RECIPES.tome_pyra_small.adapters as Extract<Recipe['adapters'], { kind: 'pyra' }>;
    assert.throws(() => recipe({ ...RECIPES.tome_pyra_small, adapters: { ...a, method: 'pyra', schedule: [1], variant: { generators: 'nope' } as never } }), (e: unknown) => e instanceof RecipeError && /adapters\.variant/.test(e.message));
  });
});
