/**
 * Issue 19 item 1: a full disk or a killed save never destroys the last good file. Short writes are simulated with an
 * injected writer (short counts, ENOSPC, a writer that lies) and reproduced for real on a 512 KiB tmpfs when running as
 * root; orphan temporary files of killed saves are cleaned up without touching anything that is not ours.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeFileAtomic, writeSafetensors, readSafetensors } from '../lib/io/safetensors';
import { appendFileChecked, removeOrphanTemps, tempPathFor, WriteFn } from '../lib/io/atomic';
import { RunRecord, readMetrics } from '../lib/report/runs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-atomic-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Files of `dir` that look like temporary files (ours or the old naming). */
const temps = (dir: string): string[] => fs.readdirSync(dir).filter((f) => /tmp$/.test(f));

/** A writer that really writes `budget` bytes in all, then behaves like a full disk (`then`). */
function fullDiskWriter(budget: number, then: 'enospc' | 'zero'): WriteFn {
  let left = budget;
  return (fd, buf, off, len, pos) => {
    if (left === 0) {
      if (then === 'zero') return 0;
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    }
    const n = fs.writeSync(fd, buf, off, Math.min(len, left), pos);
    left -= n;
    return n;
  };
}

/** Pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

describe('atomic writes under faults (issue 19.1)', () => {
  const old = Buffer.from('the previous good checkpoint\n'.repeat(100));
  const next = Buffer.alloc(64 * 1024, 7);

  for (const then of ['enospc', 'zero'] as const) {
    it(`a short write (${then === 'enospc' ? 'then ENOSPC' : 'then 0 bytes'}) fails, keeps the previous file and leaves no temporary file`, () => {
      const file = path.join(tmp, `short-${then}.bin`);
      fs.writeFileSync(file, old);
      assert.throws(
        () => writeFileAtomic(file, next, { write: fullDiskWriter(10_000, then) }),
        new RegExp(`short-${then}.bin: (write failed after 10000 of 65536 bytes \\(ENOSPC|short write: 10000 of 65536 bytes written).*previous short-${then}.bin \\(if any\\) is unchanged`),
      );
      assert.deepEqual(fs.readFileSync(file), old, 'the previous file is intact');
      assert.deepEqual(temps(tmp), [], 'no temporary file left');
    });
  }

  it('partial writes that make progress are continued until every byte is written', () => {
    const file = path.join(tmp, 'partial.bin');
    const write: WriteFn = (fd, buf, off, len, pos) => fs.writeSync(fd, buf, off, Math.min(len, 777), pos);
    writeFileAtomic(file, next, { write });
    assert.deepEqual(fs.readFileSync(file), next);
  });

  it('a writer that reports bytes it did not write is caught by the size check', () => {
    const file = path.join(tmp, 'liar.bin');
    fs.writeFileSync(file, old);
    const write: WriteFn = (fd, buf, off, len, pos) => (off === 0 ? fs.writeSync(fd, buf, off, 100, pos) && len : len);
    assert.throws(() => writeFileAtomic(file, next, { write }), /liar.bin: wrote 65536 bytes but the file has 100/);
    assert.deepEqual(fs.readFileSync(file), old);
    assert.deepEqual(temps(tmp), []);
  });

  it('a real full disk (512 KiB tmpfs, root only): the failed save reports ENOSPC and the last good checkpoint still loads', function () {
    if (process.getuid?.() !== 0) this.skip();
    const mnt = fs.mkdtempSync(path.join(tmp, 'tmpfs-'));
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=512k', 'tmpfs', mnt]).status !== 0) this.skip();
    try {
      const file = path.join(mnt, 'ckpt.safetensors');
      const tensors = (n: number, v: number) => new Map([['w', { dtype: 'F32' as const, shape: [n], data: new Float32Array(n).fill(v) }]]);
      writeSafetensors(file, tensors(40_000, 1)); // 160 KB: fits
      const before = fs.readFileSync(file);
      assert.throws(() => writeSafetensors(file, tensors(100_000, 2)), /ckpt.safetensors: .*(ENOSPC|short write).*unchanged/); // 400 KB: does not fit beside it
      assert.deepEqual(fs.readFileSync(file), before, 'previous checkpoint byte-identical');
      assert.equal(readSafetensors(file).tensors.get('w')!.data[0], 1);
      assert.deepEqual(temps(mnt), [], 'no temporary file left on the full disk');
      writeSafetensors(file, tensors(50_000, 3)); // the space came back: a later save works
      assert.equal(readSafetensors(file).tensors.get('w')!.data[0], 3);
      // the run log on a full disk: an append that does not fit is rolled back, earlier lines stay whole
      const run = RunRecord.create('full', { config: {}, seed: 0, root: mnt, backend: null });
      fs.writeFileSync(path.join(mnt, 'filler'), Buffer.alloc(fs.statfsSync(mnt).bavail * fs.statfsSync(mnt).bsize - 3 * 4096));
      let logged = 0;
      assert.throws(() => {
        for (; logged < 1000; logged++) run.log(logged, { loss: 1 / (logged + 1), note: 'x'.repeat(200) });
      }, /metrics.jsonl: .*(ENOSPC|short write).*rolled back/);
      assert.ok(logged > 0, 'some rows fitted');
      assert.equal(readMetrics(run.dir).length, logged, 'every fitted row reads back, no torn row');
      assert.ok(fs.readFileSync(path.join(run.dir, 'metrics.jsonl'), 'utf8').endsWith('\n'));
    } finally {
      spawnSync('umount', [mnt]);
    }
  });

  it('orphans of killed saves are removed by the next save to that path; nothing that is not ours is touched', () => {
    const dir = fs.mkdtempSync(path.join(tmp, 'orphans-'));
    const file = path.join(dir, 'ckpt.safetensors');
    const name = path.basename(tempPathFor(file)); // .ckpt.safetensors.<host>.<pid>.<rand>.vitpeft-tmp
    const [, host] = /^\.ckpt\.safetensors\.([^.]+)\.\d+\.[a-z0-9]{8}\.vitpeft-tmp$/.exec(name)!;
    const dead = deadPid();
    const orphan = `.ckpt.safetensors.${host}.${dead}.deadbeef.vitpeft-tmp`;
    const keep = [
      `.ckpt.safetensors.${host}.1.livelive.vitpeft-tmp`, // writer alive (pid 1)
      `.ckpt.safetensors.otherhost.${dead}.deadbeef.vitpeft-tmp`, // another machine's (shared folder)
      `.other.safetensors.${host}.${dead}.deadbeef.vitpeft-tmp`, // another file's
      `.ckpt.safetensors.${host}.${dead}.deadbeef.tmp`, // not our suffix
      'ckpt.safetensors.bak',
    ];
    for (const f of [orphan, ...keep]) fs.writeFileSync(path.join(dir, f), 'x'.repeat(1000));
    const target = path.join(dir, 'precious.txt');
    fs.writeFileSync(target, 'precious');
    const link = `.ckpt.safetensors.${host}.${dead}.linklink.vitpeft-tmp`;
    fs.symlinkSync(target, path.join(dir, link)); // a symlink with our name: neither it nor its target is deleted
    const sub = `.ckpt.safetensors.${host}.${dead}.dirdirdi.vitpeft-tmp`;
    fs.mkdirSync(path.join(dir, sub));
    writeSafetensors(file, new Map([['w', { dtype: 'F32' as const, shape: [1], data: Float32Array.of(1) }]]));
    const left = new Set(fs.readdirSync(dir));
    assert.ok(!left.has(orphan), 'the orphan of the dead writer is removed');
    for (const f of [...keep, link, sub, 'precious.txt', 'ckpt.safetensors']) assert.ok(left.has(f), `${f} is kept`);
    assert.equal(fs.readFileSync(target, 'utf8'), 'precious');
    assert.deepEqual(removeOrphanTemps(file), [], 'nothing more to remove');
  });

  it('an append that fails half way is rolled back to the previous length', () => {
    const file = path.join(tmp, 'log.jsonl');
    fs.writeFileSync(file, '{"step":0}\n');
    assert.throws(() => appendFileChecked(file, `${JSON.stringify({ step: 1, pad: 'y'.repeat(500) })}\n`, { write: fullDiskWriter(40, 'enospc') }), /log.jsonl: write failed after 40 of 520 bytes \(ENOSPC.*rolled back to 11 bytes/);
    assert.equal(fs.readFileSync(file, 'utf8'), '{"step":0}\n');
  });

  it('a run log torn by a kill mid-append is cut back to its last whole line before the next row', () => {
    const run = RunRecord.create('torn', { config: {}, seed: 0, root: tmp, backend: null });
    run.log(0, { loss: 1 });
    fs.appendFileSync(path.join(run.dir, 'metrics.jsonl'), '{"step":1,"lo'); // what a SIGKILL mid-write leaves
    assert.equal(readMetrics(run.dir).length, 1, 'readers skip the torn last line');
    run.log(1, { loss: 0.5 }); // the resumed run logs the step again
    assert.deepEqual(readMetrics(run.dir).map((r) => [r.step, r.loss]), [[0, 1], [1, 0.5]]);
  });
});
