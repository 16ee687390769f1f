/**
 * Issue 19 fault injection with real processes and a real full disk: writers SIGKILLed at random moments (checkpoint
 * saves of 32 MB, run logs) and dataset generation on a full tmpfs. After every fault the last complete file loads,
 * the log reads back without a torn row, the next save removes the orphan temporary file, nothing half made remains.
 */
import { strict as assert } from 'assert';
import { spawn, spawnSync, ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readSafetensors, writeSafetensors } from '../lib/io/safetensors';
import { RunRecord, readMetrics } from '../lib/report/runs';
import { ensureEmbedded } from '../data-loaders/embedded';
import { Rng } from '../lib/rng';

const ROOT = path.resolve(__dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-faults-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const temps = (dir: string): string[] => fs.readdirSync(dir).filter((f) => f.endsWith('.vitpeft-tmp'));

/** Start a TypeScript child (tsx) running `code`; resolves with it once it printed `ready` lines `n` times. */
function child(name: string, code: string): ChildProcess & { lines: string[]; waitFor: (n: number) => Promise<void> } {
  const file = path.join(tmp, `${name}.ts`);
  fs.writeFileSync(file, code);
  const c = spawn(process.execPath, ['--import', 'tsx', file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] }) as ChildProcess & {
    lines: string[];
    waitFor: (n: number) => Promise<void>;
  };
  c.lines = [];
  let buf = '';
  const waiters: Array<[number, () => void]> = [];
  c.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    const parts = buf.split('\n');
    buf = parts.pop()!;
    c.lines.push(...parts);
    for (const [n, go] of waiters.splice(0)) (c.lines.length >= n ? go() : waiters.push([n, go]));
  });
  c.waitFor = (n) => new Promise((go) => (c.lines.length >= n ? go() : waiters.push([n, go])));
  return c;
}

const kill = (c: ChildProcess): Promise<void> =>
  new Promise((done) => {
    c.once('exit', () => done());
    c.kill('SIGKILL');
  });

describe('faults: writers killed at random moments, a full disk (issue 19)', function () {
  this.timeout(600_000);

  it('8 SIGKILLs during 32 MB checkpoint saves: the file always loads whole, orphans are removed by the next save', async () => {
    const dir = path.join(tmp, 'kills');
    fs.mkdirSync(dir);
    const file = path.join(dir, 'ckpt.safetensors');
    const rng = new Rng(19);
    let midWrite = 0;
    for (let k = 0; k < 8; k++) {
      const c = child(
        `saver${k}`,
        `import { writeSafetensors } from ${JSON.stringify(path.join(ROOT, 'lib/io/safetensors'))};
         const n = 8 * 1024 * 1024;
         for (let i = 1; ; i++) {
           const data = new Float32Array(n).fill(${k * 1000} + i);
           writeSafetensors(${JSON.stringify(file)}, new Map([['w', { dtype: 'F32', shape: [n], data }]]), { gen: String(${k * 1000} + i) });
           console.log('saved ' + (${k * 1000} + i));
         }`,
      );
      await c.waitFor(1);
      await new Promise((r) => setTimeout(r, rng.uniform(0, 400)));
      await kill(c);
      const saved = Number(c.lines[c.lines.length - 1].split(' ')[1]);
      const f = readSafetensors(file); // throws if the file were torn
      const w = f.tensors.get('w')!.data as Float32Array;
      const gen = Number(f.metadata.gen);
      assert.ok(gen >= saved && gen <= saved + 1, `kill ${k}: the file holds generation ${gen}, last reported ${saved}`);
      assert.ok(w.every((v) => v === gen), `kill ${k}: every value of generation ${gen}`);
      if (temps(dir).length) midWrite++;
      writeSafetensors(file, new Map([['w', { dtype: 'F32' as const, shape: [1], data: Float32Array.of(-1) }]]));
      assert.deepEqual(temps(dir), [], `kill ${k}: the next save removed the orphan`);
    }
    console.log(`      ${midWrite} of 8 kills landed during a write (an orphan temporary file was left and then removed)`);
  });

  it('4 SIGKILLs while logging a run: the log reads back whole and the resumed run appends cleanly', async () => {
    const root = path.join(tmp, 'runs');
    const rng = new Rng(7);
    let torn = 0;
    for (let k = 0; k < 4; k++) {
      const run = RunRecord.create(`killed${k}`, { config: { k }, seed: 0, root, backend: null });
      const c = child(
        `logger${k}`,
        `import { RunRecord } from ${JSON.stringify(path.join(ROOT, 'lib/report/runs'))};
         const run = RunRecord.open(${JSON.stringify(run.dir)});
         console.log('ready');
         for (let i = 0; ; i++) run.log(i, { loss: 1 / (i + 1), note: 'x'.repeat(1000) });`,
      );
      await c.waitFor(1);
      await new Promise((r) => setTimeout(r, rng.uniform(20, 300)));
      await kill(c);
      if (!fs.readFileSync(path.join(run.dir, 'metrics.jsonl'), 'utf8').endsWith('\n')) torn++;
      const rows = readMetrics(run.dir);
      assert.deepEqual(rows.map((r) => r.step), rows.map((_, i) => i), `kill ${k}: rows 0..${rows.length - 1} whole and in order`);
      const resumed = RunRecord.open(run.dir);
      resumed.log(rows.length, { loss: 0 });
      const after = readMetrics(run.dir);
      assert.equal(after.length, rows.length + 1, `kill ${k}: the resumed row is readable`);
      assert.ok(fs.readFileSync(path.join(run.dir, 'metrics.jsonl'), 'utf8').endsWith('\n'));
    }
    console.log(`      ${torn} of 4 kills left a torn last row (cut before the resumed row)`);
  });

  it('generating the embedded dataset on a full disk (256 KiB tmpfs, root only) fails naming the file and leaves nothing', async function () {
    if (process.getuid?.() !== 0) this.skip();
    const mnt = fs.mkdtempSync(path.join(tmp, 'tmpfs-'));
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mnt]).status !== 0) this.skip();
    try {
      await assert.rejects(
        ensureEmbedded({ cacheDir: mnt, size: 16, satellitePerClass: 5, naturalPerClass: 5 }),
        /embedded: cannot write .*\.(jpg|tif|png|txt) \(ENOSPC: no space left on device.*\); the partial dataset is discarded/,
      );
      assert.deepEqual(fs.readdirSync(mnt), [], 'no half-written cache or temporary folder');
      // and a run folder whose run.json does not fit is removed, not left half made
      fs.writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(fs.statfsSync(mnt).bavail * fs.statfsSync(mnt).bsize));
      assert.throws(() => RunRecord.create('full', { config: { big: 'y'.repeat(10_000) }, seed: 0, root: path.join(mnt), backend: null }), /run\.json: .*(ENOSPC|short write)/);
      assert.deepEqual(fs.readdirSync(mnt), ['filler']);
    } finally {
      spawnSync('umount', [mnt]);
    }
  });
});
