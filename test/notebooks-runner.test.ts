/**
 * The notebook runner and kernel registration against the real tslab kernel: registration for the user (seen by
 * `jupyter kernelspec list`, found by `jupyter nbconvert --execute` without variables) and project-local (the runner's);
 * a failing cell fails the run with its real message (tslab's error replies carry none), --allow-errors really runs
 * the later cells; per-cell progress and a summary that keeps earlier notebooks; a kernel shutdown never crashes;
 * notebooks import `vitpeft` the same way headless (nbclient, nbconvert CLI) and in a Jupyter Notebook server session
 * (kernel cwd = the notebook's folder); a notebook saved from an interactive session stores no plotly.js and its
 * charts draw again after a reload; and a user's own notebook in another folder, with the package installed from the
 * packed tarball, runs the README's first snippet in the kernel and as a script. Skipped, with the reason, where
 * Jupyter is not installed.
 */
import { strict as assert } from 'assert';
import { spawn, spawnSync } from 'child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, realpathSync, statSync, writeFileSync, existsSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ROOT, PYTHON, JUPYTER_PATH, jupyterMissing, chromiumPath, runNotebooks, executedCells, streamText, mimes, displayText, RunResult } from './notebook-harness';

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

  it('npm run kernel:install -- --local registers tslab under .jupyter/ (absolute paths, the preload) with plotly.js for Jupyter', () => {
    const r = spawnSync('npm', ['run', '--silent', 'kernel:install', '--', '--local'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const spec = JSON.parse(readFileSync(path.join(JUPYTER_PATH, 'kernels', 'tslab', 'kernel.json'), 'utf8'));
    assert.deepEqual(spec.argv, [path.join(ROOT, 'node_modules', 'tslab', 'bin', 'tslab'), 'kernel', '--config-path', '{connection_file}']);
    assert.equal(spec.language, 'typescript');
    assert.equal(spec.env?.NODE_OPTIONS, `--require ${JSON.stringify(path.join(ROOT, 'environment', 'tslab-preload.js'))}`);
    const served = path.join(JUPYTER_PATH, 'nbextensions', 'vitpeft', 'plotly-4.1.1.js');
    assert.equal(statSync(served).size, statSync(path.join(ROOT, 'node_modules', 'plotly.js-dist', 'plotly.js')).size);
  });

  it('npm run kernel:install (for the user) is listed by `jupyter kernelspec list` and found by `jupyter nbconvert --execute` with no variables', () => {
    // JUPYTER_DATA_DIR stands in for the user's home (~/.local/share/jupyter), which other projects share.
    const data = path.join(tmp, 'user-data');
    const env: NodeJS.ProcessEnv = { ...process.env, JUPYTER_DATA_DIR: data };
    delete env.JUPYTER_PATH;
    const r = spawnSync('npm', ['run', '--silent', 'kernel:install'], { cwd: ROOT, encoding: 'utf8', env });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /kernel 'tslab' registered for user \S+ in .*user-data\/kernels/);
    const list = spawnSync('jupyter', ['kernelspec', 'list', '--json'], { encoding: 'utf8', env });
    assert.equal(list.status, 0, `jupyter kernelspec list failed (Debian package jupyter-client; environment/setup-system.sh installs it): ${list.stderr}`);
    const specs = (JSON.parse(list.stdout) as { kernelspecs: Record<string, { resource_dir: string; spec: { argv: string[] } }> }).kernelspecs;
    assert.equal(realpathSync(specs.tslab.resource_dir), realpathSync(path.join(data, 'kernels', 'tslab')));
    assert.ok(existsSync(path.join(data, 'nbextensions', 'vitpeft', 'plotly-4.1.1.js')));
    // No JUPYTER_PATH, no kernel name: nbconvert takes the notebook's kernelspec ('tslab') from the user's data folder.
    const x = spawnSync(PYTHON, ['-m', 'nbconvert', '--to', 'notebook', '--execute', '--ExecutePreprocessor.timeout=240', '--output-dir', path.join(tmp, 'cli'),
      path.join(FIX, 'imports.ipynb')], { cwd: ROOT, encoding: 'utf8', env, timeout: 280000 });
    assert.equal(x.status, 0, x.stderr);
    const cell = executedCells(path.join(tmp, 'cli', 'imports.ipynb'))[0];
    const out = streamText(cell, 'stdout');
    assert.match(out, /^PARAMS \d+ BACKEND wasm INKERNEL true CWD (\S+)$/m);
    assert.equal(realpathSync(/CWD (\S+)/.exec(out)![1]), realpathSync(FIX));
    assert.ok(mimes(cell).includes('text/html'), 'showTable produced an HTML table');
  });

  it('the kernel runs with zeromq sends serialised (preload) and delivers a burst of output in order', () => {
    const nb = {
      cells: [
        `const z = require(require.resolve('zeromq', { paths: [${JSON.stringify(path.join(ROOT, 'node_modules', 'tslab'))}] }));\n` +
          "let o = z.Publisher.prototype;\nwhile (!Object.prototype.hasOwnProperty.call(o, 'send')) o = Object.getPrototypeOf(o);\n" +
          "console.log('serialised', Boolean((z.Publisher.prototype.send as any)[Symbol.for('vitpeft.zmqSerialSend')]));",
        "for (let i = 0; i < 300; i++) console.log('line ' + i);",
        "console.log('waiting');\nawait new Promise((r) => setTimeout(r, 3500));",
      ].map((source, i) => ({ cell_type: 'code', id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null })),
      metadata: { kernelspec: { display_name: 'TypeScript', language: 'typescript', name: 'tslab' } },
      nbformat: 4,
      nbformat_minor: 5,
    };
    const dir = mkdtempSync(path.join(tmp, 'burst-'));
    const file = path.join(dir, 'burst.ipynb');
    writeFileSync(file, JSON.stringify(nb));
    const r = runNotebooks(['--no-html', '--progress-interval', '1', file], path.join(tmp, 'burst-out'));
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /tslab-preload: zeromq sends not serialised/);
    // Progress on the terminal: a line per finished cell, heartbeats with the latest output of a running cell.
    assert.match(r.stderr, /burst\.ipynb: 3 code cells/);
    assert.match(r.stderr, /^ {2}\[1\/3\] cell 0 ok +\d+\.\d s {2}const z = require/m);
    assert.match(r.stderr, /^ {2}\[2\/3\] cell 1 ok +\d+\.\d s {2}for \(let i = 0; i < 300; i\+\+\)/m);
    assert.match(r.stderr, /^ {2}\[3\/3\] cell 2 … [123] s {2}waiting$/m);
    assert.match(r.stderr, /^ {2}\[3\/3\] cell 2 ok +[3-9]\.\d s/m);
    const cells = JSON.parse(readFileSync(path.join(tmp, 'burst-out', 'burst.ipynb'), 'utf8')).cells;
    const text = (c: { outputs: { text?: string | string[] }[] }) => c.outputs.map((o) => [o.text ?? ''].flat().join('')).join('');
    assert.equal(text(cells[0]).trim(), 'serialised true');
    const lines = text(cells[1]).trim().split('\n');
    assert.deepEqual(lines, Array.from({ length: 300 }, (_, i) => `line ${i}`));
  });

  /** A generated notebook of the given code cells, written to `dir/name.ipynb`. */
  const notebook = (dir: string, name: string, cells: string[]): string => {
    const nb = {
      cells: cells.map((source, i) => ({ cell_type: 'code', id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null })),
      metadata: { kernelspec: { display_name: 'TypeScript', language: 'typescript', name: 'tslab' } },
      nbformat: 4,
      nbformat_minor: 5,
    };
    const file = path.join(dir, `${name}.ipynb`);
    writeFileSync(file, JSON.stringify(nb));
    return file;
  };
  interface Resources {
    wall_s: number; start_time: number; end_time: number; cpu_s: number; cpu_user_s: number; cpu_sys_s: number; peak_rss_mb: number;
    processes: number; samples: number; load_start: number[]; load_end: number[]; cores: number; workers: string | null;
  }
  type Entry = RunResult['summary'][number] & { started: string; finished: string; scale: string | null; resources: Resources };
  // Burns `ms` of this process's own CPU time (not wall time: under load a wall-clock spin gets a fraction of a core).
  const burn = (ms: number) => `{ const u0 = process.cpuUsage(); const t = () => { const u = process.cpuUsage(u0); return (u.user + u.system) / 1000; }; while (t() < ${ms}) {} }`;

  it('--jobs 2 runs two notebooks at once (overlapping spans in summary.json), prefixes their progress lines, and accounts each kernel tree’s CPU (a child process included), peak RSS and load', () => {
    const dir = mkdtempSync(path.join(tmp, 'jobs-'));
    const sleepy = notebook(dir, 'sleepy', ["console.log('sleepy starts');", "await new Promise((r) => setTimeout(r, 4000));\nconsole.log('sleepy done');"]);
    const busy = notebook(dir, 'busy', [
      "console.log('busy starts');",
      // 1.5 s CPU in the kernel, 1.5 s CPU in a child process it waits for, 400 MB resident in the kernel
      `${burn(1500)}\nconst { spawnSync } = require('child_process');\nconst c = spawnSync(process.execPath, ['-e', ${JSON.stringify(burn(1500))}]);\nconsole.log('child', c.status);`,
      "const big = Buffer.alloc(400 * 2 ** 20, 1);\nconsole.log('busy done', big[12345]);",
    ]);
    const out = path.join(tmp, 'jobs-out');
    const r = runNotebooks(['--no-html', '--jobs', '2', '--scale', 'ci', '--progress-interval', '2', sleepy, busy], out);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /2 notebooks, up to 2 at once/);
    assert.match(r.stderr, /^sleepy \| run_notebooks: \S*sleepy\.ipynb: 2 code cells, scale ci$/m);
    assert.match(r.stderr, /^busy \| {2}\[2\/3\] cell 1 ok +\d+\.\d s {2}\{ const u0/m);
    assert.match(r.stderr, /^sleepy \| {2}\[2\/2\] cell 1 … \d+ s {2}await new Promise/m, 'a heartbeat of the sleeping cell, prefixed');
    assert.match(r.stderr, /2\/2 notebooks ok/);
    const entries = r.summary as Entry[];
    assert.deepEqual(entries.map((e) => path.basename(e.notebook)).sort(), ['busy.ipynb', 'sleepy.ipynb']);
    const [s, b] = ['sleepy', 'busy'].map((n) => entries.find((e) => path.basename(e.notebook) === `${n}.ipynb`)!);
    assert.match(streamText(executedCells(path.join(out, 'sleepy.ipynb'))[1], 'stdout'), /sleepy done/);
    assert.match(streamText(executedCells(path.join(out, 'busy.ipynb'))[2], 'stdout'), /busy done 1/);
    // Both ran at once: each started before the other ended.
    assert.ok(s.resources.start_time < b.resources.end_time && b.resources.start_time < s.resources.end_time,
      `spans do not overlap: ${JSON.stringify([s.resources, b.resources])}`);
    for (const e of [s, b]) {
      const x = e.resources;
      assert.equal(e.scale, 'ci');
      assert.equal(x.workers, '1');
      assert.ok(Math.abs(x.wall_s - e.seconds) < 0.01 && Math.abs(x.end_time - x.start_time - x.wall_s) < 0.01);
      assert.ok(x.samples >= 2 && x.processes >= 1);
      assert.ok(Math.abs(x.cpu_s - x.cpu_user_s - x.cpu_sys_s) < 0.02);
      assert.equal(x.load_start.length, 3);
      assert.equal(x.load_end.length, 3);
      assert.equal(x.cores, os.cpus().length);
      assert.match(r.stderr, new RegExp(`${path.basename(e.notebook).replace('.', '\\.')}: ok in [\\d.]+ s \\(wall [\\d.]+ s, CPU ${x.cpu_s.toFixed(1)} s \\([\\d.]+ core\\), peak RSS ${x.peak_rss_mb.toFixed(0)} MB, load [\\d.]+–[\\d.]+; scale ci;`));
    }
    // The sleeping kernel used little CPU; the busy one 3 s more (its own 1.5 s and the waited-for child's 1.5 s).
    assert.ok(s.resources.cpu_s < s.resources.wall_s, `sleepy: CPU ${s.resources.cpu_s} s in ${s.resources.wall_s} s`);
    assert.ok(b.resources.cpu_s - s.resources.cpu_s > 2.7, `busy ${b.resources.cpu_s} s vs sleepy ${s.resources.cpu_s} s: the child's CPU is missing`);
    assert.ok(b.resources.peak_rss_mb - s.resources.peak_rss_mb > 300, `peak RSS busy ${b.resources.peak_rss_mb} MB vs sleepy ${s.resources.peak_rss_mb} MB`);
  });

  it('--jobs 2 --fail-fast: after a failure no further notebook starts, the running one finishes; summary and exit status say so', () => {
    const dir = mkdtempSync(path.join(tmp, 'failfast-'));
    const slow = notebook(dir, 'slow', ["await new Promise((r) => setTimeout(r, 12000));\nconsole.log('slow done');"]);
    const never = notebook(dir, 'never', ["console.log('never ran');"]);
    const out = path.join(tmp, 'failfast-out');
    const r = runNotebooks(['--no-html', '--quiet', '--jobs', '2', '--fail-fast', path.join(FIX, 'failing.ipynb'), slow, never], out);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /deliberate failure/);
    assert.match(r.stderr, /--fail-fast: not started: \S*never\.ipynb/);
    assert.match(r.stderr, /1\/2 notebooks ok; 1 not started \(--fail-fast\)/);
    assert.deepEqual(r.summary.map((e) => [path.basename(e.notebook), e.ok]).sort(), [['failing.ipynb', false], ['slow.ipynb', true]]);
    assert.ok(!existsSync(path.join(out, 'never.ipynb')));
  });

  it('--jobs refuses a count that is not 1, 2, … or auto, and two notebooks of the same name (their outputs would collide), before any kernel starts', () => {
    const dir = mkdtempSync(path.join(tmp, 'jobs-usage-'));
    const a = notebook(dir, 'same', ["console.log('a');"]);
    mkdirSync(path.join(dir, 'other'));
    const b = notebook(path.join(dir, 'other'), 'same', ["console.log('b');"]);
    const zero = runNotebooks(['--jobs', '0', a], path.join(dir, 'out'));
    assert.equal(zero.status, 2, zero.stderr);
    assert.match(zero.stderr, /--jobs\/-j: '0' is not a number of notebooks \(1, 2, \.\.\. or auto\)/);
    const dup = runNotebooks(['--jobs', 'auto', a, b], path.join(dir, 'out'));
    assert.equal(dup.status, 2, dup.stderr);
    assert.match(dup.stderr, /--jobs: two notebooks share a name \(same\) and would write the same outputs at once/);
    assert.ok(!existsSync(path.join(dir, 'out')), 'nothing written');
  });

  it('--jobs 2 interrupted (SIGINT): the running kernels are stopped, their entries say so, nothing more starts, exit status 130', async () => {
    const dir = mkdtempSync(path.join(tmp, 'interrupt-'));
    const long = (n: string) => notebook(dir, n, ["console.log('PID', process.pid);", 'await new Promise((r) => setTimeout(r, 600000));']);
    const files = [long('first'), long('second'), notebook(dir, 'third', ["console.log('third ran');"])];
    const out = path.join(tmp, 'interrupt-out');
    const child = spawn(PYTHON, [path.join(ROOT, 'environment', 'run_notebooks.py'), '--out', out, '--no-html', '--jobs', '2', '--progress-interval', '1', ...files], { cwd: ROOT });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const t0 = Date.now();
    // Both kernels are in their sleeping cell once each has a heartbeat line.
    while (!/^first \| {2}\[2\/2\] cell 1 …/m.test(stderr) || !/^second \| {2}\[2\/2\] cell 1 …/m.test(stderr)) {
      assert.ok(Date.now() - t0 < 200000, `the two kernels did not reach their sleeping cells:\n${stderr}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const stoppedAt = Date.now();
    child.kill('SIGINT');
    assert.equal(await exited, 130, stderr);
    assert.ok(Date.now() - stoppedAt < 60000, 'the runner ended soon after the interrupt');
    assert.match(stderr, /interrupted: stopping 2 running notebook\(s\); not starting 1/);
    const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as Array<{ notebook: string; ok: boolean; error: string }>;
    assert.deepEqual(summary.map((e) => path.basename(e.notebook)).sort(), ['first.ipynb', 'second.ipynb']);
    for (const e of summary) {
      assert.equal(e.ok, false);
      assert.match(e.error, /interrupted: the runner stopped the kernel during cell 1/);
      const pid = Number(/PID (\d+)/.exec(streamText(executedCells(path.join(out, path.basename(e.notebook)))[0], 'stdout'))![1]);
      assert.throws(() => process.kill(pid, 0), /ESRCH/, `kernel ${pid} of ${e.notebook} is still running`);
    }
    assert.ok(!existsSync(path.join(out, 'third.ipynb')));
  });

  it('a failing cell fails the run with the real message: a thrown error and a type error; the summary keeps earlier notebooks', () => {
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
    // Re-running one notebook into the same folder replaces its entry and keeps the other's.
    const again = runNotebooks(['--no-html', '--quiet', path.join(FIX, 'type-error.ipynb')], path.join(tmp, 'fail'));
    assert.equal(again.status, 1);
    assert.doesNotMatch(again.stderr, /\[1\/1\] cell/, '--quiet: no progress lines');
    assert.match(again.stderr, /0\/1 notebooks ok; .*summary\.json also keeps 1 earlier notebook\(s\)/);
    assert.deepEqual(again.summary.map((e) => path.basename(e.notebook)), ['failing.ipynb', 'type-error.ipynb']);
    assert.notEqual((again.summary[1] as { finished?: string }).finished, undefined);
  });

  it('a run that stops early writes its executed copy even when code cells are stored without outputs (as committed notebooks are), and the scoreboard records the failure', () => {
    const dir = mkdtempSync(path.join(tmp, 'bare-'));
    const nb = JSON.parse(readFileSync(path.join(FIX, 'failing.ipynb'), 'utf8')) as { cells: Array<Record<string, unknown>> };
    for (const c of nb.cells) {
      delete c.outputs;
      delete c.execution_count;
    }
    const file = path.join(dir, 'bare.ipynb');
    writeFileSync(file, JSON.stringify(nb));
    const r = runNotebooks(['--no-html', '--quiet', file], path.join(dir, 'out'));
    assert.equal(r.status, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /Traceback/);
    assert.match(streamText(executedCells(path.join(dir, 'out', 'bare.ipynb'))[0], 'stdout'), /first cell ran 1/);
    const sb = JSON.parse(readFileSync(path.join(dir, 'scoreboard.json'), 'utf8')) as { notebooks: Array<{ notebook: string; ok: boolean; claims: unknown[] }> };
    assert.deepEqual(sb.notebooks.map((e) => [e.notebook, e.ok, e.claims.length]), [['bare', false, 0]]);
  });

  it('--allow-errors runs the later cells for real (past tslab\'s 200 ms abort) and still exits 1', () => {
    const r = runNotebooks(['--no-html', '--allow-errors', path.join(FIX, 'failing.ipynb')], path.join(tmp, 'allow'));
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /deliberate failure/);
    const cells = executedCells(path.join(tmp, 'allow', 'failing.ipynb'));
    assert.match(streamText(cells[1], 'stderr'), /deliberate failure/);
    assert.equal(streamText(cells[2], 'stdout'), 'cell after the error\n');
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

  it('interactive (inline) plotly: the saved notebook stores no plotly.js; charts draw in the HTML export and again after a reload in Jupyter', function () {
    const r = runNotebooks(['--plotly', 'inline', path.join(FIX, 'rich.ipynb')], path.join(tmp, 'rich'));
    assert.equal(r.status, 0, r.stderr);
    const saved = path.join(tmp, 'rich', 'rich.ipynb');
    // nbclient applies update_display_data to the outputs as a front end does: this is what saving the session keeps.
    assert.ok(statSync(saved).size < 200000, `the saved notebook is ${statSync(saved).size} bytes (plotly.js alone is 10 MB)`);
    assert.doesNotMatch(readFileSync(saved, 'utf8'), /__vitpeftDefine/);
    const cells = executedCells(saved);
    cells.forEach((c, i) => assert.equal(streamText(c, 'stderr'), '', `cell ${i} wrote to stderr`));
    assert.match(streamText(cells[0], 'stdout'), /INKERNEL true/);
    assert.match(displayText(cells[0]), /plotly\.js 4\.1\.1 sent to the page \(not stored in the notebook\)/);
    assert.ok(mimes(cells[2]).includes('image/png'));
    const chromium = chromiumPath();
    if (!chromium) {
      console.log('      (chromium missing: the browser half of this test is skipped)');
      return;
    }
    const html = path.join(tmp, 'rich', 'rich.html');
    const page = readFileSync(html, 'utf8');
    assert.equal(page.split('window.__vitpeftDefine = window.define').length - 1, 1, 'plotly.js injected once by the runner');
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
    // Reload: the saved notebook opened in a Jupyter Notebook server (kernel registered for the user: plotly.js is
    // served from its nbextensions folder), no kernel run.
    const data = path.join(tmp, 'reload-data');
    const env: NodeJS.ProcessEnv = { ...process.env, JUPYTER_DATA_DIR: data };
    delete env.JUPYTER_PATH;
    assert.equal(spawnSync(path.join(ROOT, 'environment', 'install-kernel.sh'), [], { encoding: 'utf8', env }).status, 0);
    const folder = mkdtempSync(path.join(tmp, 'reload-'));
    writeFileSync(path.join(folder, 'saved.ipynb'), readFileSync(saved));
    const p = spawnSync(PYTHON, [path.join(ROOT, 'test', 'fixtures', 'jupyter_reload_page.py'), folder, 'saved.ipynb', chromium], { encoding: 'utf8', env, timeout: 240000 });
    assert.equal(p.status, 0, p.stderr);
    const seen = JSON.parse(p.stdout.trim().split('\n').pop()!) as { plots: number; divs: number; status: number };
    assert.deepEqual(seen, { plots: 1, divs: 1, status: 200 }, 'the chart of the saved notebook draws after a reload');
    // Its HTML export, without running it again: plotly.js injected once.
    const exp = runNotebooks(['--export-only', path.join(folder, 'saved.ipynb')], path.join(tmp, 'exported'));
    assert.equal(exp.status, 0, exp.stderr);
    assert.match(exp.stderr, /saved\.ipynb -> .*saved\.html \(not executed\)/);
    assert.equal(readFileSync(path.join(tmp, 'exported', 'saved.html'), 'utf8').split('window.__vitpeftDefine = window.define').length - 1, 1);
  });

  it('a kernel shutdown while the kernel is busy never prints a crash trace (Socket is closed / EBADF)', () => {
    const r = spawnSync(PYTHON, [path.join(ROOT, 'test', 'fixtures', 'kernel_shutdown.py'), '3', tmp], {
      encoding: 'utf8', env: { ...process.env, JUPYTER_PATH }, timeout: 240000,
    });
    assert.equal(r.status, 0, r.stderr);
    const rounds = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { round: number; returncode: number; output: string });
    assert.equal(rounds.length, 3);
    for (const x of rounds) {
      assert.doesNotMatch(x.output, /Error|EBADF|Socket is closed|tslab-preload/, `round ${x.round}: ${x.output}`);
      assert.equal(x.returncode, 0, `round ${x.round} exit status`);
    }
  });

  it('a user’s own notebook in another folder: the packed tarball installed with the README’s package.json, kernel registered for the user; the README’s first snippet runs in the kernel and as a script', function () {
    this.timeout(900000);
    const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
    const snippet = /## A first look[\s\S]*?```ts\n([\s\S]*?)```/.exec(readme)![1];
    const userPkg = JSON.parse(/### Your own notebooks[\s\S]*?```json\n([\s\S]*?)```/.exec(readme)![1]) as Record<string, unknown>;
    const user = path.join(tmp, 'my-notebooks');
    mkdirSync(user);
    writeFileSync(path.join(user, 'package.json'), JSON.stringify(userPkg, null, 2));
    const pack = spawnSync('npm', ['pack', '--silent', '--pack-destination', user], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(pack.status, 0, pack.stderr);
    const tgz = path.join(user, pack.stdout.trim().split('\n').pop()!);
    // --prefer-offline: the packages npm ci cached for this checkout; --omit=optional: no tfjs-node-gpu download attempt.
    const inst = spawnSync('npm', ['install', tgz, '--prefer-offline', '--omit=optional', '--no-audit', '--no-fund'], { cwd: user, encoding: 'utf8', timeout: 600000 });
    assert.equal(inst.status, 0, inst.stderr);
    assert.ok(existsSync(path.join(user, 'node_modules', 'vitpeft', 'dist', 'lib', 'index.d.ts')));
    const data = path.join(tmp, 'my-data');
    const env: NodeJS.ProcessEnv = { ...process.env, JUPYTER_DATA_DIR: data, XDG_CACHE_HOME: path.join(tmp, 'my-cache') };
    delete env.JUPYTER_PATH;
    delete env.VITPEFT_RUNS_DIR;
    delete env.VITPEFT_CACHE_DIR;
    const kernel = spawnSync('npx', ['vitpeft-kernel'], { cwd: user, encoding: 'utf8', env });
    assert.equal(kernel.status, 0, kernel.stderr);
    const spec = JSON.parse(readFileSync(path.join(data, 'kernels', 'tslab', 'kernel.json'), 'utf8'));
    assert.equal(spec.argv[0], path.join(user, 'node_modules', 'tslab', 'bin', 'tslab'), 'the kernel of the user’s install');
    // The notebook: the README snippet as written, then where the kit resolved and where it writes.
    const nb = {
      cells: [
        snippet,
        "import { runsRoot, kitCacheDir } from 'vitpeft/report';\nconsole.log('RESOLVED', require.resolve('vitpeft'));\nconsole.log('RUNS', runsRoot());\nconsole.log('CACHE', kitCacheDir());",
      ].map((source, i) => ({ cell_type: 'code', id: `c${i}`, metadata: {}, source, outputs: [], execution_count: null })),
      metadata: { kernelspec: { display_name: 'TypeScript', language: 'typescript', name: 'tslab' } },
      nbformat: 4,
      nbformat_minor: 5,
    };
    writeFileSync(path.join(user, 'first.ipynb'), JSON.stringify(nb));
    const x = spawnSync(PYTHON, ['-m', 'nbconvert', '--to', 'notebook', '--execute', '--ExecutePreprocessor.timeout=300', '--output-dir', path.join(user, 'out'),
      path.join(user, 'first.ipynb')], { cwd: user, encoding: 'utf8', env, timeout: 400000 });
    assert.equal(x.status, 0, x.stderr);
    const cells = executedCells(path.join(user, 'out', 'first.ipynb'));
    assert.match(streamText(cells[0], 'stdout'), /^wasm \[ 2, 10 \] 4$/m);
    const probe = streamText(cells[1], 'stdout');
    assert.equal(/RESOLVED (\S+)/.exec(probe)![1], path.join(user, 'node_modules', 'vitpeft', 'dist', 'lib', 'index.js'));
    assert.equal(/RUNS (\S+)/.exec(probe)![1], path.join(user, 'runs'));
    assert.equal(/CACHE (\S+)/.exec(probe)![1], path.join(tmp, 'my-cache', 'vitpeft'));
    // The same snippet as a script (an ES module for top-level await), run with the tsx the package brings.
    writeFileSync(path.join(user, 'first.mts'), snippet);
    const script = spawnSync('npx', ['tsx', 'first.mts'], { cwd: user, encoding: 'utf8', env, timeout: 300000 });
    assert.equal(script.status, 0, script.stderr);
    assert.match(script.stdout, /^wasm \[ 2, 10 \] 4$/m);
    // A checkout used directly (`npm install /path/to/vitpeft`: a link) runs it too, without the overrides.
    const linked = path.join(tmp, 'linked');
    mkdirSync(linked);
    writeFileSync(path.join(linked, 'package.json'), JSON.stringify({ name: 'linked', private: true }));
    const link = spawnSync('npm', ['install', ROOT, '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: linked, encoding: 'utf8', timeout: 300000 });
    assert.equal(link.status, 0, link.stderr);
    writeFileSync(path.join(linked, 'first.mts'), snippet);
    const viaLink = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tsx'), ['first.mts'], { cwd: linked, encoding: 'utf8', env, timeout: 300000 });
    assert.equal(viaLink.status, 0, viaLink.stderr);
    assert.match(viaLink.stdout, /^wasm \[ 2, 10 \] 4$/m);
  });
});

