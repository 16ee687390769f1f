/**
 * Issue 19 item 8: CI cannot look green without the notebooks. Under CI=true a missing Jupyter fails the notebook
 * tests (elsewhere they skip with the reason), and the closing line .ci/run prints counts the skipped tests.
 * Each case runs mocha in a child process on the real notebook test file with a Python that does not exist.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-ci-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Run mocha with the kit's reporter on `file`; returns the exit status, the summary and .ci/run's closing line. */
function runMocha(file: string, env: Record<string, string | undefined>, tag: string): { status: number | null; summary: Record<string, number>; line: string; out: string } {
  const summaryFile = path.join(tmp, `${tag}.json`);
  const e: NodeJS.ProcessEnv = { ...process.env, VITPEFT_TEST_SUMMARY: summaryFile };
  delete e.CI;
  for (const [k, v] of Object.entries(env)) if (v !== undefined) e[k] = v;
  const r = spawnSync(process.execPath, [path.join(ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js'), '--no-config', '--import=tsx', '--reporter', path.join(ROOT, 'test', 'reporter.js'), file], {
    cwd: ROOT,
    env: e,
    encoding: 'utf8',
    timeout: 120_000,
  });
  // exactly what .ci/run's summary() runs
  const line = spawnSync(process.execPath, [path.join(ROOT, 'test', 'reporter.js'), '--summary', summaryFile], { encoding: 'utf8' }).stdout.trim();
  return { status: r.status, summary: JSON.parse(fs.readFileSync(summaryFile, 'utf8')), line, out: r.stdout + r.stderr };
}

describe('CI and the notebook tests (issue 19.8)', function () {
  this.timeout(300_000);
  const nbTest = path.join('test', 'notebooks-runner.test.ts');
  const noJupyter = { VITPEFT_PYTHON: path.join(tmp, 'no-such-python') };

  it('without CI a missing Jupyter skips the notebook tests, and the closing line counts them as skipped', () => {
    const r = runMocha(nbTest, noJupyter, 'local');
    assert.equal(r.status, 0, r.out);
    assert.equal(r.summary.failures, 0);
    assert.ok(r.summary.pending >= 5, `pending ${r.summary.pending}`);
    assert.equal(r.line, `0 passed, 0 failed, ${r.summary.pending} skipped`);
    assert.match(r.out, /skipping the notebook runner tests: .*no-such-python cannot import nbclient/);
  });

  it('under CI=true a missing Jupyter fails the run, naming why', () => {
    const r = runMocha(nbTest, { ...noJupyter, CI: 'true' }, 'ci');
    assert.notEqual(r.status, 0);
    assert.ok(r.summary.failures >= 1);
    assert.match(r.out, /CI=true but the notebook tests cannot run: .*no-such-python cannot import nbclient/);
    assert.match(r.line, /^0 passed, [1-9]\d* failed, \d+ skipped$/);
  });

  it('the closing line with no summary file (npm ci or the type-check failed) reports a failure', () => {
    const r = spawnSync(process.execPath, [path.join(ROOT, 'test', 'reporter.js'), '--summary', path.join(tmp, 'absent.json')], { encoding: 'utf8' });
    assert.equal(r.stdout.trim(), '0 passed, 1 failed, 0 skipped');
    assert.match(fs.readFileSync(path.join(ROOT, '.ci', 'run'), 'utf8'), /node test\/reporter\.js --summary "\$f"/);
  });
});
