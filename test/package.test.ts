/**
 * The package (`npm run build`, package.json): the built entry points `vitpeft`, `vitpeft/report`, `vitpeft/data`,
 * `vitpeft/recipes` exist and export at run time exactly the names the sources do; `exports`, `typesVersions`,
 * `main`/`types` agree; tslab's TypeScript (5.0, Node10 resolution: no `exports` support) resolves and type-checks the
 * four entry points from a folder where the package is installed; the packed tarball holds dist/ and the kernel set-up
 * and nothing of the repository's tests, notebooks or build info; the `vitpeft` launcher runs the built CLI unless the
 * sources are newer; an installed copy keeps runs and caches out of node_modules.
 * (A user's own notebook, through a packed tarball and the real kernel: test/notebooks-runner.test.ts.)
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync, copyFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..');
const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  private?: boolean;
  main: string;
  types: string;
  exports: Record<string, { types: string; require: string; default: string } | string>;
  typesVersions: Record<string, Record<string, string[]>>;
  files: string[];
  bin: Record<string, string>;
  scripts: Record<string, string>;
};
const ENTRIES = [
  { spec: 'vitpeft', sub: '.', source: '../lib/index' },
  { spec: 'vitpeft/report', sub: './report', source: '../lib/report/index' },
  { spec: 'vitpeft/data', sub: './data', source: '../data-loaders/index' },
  { spec: 'vitpeft/recipes', sub: './recipes', source: '../recipes/index' },
] as const;
const TSLAB_TSC = require.resolve('@tslab/typescript-for-tslab/bin/tsc', { paths: [path.dirname(require.resolve('tslab/package.json'))] });

describe('package: build output and entry points', function () {
  this.timeout(300000);
  let tmp = '';

  before(() => {
    // npm test builds in `typecheck`; this makes the file runnable alone (a no-op when dist/ is current).
    const r = spawnSync(process.execPath, [path.join(ROOT, 'environment', 'build.js')], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr + r.stdout);
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-pkg-'));
  });
  after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

  it('package.json is publishable: no private flag, main/types = the vitpeft entry, exports and typesVersions agree, files exist', () => {
    assert.equal(pkg.name, 'vitpeft');
    assert.equal(pkg.private, undefined);
    const dot = pkg.exports['.'] as { types: string; require: string; default: string };
    assert.equal(`./${pkg.main}`, dot.require);
    assert.equal(`./${pkg.types}`, dot.types);
    for (const e of ENTRIES) {
      const x = pkg.exports[e.sub] as { types: string; require: string; default: string };
      assert.deepEqual(Object.keys(x), ['types', 'require', 'default'], `${e.sub}: 'types' first (TypeScript reads the first matching condition)`);
      assert.equal(x.require, x.default);
      for (const f of [x.types, x.require]) assert.ok(existsSync(path.join(ROOT, f)), `${e.spec}: ${f} is built`);
      if (e.sub !== '.') assert.deepEqual(pkg.typesVersions['*'][e.sub.slice(2)], [x.types.slice(2)], `${e.spec}: typesVersions (Node10) = exports types`);
    }
    assert.deepEqual(pkg.bin, { vitpeft: 'bin/vitpeft.js', 'vitpeft-kernel': 'environment/install-kernel.sh' });
    for (const b of Object.values(pkg.bin)) assert.ok(existsSync(path.join(ROOT, b)), b);
  });

  it('the built entry points export at run time the same names as the sources', () => {
    const r = spawnSync(process.execPath, ['-e', `console.log(JSON.stringify(${JSON.stringify(ENTRIES.map((e) => e.spec))}.map((m) => Object.keys(require(m)).sort())))`], {
      cwd: path.join(ROOT, 'notebooks'), // where the notebooks resolve the package (node_modules/vitpeft)
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    const built = JSON.parse(r.stdout) as string[][];
    ENTRIES.forEach((e, i) => {
      const src = Object.keys(require(e.source) as object).sort();
      assert.deepEqual(built[i], src, `${e.spec}: built and source exports differ`);
      assert.ok(src.length > 20, `${e.spec} exports ${src.length} names`);
    });
    // vitpeft (primitives) and vitpeft/report are disjoint.
    assert.deepEqual(built[0].filter((n) => built[1].includes(n)), []);
  });

  it("tslab's TypeScript 5.0 (Node10, no `exports`) resolves and type-checks the four entry points from an installing folder, and catches a type error", () => {
    const dir = path.join(tmp, 'tsc-user');
    mkdirSync(path.join(dir, 'node_modules'), { recursive: true });
    symlinkSync(ROOT, path.join(dir, 'node_modules', 'vitpeft'));
    const good = [
      "import { init, createVit, vitForward, tf } from 'vitpeft';",
      "import type { Vit } from 'vitpeft';",
      "import { showTable, RunRecord } from 'vitpeft/report';",
      "import { loadEmbedded, Loader } from 'vitpeft/data';",
      "import { setupExploraMae } from 'vitpeft/recipes';",
      "const v: Vit = createVit('vit_tiny_patch16_224', { imgSize: 32, depth: 1 });",
      'const out = vitForward(v, tf.zeros([1, 32, 32, 3]) as tf.Tensor4D);',
      'export const used = [init, out, showTable, RunRecord, loadEmbedded, Loader, setupExploraMae];',
    ].join('\n');
    writeFileSync(path.join(dir, 'good.ts'), good);
    writeFileSync(path.join(dir, 'bad.ts'), "import { createVit } from 'vitpeft';\nexport const n: number = createVit('vit_tiny_patch16_224');\n");
    // One compile of both files (it takes tens of seconds): the only error must be the deliberate one in bad.ts.
    const r = spawnSync(process.execPath, [TSLAB_TSC, '--noEmit', '--strict', '--target', 'es2022', '--module', 'commonjs', '--moduleResolution', 'node10',
      '--esModuleInterop', '--skipLibCheck', '--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules', '@types'),
      path.join(dir, 'good.ts'), path.join(dir, 'bad.ts')], { cwd: dir, encoding: 'utf8' });
    assert.notEqual(r.status, 0);
    const errors = r.stdout.split('\n').filter((l) => /error TS/.test(l));
    assert.equal(errors.length, 1, r.stdout + r.stderr);
    assert.match(errors[0], /bad\.ts\(2,14\): error TS2322: Type 'Vit' is not assignable to type 'number'/);
  });

  it('the packed tarball: dist/ entry points, sources, bin, kernel set-up and shim; no tests, notebooks, tools or build info', () => {
    const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const files = new Set((JSON.parse(r.stdout) as Array<{ files: Array<{ path: string }> }>)[0].files.map((f) => f.path));
    for (const f of [
      'package.json', 'README.md', 'dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/lib/report/index.js', 'dist/data-loaders/index.d.ts',
      'dist/recipes/index.js', 'lib/index.ts', 'bin/vitpeft.js', 'environment/install-kernel.sh', 'environment/tslab-preload.js',
      'environment/zmq-serial.js', 'shims/tfjs-node/index.js',
    ]) assert.ok(files.has(f), `${f} is packed`);
    const unwanted = [...files].filter((f) => /^(test|notebooks|tools|bench|out|runs|\.cache|\.jupyter|node_modules)\//.test(f) || f.endsWith('.tsbuildinfo'));
    assert.deepEqual(unwanted, []);
  });

  it('bin/vitpeft.js runs the built CLI, or the TypeScript source when a checkout changed after its last build', () => {
    const dir = path.join(tmp, 'launcher');
    for (const d of ['bin', 'dist/recipes', 'recipes', 'lib']) mkdirSync(path.join(dir, d), { recursive: true });
    copyFileSync(path.join(ROOT, 'bin', 'vitpeft.js'), path.join(dir, 'bin', 'vitpeft.js'));
    symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    writeFileSync(path.join(dir, 'dist', 'recipes', 'cli.js'), "console.log('built', process.argv.slice(2).join(' ')); process.exitCode = 3;\n");
    writeFileSync(path.join(dir, 'recipes', 'cli.ts'), "const args: string[] = process.argv.slice(2);\nconsole.log('source', args.join(' '));\n");
    writeFileSync(path.join(dir, 'lib', 'x.ts'), 'export const x = 1;\n');
    writeFileSync(path.join(dir, 'dist', '.tsbuildinfo'), '{}');
    const run = () => spawnSync(process.execPath, [path.join(dir, 'bin', 'vitpeft.js'), 'run', 'r.json'], { encoding: 'utf8' });
    const t = Date.now() / 1000;
    for (const f of ['recipes/cli.ts', 'lib/x.ts']) utimesSync(path.join(dir, f), t - 100, t - 100);
    utimesSync(path.join(dir, 'dist', '.tsbuildinfo'), t - 50, t - 50);
    let r = run();
    assert.equal(r.stdout.trim(), 'built run r.json');
    assert.equal(r.status, 3, 'the exit status is passed on');
    utimesSync(path.join(dir, 'lib', 'x.ts'), t, t); // edited after the build
    r = run();
    assert.equal(r.stdout.trim(), 'source run r.json', r.stderr);
    rmSync(path.join(dir, 'dist', '.tsbuildinfo')); // an installed copy: no build info, the sources only for reading
    assert.equal(run().stdout.trim(), 'built run r.json');
    rmSync(path.join(dir, 'dist'), { recursive: true });
    rmSync(path.join(dir, 'recipes'), { recursive: true });
    r = run();
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no recipes CLI in .* \(neither dist\/recipes\/cli\.js nor recipes\/cli\.ts\)/);
  });

  it('an installed copy (inside node_modules) writes runs to the working folder and caches to the user cache, never into itself', () => {
    const dir = path.join(tmp, 'installed');
    const copy = path.join(dir, 'node_modules', 'vitpeft');
    mkdirSync(path.join(copy, 'dist', 'lib', 'report'), { recursive: true });
    writeFileSync(path.join(copy, 'package.json'), JSON.stringify({ name: 'vitpeft' }));
    copyFileSync(path.join(ROOT, 'dist', 'lib', 'report', 'paths.js'), path.join(copy, 'dist', 'lib', 'report', 'paths.js'));
    const probe = 'const p = require("./node_modules/vitpeft/dist/lib/report/paths.js"); console.log(JSON.stringify([p.projectRoot(), p.isInstalledCopy(), p.defaultRunsDir(), p.kitCacheDir()]));';
    const r = spawnSync(process.execPath, ['-e', probe], { cwd: dir, encoding: 'utf8', env: { ...process.env, XDG_CACHE_HOME: path.join(dir, 'xdg') } });
    assert.equal(r.status, 0, r.stderr);
    const [root, installed, runs, cache] = JSON.parse(r.stdout) as [string, boolean, string, string];
    assert.equal(root, copy);
    assert.equal(installed, true);
    assert.equal(runs, path.join(dir, 'runs'));
    assert.equal(cache, path.join(dir, 'xdg', 'vitpeft'));
    // The checkout itself (sources or dist/): runs and caches under the project root, as before.
    const c = spawnSync(process.execPath, ['-e', 'const p = require("./dist/lib/report/paths.js"); console.log(JSON.stringify([p.isInstalledCopy(), p.defaultRunsDir(), p.kitCacheDir()]))'], { cwd: ROOT, encoding: 'utf8' });
    assert.deepEqual(JSON.parse(c.stdout), [false, path.join(ROOT, 'runs'), path.join(ROOT, '.cache')]);
  });
});
