/**
 * The safe `.pth` reader (lib/io/pickle.ts, lib/io/pth.ts) and `.npy` parsing (lib/io/npz.ts) against files written by
 * torch 1.13 / numpy 1.24 (test/fixtures/gen_pth.py): every dtype, strided and shared storages, nested dicts, both
 * torch formats and pickle protocols 2 and 4; and the malicious cases: a pickle whose `__reduce__` runs a shell
 * command must be refused naming the global without the command ever running.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { strict as assert } from 'assert';
import {
  readTorchCheckpoint, describeTorchCheckpoint, unpickle, TORCH_GLOBALS, PyDict, PyTuple, decodeNpy,
  readStateDict, fileSource, ZipReader,
} from '../lib';

const CK = path.join(__dirname, 'fixtures', 'ckpt');
const gold = JSON.parse(fs.readFileSync(path.join(CK, 'pth_golden.json'), 'utf8')) as {
  tensors: Record<string, { dtype: string; shape: number[]; values: number[] }>;
  values: Record<string, unknown>;
  marker: string;
};
const DT: Record<string, string> = { float32: 'F32', float16: 'F16', bfloat16: 'BF16', float64: 'F64', int64: 'I64', int32: 'I32', int16: 'I16', int8: 'I8', uint8: 'U8', bool: 'BOOL' };

describe('io: safe PyTorch checkpoint reader', () => {
  for (const f of ['pth_dtypes.pth', 'pth_dtypes_legacy.pth', 'pth_dtypes_proto4.pth']) {
    it(`${f}: every dtype, strided / shared / 0-d / empty tensors and the other values, exactly`, () => {
      const r = readTorchCheckpoint(path.join(CK, f), { select: '' });
      for (const [k, e] of Object.entries(gold.tensors)) {
        const t = r.tensors.get(`model.${k}`);
        assert.ok(t, `model.${k} missing`);
        assert.equal(t.dtype, DT[e.dtype], `${k} dtype`);
        assert.deepEqual(t.shape, e.shape, `${k} shape`);
        assert.equal(t.data.length, e.values.length, `${k} size`);
        for (let i = 0; i < e.values.length; i++) {
          const want = e.dtype === 'float64' ? Math.fround(e.values[i]) : e.values[i];
          assert.equal(t.data[i], want, `${k}[${i}]: ${t.data[i]} vs ${want}`);
        }
      }
      const meta = JSON.parse(r.metadata.pth);
      assert.equal(meta.format, f.includes('legacy') ? 'legacy' : 'zip');
      for (const [k, v] of Object.entries(gold.values)) assert.deepEqual(meta.values[k], v, k);
    });
  }

  it("select: 'auto' takes the state dict under 'model'; a bad select names the keys there", () => {
    const r = readTorchCheckpoint(path.join(CK, 'pth_dtypes.pth'));
    assert.ok(r.tensors.has('f32') && !r.tensors.has('model.f32'));
    assert.equal(JSON.parse(r.metadata.pth).selected, 'model');
    assert.throws(() => readTorchCheckpoint(path.join(CK, 'pth_dtypes.pth'), { select: 'teacher' }), /no 'teacher' in the checkpoint \(keys here: model, epoch, best, name, flags, none\)/);
    const d = describeTorchCheckpoint(path.join(CK, 'pth_dtypes.pth'));
    assert.deepEqual(d.tensors.find((t) => t.key === 'model.transposed'), { key: 'model.transposed', dtype: 'F32', shape: [6, 4] });
  });

  for (const f of ['pth_evil.pth', 'pth_evil_legacy.pth']) {
    it(`${f}: a pickle whose __reduce__ runs 'touch' is refused naming posix.system, and nothing runs`, () => {
      if (fs.existsSync(gold.marker)) fs.unlinkSync(gold.marker);
      assert.throws(() => readTorchCheckpoint(path.join(CK, f)), /refused global 'posix\.system'.*never allowed/);
      assert.throws(() => readStateDict(path.join(CK, f)), /refused global 'posix\.system'/);
      assert.throws(() => readTorchCheckpoint(path.join(CK, f), { allow: ['posix.system'] }), /'posix\.system' can never be allowed/);
      assert.ok(!fs.existsSync(gold.marker), `${gold.marker} exists: the payload ran`);
    });
  }

  it('argparse.Namespace and numpy scalars are refused by default and read as inert data when allowed', () => {
    const f = path.join(CK, 'pth_args.pth');
    assert.throws(() => readTorchCheckpoint(f), /refused global 'argparse\.Namespace'.*allow: \['argparse\.Namespace'\]/);
    assert.throws(() => readTorchCheckpoint(f, { allow: ['argparse.Namespace'] }), /refused global 'numpy\.core\.multiarray\.scalar'/);
    const r = readTorchCheckpoint(f, { allow: ['argparse.Namespace', 'numpy'], select: '' });
    const v = JSON.parse(r.metadata.pth).values;
    assert.equal(v.acc, 0.75);
    assert.equal(v.epoch, 1);
    assert.deepEqual(v.args, { __class__: 'argparse.Namespace', state: { lr: 1e-3, model: 'vit_micro', epochs: 2 } });
    assert.deepEqual(Array.from(r.tensors.get('model.w')!.data), [1, 1]);
  });

  it('hand-made hostile pickles: STACK_GLOBAL builtins.eval, INST, EXT, unknown opcodes, truncation, memo abuse', () => {
    const P = (...bytes: Array<number | string>): Uint8Array =>
      Buffer.concat(bytes.map((b) => (typeof b === 'number' ? Buffer.from([b]) : Buffer.from(b, 'latin1'))));
    const run = (b: Uint8Array): unknown => unpickle(b, { globals: TORCH_GLOBALS, source: 'test' }).value;
    // protocol 4: SHORT_BINUNICODE 'builtins', SHORT_BINUNICODE 'eval', STACK_GLOBAL, ...
    assert.throws(() => run(P(0x80, 4, 0x8c, 8, 'builtins', 0x8c, 4, 'eval', 0x93, 0x8c, 2, '42', 0x85, 0x52, 0x2e)), /refused global 'builtins\.eval'/);
    // protocol 0 GLOBAL with Python 2 module name
    assert.throws(() => run(P('c__builtin__\nexec\n', '(S\'1\'\ntR.')), /refused global 'builtins\.exec'/);
    assert.throws(() => run(P('(ios\nsystem\nS\'ls\'\n', '.')), /refused INST of 'os\.system'/);
    assert.throws(() => run(P(0x80, 2, 0x82, 1, 0x2e)), /extension-registry/);
    assert.throws(() => run(P(0x80, 2, 0xff)), /unknown pickle opcode 0xff/);
    assert.throws(() => run(P(0x80, 2, 0x58, 0xff, 0xff, 0, 0, 'abc')), /needs 65535 more bytes.*truncated/);
    assert.throws(() => run(P(0x80, 2, 0x68, 7, 0x2e)), /memo index 7 was never stored/);
    assert.throws(() => run(P(0x80, 2, 0x52)), /stack underflow/);
    // REDUCE on something that is not an allowed global
    assert.throws(() => run(P(0x80, 2, 0x5d, 0x29, 0x52, 0x2e)), /REDUCE on list/);
    // fine: an OrderedDict of a list, a tuple and a long
    const ok = run(P(0x80, 2, 'ccollections\nOrderedDict\n', 0x29, 0x52, 0x8c, 1, 'a', 0x5d, 0x4b, 5, 0x61, 0x73, 0x8c, 1, 'b', 0x8a, 9, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0x80, 0]).toString('latin1'), 0x73, 0x2e));
    assert.ok(ok instanceof PyDict && ok.kind === 'OrderedDict');
    assert.deepEqual(ok.map.get('a'), [5]);
    assert.equal(ok.map.get('b'), 2n ** 63n);
    assert.ok(run(P(0x80, 2, 0x4b, 1, 0x4b, 2, 0x86, 0x2e)) instanceof PyTuple);
  });

  it('non-checkpoints and damaged files are refused with the file named', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-pth-'));
    try {
      const w = (name: string, b: Buffer): string => {
        fs.writeFileSync(path.join(dir, name), b);
        return path.join(dir, name);
      };
      assert.throws(() => readTorchCheckpoint(w('empty.pth', Buffer.alloc(0))), /empty\.pth/);
      assert.throws(() => readTorchCheckpoint(w('text.pth', Buffer.from('hello world, not a checkpoint'))), /neither a torch zip archive nor a legacy torch pickle/);
      // a flipped byte inside a storage fails the zip CRC check, naming the tensor
      const buf = Buffer.from(fs.readFileSync(path.join(CK, 'pth_dtypes.pth')));
      const src = fileSource(path.join(CK, 'pth_dtypes.pth'));
      const zip = new ZipReader(src, 'x');
      const e = zip.get('pth_dtypes/data/0')!; // the storage of the first tensor, 'f32'
      buf[zip.dataOffset(e) + 5] ^= 0xff;
      src.close();
      assert.throws(() => readTorchCheckpoint(w('flip.pth', buf)), /tensor 'f32'.*fails its CRC-32 check/);
      // a cut archive names the first tensor whose storage is gone
      assert.throws(() => readTorchCheckpoint(w('cut.pth', buf.subarray(0, 2400))), /tensor '\w+' \[[\d,]*\] \w+: .*(missing|truncated)/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('.npy headers: dtypes, Fortran order, object arrays refused, byte counts checked', () => {
    const npy = (header: string, data: Buffer): Buffer => {
      let h = header;
      while ((10 + h.length + 1) % 64) h += ' ';
      h += '\n';
      const pre = Buffer.alloc(10);
      Buffer.from([0x93]).copy(pre, 0);
      pre.write('NUMPY', 1, 'latin1');
      pre[6] = 1;
      pre[7] = 0;
      pre.writeUInt16LE(h.length, 8);
      return Buffer.concat([pre, Buffer.from(h, 'latin1'), data]);
    };
    const f = new Float32Array([1, 2, 3, 4, 5, 6]);
    const c = decodeNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", Buffer.from(f.buffer)), 'a');
    assert.deepEqual([c.shape, Array.from(c.data)], [[2, 3], [1, 2, 3, 4, 5, 6]]);
    const fo = decodeNpy(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", Buffer.from(f.buffer)), 'a');
    assert.deepEqual(Array.from(fo.data), [1, 3, 5, 2, 4, 6]); // column-major [[1,3,5],[2,4,6]]
    assert.throws(() => decodeNpy(npy("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", Buffer.alloc(8)), 'arr'), /arr: object array.*refused/);
    assert.throws(() => decodeNpy(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 3), }", Buffer.from(f.buffer)), 'arr'), /arr: 24 data bytes for shape \[3,3\] <f4 \(expected 36/);
    assert.throws(() => decodeNpy(npy("{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", Buffer.alloc(8)), 'arr'), /dtype '<c8' is not supported/);
  });
});
