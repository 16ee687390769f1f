/**
 * The notebook runner and kernel registration against the real tslab kernel: a failing cell fails the run with its
 * real message (tslab's error replies carry none), --allow-errors really runs the later cells, and notebooks import
 * the kit the same way headless (nbclient, nbconvert CLI) and in a Jupyter Notebook server session, where the kernel
 * starts in the notebook's folder. Skipped, with the reason, where Jupyter is not installed.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import { mkdtempSync, readFileSync, rmSync, realpathSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ROOT, PYTHON, JUPYTER_PATH, jupyterMissing, chromiumPath, runNotebooks, executedCells, streamText, mimes } from './notebook-harness';

const FIX = path.join(ROOT, 'test', 'fixtures', 'notebooks');

describe('notebook runner and kernel (real tslab kernel)', function () {
  this.timeout(300000);
  let tmp = '';

  before(function () {
    const why = jupyterMissing();
    if (why) {
      console.log(`      (skipping the notebook runner tests: ${why})`);
      this.skip();
    }
    tmp = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-nbrun-'));
  });
  after(() => tmp && rmSync(tmp, { recursive: true, force: true }));

  it('npm run kernel:install registers tslab under .jupyter/ with absolute paths', () => {
    const r = spawnSync('npm', ['run', '--silent', 'kernel:install'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const spec = JSON.parse(readFileSync(path.join(JUPYTER_PATH, 'kernels', 'tslab', 'kernel.json'), 'utf8'));
    assert.deepEqual(spec.argv, [path.join(ROOT, 'node_modules', '.bin', 'tslab'), 'kernel', '--config-path', '{connection_file}']);
    assert.equal(spec.language, 'typescript');
    assert.equal(spec.env?.NODE_OPTIONS, `--require ${JSON.stringify(path.join(ROOT, 'environment', 'tslab-preload.js'))}`);
  });

  it('the kernel runs with zeromq sends serialised (preload) and delivers a burst of output in order', () => {
    const nb = {
      cells: [
        `const z = require(require.resolve('zeromq', { paths: [${JSON.stringify(path.join(ROOT, 'node_modules', 'tslab'))}] }));\n` +
          "let o = z.Publisher.prototype;\nwhile (!Object.prototype.hasOwnProperty.call(o, 'send')) o = Object.getPrototypeOf(o);\n" +
          "console.log('serialised', Boolean((z.Publisher.prototype.send as any)[Symbol.for('vitpeft.zmqSerialSend')]));",
        "for (let i = 0; i < 300; i++) console.log('line ' + i);",
      ].map((source, i) => ({ cell_type: 'code', id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null })),
      metadata: { kernelspec: { display_name: 'TypeScript', language: 'typescript', name: 'tslab' } },
      nbformat: 4,
      nbformat_minor: 5,
    };
    const dir = mkdtempSync(path.join(tmp, 'burst-'));
    const file = path.join(dir, 'burst.ipynb');
    writeFileSync(file, JSON.stringify(nb));
    const r = runNotebooks(['--no-html', file], path.join(tmp, 'burst-out'));
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /tslab-preload: zeromq sends not serialised/);
    const cells = JSON.parse(readFileSync(path.join(tmp, 'burst-out', 'burst.ipynb'), 'utf8')).cells;
    const text = (c: { outputs: { text?: string | string[] }[] }) => c.outputs.map((o) => [o.text ?? ''].flat().join('')).join('');
    assert.equal(text(cells[0]).trim(), 'serialised true');
    const lines = text(cells[1]).trim().split('\n');
    assert.deepEqual(lines, Array.from({ length: 300 }, (_, i) => `line ${i}`));
  });

  it('a failing cell fails the run with the real message: a thrown error and a type error', () => {
    const r = runNotebooks(['--no-html', path.join(FIX, 'failing.ipynb'), path.join(FIX, 'type-error.ipynb')], path.join(tmp, 'fail'));
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /failing\.ipynb: cell 1 failed:\n {4}console\.log\('before the throw'\); throw new Error/);
    assert.match(r.stderr, /--- error ---\n[\s\S]*Error: deliberate failure: tensor shape \[2,3\] is wrong/);
    assert.match(r.stderr, /type-error\.ipynb: cell 0 failed:[\s\S]*--- error ---\n1:7 - Type 'string' is not assignable to type 'number'\./);
    assert.deepEqual(r.summary.map((s) => s.ok), [false, false]);
    assert.match(r.summary[0].error!, /deliberate failure/);
    assert.match(r.stderr, /0\/2 notebooks ok/);
    // The run stopped at the error: the executed copy is written, later cells did not run.
    const cells = executedCells(path.join(tmp, 'fail', 'failing.ipynb'));
    assert.match(streamText(cells[0], 'stdout'), /first cell ran 1/);
    assert.equal(streamText(cells[2], 'stdout'), '');
  });

  it('--allow-errors runs the later cells for real (past tslab\'s 200 ms abort) and still exits 1', () => {
    const r = runNotebooks(['--no-html', '--allow-errors', path.join(FIX, 'failing.ipynb')], path.join(tmp, 'allow'));
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /deliberate failure/);
    const cells = executedCells(path.join(tmp, 'allow', 'failing.ipynb'));
    assert.match(streamText(cells[1], 'stderr'), /deliberate failure/);
    assert.equal(streamText(cells[2], 'stdout'), 'cell after the error\n');
  });

  it('the kit imports headless through the nbconvert CLI (kernel cwd = notebook folder)', () => {
    const r = spawnSync(
      PYTHON,
      ['-m', 'nbconvert', '--to', 'notebook', '--execute', '--ExecutePreprocessor.kernel_name=tslab', '--ExecutePreprocessor.timeout=240',
        '--output-dir', path.join(tmp, 'cli'), path.join(FIX, 'imports.ipynb')],
      { cwd: ROOT, encoding: 'utf8', env: { ...process.env, JUPYTER_PATH }, timeout: 280000 },
    );
    assert.equal(r.status, 0, r.stderr);
    const cell = executedCells(path.join(tmp, 'cli', 'imports.ipynb'))[0];
    const out = streamText(cell, 'stdout');
    assert.match(out, /^PARAMS \d+ BACKEND wasm INKERNEL true CWD (\S+)$/m);
    assert.equal(realpathSync(/CWD (\S+)/.exec(out)![1]), realpathSync(FIX));
    assert.ok(mimes(cell).includes('text/html'), 'showTable produced an HTML table');
  });

  it('the kit imports when the notebook is opened in a Jupyter Notebook server session', () => {
    const r = spawnSync(
      PYTHON,
      [path.join(ROOT, 'test', 'fixtures', 'jupyter_server_session.py'), ROOT, path.relative(ROOT, path.join(FIX, 'imports.ipynb')), '240'],
      { cwd: ROOT, encoding: 'utf8', env: { ...process.env, JUPYTER_PATH }, timeout: 290000 },
    );
    if (r.status !== 0 && /No module named notebook/.test(r.stderr)) {
      console.log('      (the jupyter-notebook package is missing; install it with environment/setup-system.sh)');
    }
    assert.equal(r.status, 0, r.stderr);
    const cells = JSON.parse(r.stdout.trim().split('\n').pop()!) as Array<{ status: string; stdout: string; stderr: string; mimes: string[] }>;
    assert.equal(cells.length, 1);
    assert.equal(cells[0].status, 'ok', cells[0].stderr);
    const cwd = /CWD (\S+)/.exec(cells[0].stdout);
    assert.ok(cwd, cells[0].stdout);
    assert.equal(realpathSync(cwd![1]), realpathSync(FIX), 'the server starts the kernel in the notebook folder');
    assert.match(cells[0].stdout, /INKERNEL true/);
    assert.ok(cells[0].mimes.includes('text/html'));
  });

  it('inline plotly (shipped by plotlyInit in the notebook) and PNG images render in the exported HTML', function () {
    const r = runNotebooks(['--plotly', 'inline', path.join(FIX, 'rich.ipynb')], path.join(tmp, 'rich'));
    assert.equal(r.status, 0, r.stderr);
    const cells = executedCells(path.join(tmp, 'rich', 'rich.ipynb'));
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    assert.match(streamText(cells[0], 'stdout'), /INKERNEL true/);
    assert.ok(mimes(cells[2]).includes('image/png'));
    const chromium = chromiumPath();
    if (!chromium) {
      console.log('      (chromium missing: the browser half of this test is skipped)');
      return;
    }
    const html = path.join(tmp, 'rich', 'rich.html');
    const page = readFileSync(html, 'utf8');
    assert.equal(page.split('window.__vitpeftDefine = window.define').length - 1, 1, 'plotly.js shipped once, by the notebook');
    const profile = mkdtempSync(path.join(tmp, 'chromium-'));
    const b = spawnSync(
      chromium,
      ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
        '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, '--virtual-time-budget=10000', '--dump-dom', `file://${html}`],
      { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: 120000 },
    );
    assert.equal(b.status, 0, b.stderr);
    assert.match(b.stdout, /class="vitpeft-plot[^"]*"[^>]*><div class="plot-container plotly"/);
    assert.match(b.stdout, /<g class="trace scatter[^"]*"[^>]*>.*?<path class="js-line"[^>]* d="M[^"]+"/s);
    assert.ok((b.stdout.match(/<img src="data:image\/png;base64,/g) ?? []).length >= 3, 'the PNG images are in the page');
  });
});
