/**
 * The embedded default datasets: generated in the real formats and read back by the same loaders, deterministic by
 * seed, cached atomically, with plausible band relations, a measurable domain shift, and labels that a linear probe on
 * raw pixels does not solve while a fixed nonlinear feature map does.
 */
import { strict as assert } from 'assert';
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Rng } from '../lib/rng';
import { Dataset, Loader, disposeBatch, labelsOf } from '../data-loaders/dataset';
import { ensureEmbedded, generateEmbedded, loadEmbedded, embeddedName, EmbeddedDatasets } from '../data-loaders/embedded';
import { ENDMEMBER_SPECTRA, ENDMEMBERS, NATURAL_CLASSES, SATELLITE_CLASSES, renderSatellite } from '../data-loaders/embedded-render';
import { EUROSAT_CLASSES } from '../data-loaders/formats/eurosat';
import { loadGeoTiff } from '../data-loaders/decode';
import { Img } from '../data-loaders/image';
import { domainGap, flattenImages, randomConvFeatures, ridgeProbe } from '../data-loaders/probe';
import { sentinelTrain } from '../data-loaders/presets';

const OPTS = { seed: 11, size: 32, satellitePerClass: 30, naturalPerClass: 10 };

async function images(ds: Dataset): Promise<Img[]> {
  const out: Img[] = [];
  for (let i = 0; i < ds.length; i++) out.push((await ds.get(i)).image);
  return out;
}

