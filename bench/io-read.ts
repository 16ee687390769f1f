/**
 * `npx tsx bench/io-read.ts [--preset vit_base_patch16_224] [--repeats 2]`: reading a full-size checkpoint in each
 * format the kit loads, in one process (JSON lines; ratios are what compare on a shared machine).
 *
 * Writes a random state dict of the preset with Debian's /usr/bin/python3 + torch (zip `.pth`, legacy `.pth`) and the
 * kit (safetensors) into a temporary folder, then times: reading each file into memory (validated; the `.pth` reader
 * CRC-checks every storage), and `loadConverted` into a model (read + key map + shape checks + assignment).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as tf from '@tensorflow/tfjs';
import { init } from '../lib/backend';
import { createVit, disposeVit } from '../lib/vit/params';
import { VitPresetName } from '../lib/vit/config';
import { readSafetensors, writeSafetensors, TensorToWrite } from '../lib/io/safetensors';
import { readTorchCheckpoint } from '../lib/io/pth';
import { loadConverted } from '../lib/io/convert';
import { torchShape } from '../lib/io/checkpoint';
import { flattenTree } from '../lib/tree';

const arg = (k: string, d: string): string => {
  const i = process.argv.indexOf(`--${k}`);
  return i >= 0 ? process.argv[i + 1] : d;
};

(async () => {
  const preset = arg('preset', 'vit_base_patch16_224') as VitPresetName;
  const repeats = Number(arg('repeats', '2'));
  const be = await init();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-ioread-'));
  try {
    const vit = createVit(preset, { numClasses: 0 }, { skipInit: true });
    const shapes: Record<string, number[]> = {};
    for (const [k, v] of flattenTree(vit.params)) shapes[k] = torchShape(k, v.shape);
    fs.writeFileSync(path.join(dir, 'shapes.json'), JSON.stringify(shapes));
    const py = `
import json, torch, collections
sh = json.load(open(r'${dir}/shapes.json'))
g = torch.Generator().manual_seed(0)
sd = collections.OrderedDict((k, torch.randn(*s, generator=g)) for k, s in sh.items())
torch.save(sd, r'${dir}/zip.pth')
torch.save(sd, r'${dir}/legacy.pth', _use_new_zipfile_serialization=False)
`;
    const r = spawnSync('/usr/bin/python3', ['-c', py], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`torch could not write the files: ${r.stderr}`);
    const sd = readTorchCheckpoint(path.join(dir, 'zip.pth'));
    const st = new Map<string, TensorToWrite>([...sd.tensors].map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: t.data as Float32Array }]));
    writeSafetensors(path.join(dir, 'model.safetensors'), st);
    const bytes = fs.statSync(path.join(dir, 'model.safetensors')).size;
    console.log(JSON.stringify({ host: `${os.cpus().length} × ${os.cpus()[0]?.model}`, load: os.loadavg().map((x) => +x.toFixed(1)), backend: be.backend, preset, tensors: sd.tensors.size, mbytes: +(bytes / 2 ** 20).toFixed(1) }));
    for (let rep = 0; rep < repeats; rep++) {
      const row: Record<string, number> = { repeat: rep };
      const t = (name: string, fn: () => void): void => {
        const t0 = process.hrtime.bigint();
        fn();
        row[name] = +(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(3);
      };
      t('readSafetensors_s', () => readSafetensors(path.join(dir, 'model.safetensors')));
      t('readPthZip_s', () => readTorchCheckpoint(path.join(dir, 'zip.pth')));
      t('readPthZipNoCrc_s', () => readTorchCheckpoint(path.join(dir, 'zip.pth'), { checkCrc: false }));
      t('readPthLegacy_s', () => readTorchCheckpoint(path.join(dir, 'legacy.pth')));
      t('loadConvertedSafetensors_s', () => loadConverted(path.join(dir, 'model.safetensors'), vit.params, { map: 'dinov2' }));
      t('loadConvertedPthZip_s', () => loadConverted(path.join(dir, 'zip.pth'), vit.params, { map: 'dinov2' }));
      row.pthZipOverSafetensors = +(row.readPthZip_s / row.readSafetensors_s).toFixed(2);
      row.mbPerSecondPthZip = +(bytes / 2 ** 20 / row.readPthZip_s).toFixed(0);
      console.log(JSON.stringify(row));
    }
    disposeVit(vit);
    console.log(JSON.stringify({ liveTensors: tf.memory().numTensors, rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20) }));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
})();
