import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { encodeSafetensors, decodeSafetensors, readSafetensors, writeSafetensors } from '../lib/io/safetensors';
import { saveCheckpoint, loadCheckpoint, torchShape } from '../lib/io/checkpoint';
import { createVit, disposeVit, vitVariables } from '../lib/vit/params';
import { vitForward } from '../lib/vit/forward';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-io-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Hand-build a safetensors buffer with arbitrary dtypes. */
function rawFile(entries: Array<[string, string, number[], Buffer]>, meta?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = meta ? { __metadata__: meta } : {};
  let off = 0;
  for (const [name, dtype, shape, bytes] of entries) {
    header[name] = { dtype, shape, data_offsets: [off, off + bytes.length] };
    off += bytes.length;
  }
  const h = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, ...entries.map((e) => e[3])]);
}

describe('safetensors', () => {
  it('round-trips F32 / I32 with metadata and keeps the order', () => {
    const file = path.join(tmp, 'rt.safetensors');
    writeSafetensors(
      file,
      new Map([
        ['b', { dtype: 'F32' as const, shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
        ['a', { dtype: 'I32' as const, shape: [2], data: Int32Array.from([-7, 9]) }],
      ]),
      { note: 'hi' },
    );
    const f = readSafetensors(file);
    assert.deepEqual([...f.tensors.keys()], ['b', 'a']);
    assert.deepEqual(Array.from(f.tensors.get('b')!.data), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(f.tensors.get('a')!.shape, [2]);
    assert.deepEqual(Array.from(f.tensors.get('a')!.data), [-7, 9]);
    assert.equal(f.metadata.note, 'hi');
    const n = Number(fs.readFileSync(file).readBigUInt64LE(0));
    assert.equal((8 + n) % 8, 0, 'data is 8-byte aligned');
    assert.deepEqual(fs.readdirSync(tmp).filter((x) => x.endsWith('.tmp')), [], 'no temporary file left');
  });

  it('decodes F16, BF16, F64 and I64 (as written by PyTorch)', () => {
    const f16 = Buffer.alloc(6);
    [0x3c00, 0xc000, 0x3555].forEach((h, i) => f16.writeUInt16LE(h, i * 2)); // 1, -2, 0.333
    const bf16 = Buffer.alloc(4);
    bf16.writeUInt16LE(0x3f80, 0); // 1.0
    bf16.writeUInt16LE(0xc040, 2); // -3.0
    const f64 = Buffer.alloc(8);
    f64.writeDoubleLE(0.1);
    const i64 = Buffer.alloc(16);
    i64.writeBigInt64LE(-5n, 0);
    i64.writeBigInt64LE(1234567n, 8);
    const f = decodeSafetensors(rawFile([['h', 'F16', [3], f16], ['b', 'BF16', [2], bf16], ['d', 'F64', [1], f64], ['i', 'I64', [2], i64]]));
    assert.deepEqual(Array.from(f.tensors.get('h')!.data).map((x) => +x.toFixed(3)), [1, -2, 0.333]);
    assert.deepEqual(Array.from(f.tensors.get('b')!.data), [1, -3]);
    assert.ok(Math.abs(f.tensors.get('d')!.data[0] - 0.1) < 1e-7);
    assert.deepEqual(Array.from(f.tensors.get('i')!.data), [-5, 1234567]);
  });

  it('refuses truncated, corrupt and inconsistent files with the file and tensor named', () => {
    const good = encodeSafetensors(new Map([['w', { dtype: 'F32' as const, shape: [4], data: new Float32Array(4) }]]));
    assert.throws(() => decodeSafetensors(good.subarray(0, good.length - 3), 'cut.safetensors'), /cut.safetensors: tensor 'w': data ends at byte 16 but the file has only 13 data bytes \(truncated file\)/);
    assert.throws(() => decodeSafetensors(good.subarray(0, 5), 'tiny.st'), /tiny.st: not a safetensors file/);
    const big = Buffer.from(good);
    big.writeBigUInt64LE(10_000n);
    assert.throws(() => decodeSafetensors(big, 'hdr.st'), /hdr.st: header length 10000 exceeds the file size/);
    assert.throws(() => decodeSafetensors(rawFile([['w', 'F32', [3], Buffer.alloc(8)]]), 'x.st'), /x.st: tensor 'w': 8 bytes for shape \[3\] F32 \(expected 12\)/);
    assert.throws(() => decodeSafetensors(rawFile([['w', 'Q4', [1], Buffer.alloc(1)]]), 'q.st'), /q.st: tensor 'w': unsupported or missing dtype "Q4"/);
    const bad = Buffer.concat([Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{oops')]);
    assert.throws(() => decodeSafetensors(bad, 'j.st'), /j.st: header is not valid JSON/);
    assert.throws(() => readSafetensors(path.join(tmp, 'missing.safetensors')), /missing.safetensors: cannot read/);
  });
});

describe('checkpoints', () => {
  const cfg = { imgSize: 32, depth: 1, embedDim: 16, numHeads: 2, numClasses: 4 } as const;

  it('are stored in PyTorch layout and reload to the same forward', () => {
    const a = createVit('vit_tiny_patch16_224', cfg, { seed: 1 });
    const file = path.join(tmp, 'vit.safetensors');
    saveCheckpoint(file, { params: a.params, meta: { preset: 'vit_tiny_patch16_224', config: a.config } });
    const f = readSafetensors(file);
    assert.deepEqual(f.tensors.get('blocks.0.attn.qkv.weight')!.shape, [48, 16], 'Linear weight is [out, in] on disk');
    assert.deepEqual(f.tensors.get('patch_embed.proj.weight')!.shape, [16, 3, 16, 16], 'patch embedding is OIHW on disk');
    assert.deepEqual(torchShape('head.weight', [16, 4]), [4, 16]);
    const meta = JSON.parse(f.metadata.vitpeft);
    assert.equal(meta.format, 'vitpeft/1');
    assert.equal(meta.layout, 'torch');
    const b = createVit('vit_tiny_patch16_224', cfg, { seed: 2 });
    loadCheckpoint(file, { params: b.params });
    const x = tf.randomNormal([2, 32, 32, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    const ya = tf.tidy(() => vitForward(a, x).logits!.dataSync());
    const yb = tf.tidy(() => vitForward(b, x).logits!.dataSync());
    assert.deepEqual(ya, yb);
    x.dispose();
    disposeVit(a);
    disposeVit(b);
  });

  it('a mismatched file is refused naming the tensor and both shapes, and nothing is half loaded', () => {
    const a = createVit('vit_tiny_patch16_224', cfg, { seed: 1 });
    const file = path.join(tmp, 'mismatch.safetensors');
    saveCheckpoint(file, { params: a.params });
    const wider = createVit('vit_tiny_patch16_224', { ...cfg, numClasses: 5 }, { seed: 2 });
    const before = new Map([...vitVariables(wider)].map(([k, v]) => [k, v.dataSync().slice()]));
    assert.throws(
      () => loadCheckpoint(file, { params: wider.params }),
      /mismatch.safetensors: tensor 'head.weight' has shape \[4,16\] but 'head.weight' needs \[5,16\] \(torch layout of kit shape \[16,5\]\)/,
    );
    for (const [k, v] of vitVariables(wider)) assert.deepEqual(v.dataSync(), before.get(k), `${k} was modified by a failed load`);
    // missing and unexpected tensors
    const headless = createVit('vit_tiny_patch16_224', { ...cfg, numClasses: 0 }, { seed: 3 });
    assert.throws(() => loadCheckpoint(file, { params: headless.params }), /2 tensor\(s\) with no place in the target: head.weight, head.bias/);
    const rep = loadCheckpoint(file, { params: headless.params }, { strict: false });
    assert.deepEqual(rep.unexpected, ['head.weight', 'head.bias']);
    assert.throws(() => loadCheckpoint(file, { params: wider.params }, { ignore: /^head\./ }), /missing 2 tensor\(s\) the target needs: head.weight, head.bias/);
    const ok = loadCheckpoint(file, { params: wider.params }, { ignore: /^head\./, allowMissing: /^head\./ });
    assert.deepEqual(ok.missing, ['head.weight', 'head.bias']);
    [a, wider, headless].forEach(disposeVit);
  });

  it('strips checkpoint prefixes and resizes a pos_embed of another grid when asked', () => {
    const a = createVit('vit_tiny_patch16_224', cfg, { seed: 1 });
    const file = path.join(tmp, 'prefixed.safetensors');
    const vars = vitVariables(a);
    const t = new Map([...vars].map(([k, v]) => [`teacher.backbone.${k}`, v]));
    saveCheckpoint(file, { params: t });
    const big = createVit('vit_tiny_patch16_224', { ...cfg, imgSize: 64 }, { seed: 2 });
    assert.throws(() => loadCheckpoint(file, { params: big.params }, { stripPrefixes: ['teacher.backbone.'] }), /'teacher.backbone.pos_embed' has shape \[1,5,16\] but 'pos_embed' needs \[1,17,16\]/);
    const rep = loadCheckpoint(file, { params: big.params }, { stripPrefixes: ['teacher.backbone.'], resizePosEmbed: true });
    assert.deepEqual(rep.resized, ['pos_embed']);
    [a, big].forEach(disposeVit);
  });
});