describe('data: embedded default datasets', function () {
  this.timeout(120000);
  let cache: string;
  let emb: EmbeddedDatasets;
  before(async () => {
    cache = await fsp.mkdtemp(path.join(os.tmpdir(), 'vitpeft-embedded-'));
    emb = await loadEmbedded({ ...OPTS, cacheDir: cache });
  });
  after(async () => {
    await fsp.rm(cache, { recursive: true, force: true });
  });

  it('writes the real layouts and the loaders read them (EuroSAT class names/order, 13 bands, splits 60/20/20)', async () => {
    assert.deepEqual(SATELLITE_CLASSES, [...EUROSAT_CLASSES]);
    const p = emb.paths;
    assert.equal(path.basename(p.root), embeddedName(OPTS));
    assert.equal(emb.satellite.rgb.train.length, 180);
    assert.equal(emb.satellite.ms.val.length, 60);
    assert.equal(emb.satellite.ms.test.length, 60);
    assert.deepEqual(emb.natural.train.classes, [...NATURAL_CLASSES]);
    assert.equal(emb.natural.train.length + emb.natural.val.length, 100);
    const rgbPath = path.join(p.satellite.root, '2750', 'River', 'River_3.jpg');
    const tifPath = path.join(p.satellite.root, 'ds/images/remote_sensing/otherDatasets/sentinel_2/tif/River/River_3.tif');
    await fsp.access(rgbPath);
    const { img, geo } = await loadGeoTiff(tifPath, { bands: 13 });
    assert.deepEqual([img.height, img.width], [32, 32]);
    assert.equal(geo?.epsg, 32632);
    assert.deepEqual(geo?.resolution.slice(0, 2), [10, -10]);
    assert.deepEqual(Array.from(labelsOf(emb.satellite.ms.train)).slice(0, 3), [0, 0, 0]);
    const s = await emb.satellite.rgb.test.get(59);
    assert.equal(s.label, 9);
    assert.ok(s.path!.endsWith('SeaLake_30.jpg'));
    // the paper pipelines run on it unchanged
    const l = new Loader(emb.satellite.ms.train, { batchSize: 8, seed: 1, transform: sentinelTrain(24, [0, 9, 10]) });
    const b = await l.batchAt(3);
    assert.deepEqual(b.images!.shape, [8, 24, 24, 10]);
    disposeBatch(b);
  });

  it('is deterministic by seed (identical files), different across seeds', async () => {
    const a = path.join(cache, 'gen-a');
    const b = path.join(cache, 'gen-b');
    const c = path.join(cache, 'gen-c');
    const small = { size: 16, satellitePerClass: 5, naturalPerClass: 5 };
    await generateEmbedded(a, { ...small, seed: 3 });
    await generateEmbedded(b, { ...small, seed: 3 });
    await generateEmbedded(c, { ...small, seed: 4 });
    for (const rel of ['satellite/ds/images/remote_sensing/otherDatasets/sentinel_2/tif/Forest/Forest_2.tif', 'natural/train/star/star_1.png', 'satellite/2750/Highway/Highway_5.jpg', 'satellite/eurosat-ms-train.txt']) {
      const [x, y, z] = await Promise.all([a, b, c].map((d) => fsp.readFile(path.join(d, rel))));
      assert.ok(x.equals(y), `${rel} differs between two runs with the same seed`);
      if (!rel.endsWith('.txt')) assert.ok(!x.equals(z), `${rel} identical across seeds`);
    }
  });

  it('reuses a complete cache, never uses a half-written one, regenerates on force', async () => {
    const m1 = (await ensureEmbedded({ ...OPTS, cacheDir: cache })).manifest;
    assert.deepEqual(m1, emb.paths.manifest, 'second call reuses the cache');
    // a half-written folder of another configuration (no COMPLETE.json) is replaced, not used
    const small = { seed: 5, size: 16, satellitePerClass: 5, naturalPerClass: 5, cacheDir: cache };
    const dir = path.join(cache, embeddedName(small));
    await fsp.mkdir(path.join(dir, 'satellite'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'satellite', 'junk.txt'), 'partial');
    const p = await ensureEmbedded(small);
    assert.equal(p.root, dir);
    await fsp.access(path.join(dir, 'COMPLETE.json'));
    await assert.rejects(fsp.access(path.join(dir, 'satellite', 'junk.txt')));
    const forced = await ensureEmbedded({ ...small, force: true });
    assert.notEqual(forced.manifest.seconds, -1);
    const left = (await fsp.readdir(cache)).filter((e) => e.includes('.tmp-') || e.includes('.old-'));
    assert.deepEqual(left, []);
    await assert.rejects(ensureEmbedded({ ...small, sze: 3 } as never), /unknown key 'sze'/);
  });

  it('target variants: defaults unchanged, NIR false colour of the same scene, nuisance scale, own cache folder', async () => {
    const rng = (k: number): Rng => Rng.derive(7, 'variant', k);
    for (const cls of ['Forest', 'River', 'Residential']) {
      const a = renderSatellite(cls, 16, rng(1));
      const b = renderSatellite(cls, 16, rng(1), { composite: 'rgb', nuisance: 1 });
      assert.deepEqual(Array.from(b.ms.data), Array.from(a.ms.data), 'explicit defaults = the original scene');
      assert.deepEqual(Array.from(b.rgb.data), Array.from(a.rgb.data));
      const fc = renderSatellite(cls, 16, rng(1), { composite: 'nir-false-color' });
      assert.deepEqual(Array.from(fc.ms.data), Array.from(a.ms.data), 'false colour renders the same 13 bands');
      for (let p = 0; p < 256; p++) {
        const want = [(a.ms.data[p * 13 + 7] - 300) / 3300, (a.ms.data[p * 13 + 3] - 300) / 2300, (a.ms.data[p * 13 + 2] - 300) / 2300].map((v) => Math.min(1, Math.max(0, v)));
        for (let c = 0; c < 3; c++) assert.ok(Math.abs(fc.rgb.data[p * 3 + c] - want[c]) < 1e-6);
      }
    }
    // vegetation is red in colour infrared, green-ish in true colour
    const meanRgb = (img: Img): number[] => [0, 1, 2].map((c) => img.data.filter((_, i) => i % 3 === c).reduce((s, v) => s + v, 0) / (img.height * img.width));
    const forest = renderSatellite('Forest', 16, rng(2), { composite: 'nir-false-color', nuisance: 0 });
    const [r, g] = meanRgb(forest.rgb);
    assert.ok(r > 2 * g, `false-colour forest red ${r} vs green ${g}`);
    // nuisance 0: scenes of one layout seed differ only by sensor noise across nuisance draws; the brightness spread
    // over images shrinks with the scale
    const spread = (k: number): number => {
      const m = Array.from({ length: 12 }, (_, i) => meanRgb(renderSatellite('Pasture', 16, rng(10 + i), { nuisance: k }).rgb).reduce((s, v) => s + v, 0));
      const mu = m.reduce((s, v) => s + v, 0) / m.length;
      return Math.sqrt(m.reduce((s, v) => s + (v - mu) ** 2, 0) / m.length);
    };
    assert.ok(spread(0) < 0.5 * spread(1) && spread(1) < spread(2), `brightness spread ${spread(0)} / ${spread(1)} / ${spread(2)}`);
    assert.throws(() => renderSatellite('Forest', 16, rng(1), { composite: 'cir' as never }), /composite must be one of rgb, nir-false-color/);
    assert.throws(() => renderSatellite('Forest', 16, rng(1), { nuisance: -1 }), /nuisance must be a number in \[0, 4\]/);
    // cache naming and manifest
    assert.equal(embeddedName({ seed: 1, size: 16 }), 'default-1-16');
    assert.equal(embeddedName({ seed: 1, size: 16, satelliteRender: { composite: 'rgb', nuisance: 1 } }), 'default-1-16');
    assert.equal(embeddedName({ seed: 1, size: 16, satellitePerClass: 5, naturalPerClass: 5, satelliteRender: { composite: 'nir-false-color', nuisance: 0.5 } }), 's5n5-fc-nu0.5-1-16');
    const small = { seed: 5, size: 16, satellitePerClass: 5, naturalPerClass: 5, cacheDir: cache };
    const fcp = await ensureEmbedded({ ...small, satelliteRender: { composite: 'nir-false-color' } });
    assert.deepEqual(fcp.manifest.satelliteRender, { composite: 'nir-false-color', nuisance: 1 });
    const plain = await ensureEmbedded(small);
    assert.equal(plain.manifest.satelliteRender, undefined);
    assert.notEqual(fcp.root, plain.root);
    const rel = 'satellite/2750/Forest/Forest_2.jpg';
    const [x, y] = await Promise.all([fcp.root, plain.root].map((d) => fsp.readFile(path.join(d, rel))));
    assert.ok(!x.equals(y), 'false-colour JPEG differs from the true-colour one');
    await assert.rejects(ensureEmbedded({ ...small, satelliteRender: { composit: 'rgb' } as never }), /unknown key 'composit'/);
  });

  it('band relations are plausible: vegetation NDVI high, water NDVI negative and dark in SWIR', () => {
    const ndvi = (sp: readonly number[]): number => (sp[7] - sp[3]) / (sp[7] + sp[3]);
    const e = (n: string): readonly number[] => ENDMEMBER_SPECTRA[ENDMEMBERS.indexOf(n as never)];
    assert.ok(ndvi(e('forest')) > 0.6 && ndvi(e('crop')) > 0.6);
    assert.ok(ndvi(e('water')) < 0 && e('water')[11] < 200);
    assert.ok(e('soil')[11] > e('soil')[3]);
    const meanNdvi = (cls: string): number => {
      let s = 0;
      for (let k = 0; k < 10; k++) {
        const { ms } = renderSatellite(cls, 16, Rng.derive(2, cls, k));
        for (let p = 0; p < 256; p++) s += (ms.data[p * 13 + 7] - ms.data[p * 13 + 3]) / (ms.data[p * 13 + 7] + ms.data[p * 13 + 3]);
      }
      return s / 2560;
    };
    assert.ok(meanNdvi('Forest') > 0.35, `Forest NDVI ${meanNdvi('Forest')}`);
    assert.ok(meanNdvi('SeaLake') < meanNdvi('Pasture') - 0.3);
    assert.ok(meanNdvi('Industrial') < meanNdvi('Forest') - 0.2);
  });

  it('measurable domain shift; labels not solved by a raw-pixel linear probe but by fixed nonlinear features', async () => {
    const nat = await images(emb.natural.train);
    const sat = (await images(emb.satellite.rgb.train)).slice(0, nat.length * 2);
    const gap = domainGap(nat, sat);
    assert.ok(gap.domainProbeAcc > 0.9, `domain probe ${gap.domainProbeAcc}`);
    assert.ok(gap.saturationA > gap.saturationB + 0.1, `saturation ${gap.saturationA} vs ${gap.saturationB}`);
    const split = async (v: 'rgb' | 'ms'): Promise<Array<{ imgs: Img[]; y: Int32Array }>> =>
      Promise.all((['train', 'val', 'test'] as const).map(async (s) => ({ imgs: await images(emb.satellite[v][s]), y: labelsOf(emb.satellite[v][s]) })));
    const probe = (parts: Array<{ imgs: Img[]; y: Int32Array }>, feats: (imgs: Img[]) => Float32Array): number =>
      ridgeProbe(...(parts.map((p) => ({ x: feats(p.imgs), y: p.y })) as [never, never, never]), 10).testAcc;
    const raw = (imgs: Img[]): Float32Array => flattenImages(imgs).x;
    const rf = (imgs: Img[]): Float32Array => randomConvFeatures(imgs, 3);
    const rgb = await split('rgb');
    const ms = await split('ms');
    const r = { rgbRaw: probe(rgb, raw), msRaw: probe(ms, raw), rgbRf: probe(rgb, rf), msRf: probe(ms, rf) };
    console.log(`      probes (30/class, chance 0.10): ${JSON.stringify(r)}`);
    assert.ok(r.rgbRaw < 0.5, `raw-pixel linear probe on RGB too strong: ${r.rgbRaw}`);
    assert.ok(r.msRaw < 0.65, `raw-pixel linear probe on 13 bands too strong: ${r.msRaw}`);
    assert.ok(r.rgbRaw > 0.1, 'raw-pixel probe should beat chance (colour is a weak cue)');
    assert.ok(r.msRf > 0.75 && r.msRf > r.msRaw + 0.2, `nonlinear features on 13 bands: ${r.msRf}`);
    assert.ok(r.rgbRf > r.rgbRaw + 0.1, `nonlinear features on RGB: ${r.rgbRf}`);
  });
});
