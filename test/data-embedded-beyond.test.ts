/**
 * The beyond-RGB embedded domains (multi-date sites, building chips, pathology hospitals, camera traps): written in the
 * real formats and read back by the real loaders, deterministic by seed, with the documented semantics (dates and
 * timestamps, masks = footprints, hospitals per WILDS split, OOD locations), and the clear errors for band-count,
 * date-format and mask-shape mismatches.
 */
import { strict as assert } from 'assert';
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as crypto from 'crypto';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../lib/rng';
import { Loader, disposeBatch, labelsOf, RecordDataset, Dataset } from '../data-loaders/dataset';
import {
  ensureEmbeddedTemporal,
  loadEmbeddedTemporal,
  ensureEmbeddedBuildings,
  loadEmbeddedBuildings,
  loadEmbeddedPathology,
  loadEmbeddedCameraTraps,
  EmbeddedTemporalDatasets,
} from '../data-loaders/embedded-beyond';
import { TEMPORAL_SITE_CLASSES, SCENE_COVERS, SCENE_SPECTRA, renderBuildingChip, renderSiteDates, siteDates, seasonalDryness } from '../data-loaders/embedded-scenes';
import { HOSPITAL_STAINS, renderPathologyPatch } from '../data-loaders/embedded-pathology';
import { CAMERA_TRAP_SPECIES } from '../data-loaders/embedded-cameratrap';
import { FMOW_CLASSES, fmowTemporal, fmowTemporalJointCrop } from '../data-loaders/formats/fmow';
import { fmowSentinel } from '../data-loaders/formats/fmow-sentinel';
import { spacenet1, writeGeojson } from '../data-loaders/formats/spacenet';
import { camelyon17Protocol } from '../data-loaders/formats/wilds';
import { writeGeoTiff } from '../data-loaders/encode';
import { makeImg } from '../data-loaders/image';
import { sentinelEval } from '../data-loaders/presets';
import { resizeTo } from '../data-loaders/augment';
import { loadEmbedded } from '../data-loaders/embedded';
import { classificationMetrics } from '../lib/eval/metrics';
import { createSatMaeGroupVit, satMaeGroupVitForward, disposeSatMaeGroupVit } from '../lib/mae/satmae-group-vit';
import { createSatMaeTemporalVit, satMaeTemporalVitForward, disposeSatMaeTemporalVit } from '../lib/mae/satmae-temporal-vit';

const sha = async (f: string): Promise<string> => crypto.createHash('sha256').update(await fsp.readFile(f)).digest('hex');

describe('data: embedded beyond-RGB domains', function () {
  this.timeout(300000);
  let cache: string;
  before(async () => {
    cache = await fsp.mkdtemp(path.join(os.tmpdir(), 'vitpeft-beyond-'));
  });
  after(async () => {
    await fsp.rm(cache, { recursive: true, force: true });
  });

  describe('multi-date sites (fMoW-temporal + fMoW-Sentinel formats)', () => {
    const OPTS = { seed: 3, size: 16, locationsPerClass: 5, datesPerLocation: [3, 4] as [number, number] };
    let emb: EmbeddedTemporalDatasets;
    before(async () => {
      emb = await loadEmbeddedTemporal({ ...OPTS, cacheDir: cache });
    });

    it('the fMoW loaders read it: 8 fMoW classes by their 62-class ids, 13 bands, locations split 3/1/1, all images of a site in one split', async () => {
      const labels = new Set(labelsOf(emb.rgb.train));
      assert.deepEqual([...labels].sort((a, b) => a - b), TEMPORAL_SITE_CLASSES.map((c) => (FMOW_CLASSES as readonly string[]).indexOf(c)).sort((a, b) => a - b));
      const n = emb.paths.manifest.info.rows as Record<string, number>;
      assert.equal(emb.rgb.train.length, n.train);
      assert.equal(emb.sentinel.train.length, n.train);
      assert.equal(emb.temporal.val.length, n.val);
      const s = await emb.sentinel.test.get(0);
      assert.equal(s.image.channels, 13);
      assert.deepEqual([s.image.height, s.image.width], [16, 16]);
      // sites never cross splits
      const site = (p: string): string => path.basename(path.dirname(p));
      const tr = new Set(Array.from({ length: emb.rgb.train.length }, (_, i) => site(emb.rgb.train.info(i).path!)));
      for (let i = 0; i < emb.rgb.test.length; i++) assert.ok(!tr.has(site(emb.rgb.test.info(i).path!)));
    });

    it('temporal triplets: three dates of one site, SatMAE timestamp codes, joint crop, temporal classifier runs on a batch', async () => {
      const loader = new Loader(emb.temporal.train, { batchSize: 4, seed: 1, transform: fmowTemporalJointCrop(16) });
      const b = await loader.batchAt(0);
      assert.equal(b.frames!.length, 3);
      assert.deepEqual(b.frames![0].shape, [4, 16, 16, 3]);
      const meta = b.meta[0] as { timestamps: number[][]; rows: number[] };
      assert.equal(meta.timestamps.length, 3);
      for (const [yo, m, h] of meta.timestamps) assert.ok(yo >= 1 && yo <= 15 && m >= 0 && m <= 11 && h >= 9 && h <= 16, `code ${[yo, m, h]}`);
      const rows = meta.rows.map((r) => emb.temporal.train.info(r).path!);
      assert.ok(rows.every((p) => path.dirname(p) === path.dirname(rows[0])), 'same site');
      const clf = createSatMaeTemporalVit('satmae_temporal_vit_base_patch16', { imgSize: 16, patchSize: 8, embedDim: 48, depth: 1, numHeads: 2, timeEmbedDim: 4, numClasses: 62 });
      tf.tidy(() => {
        const x = tf.stack(b.frames!, 1) as tf.Tensor5D; // [B, T, H, W, C]
        const o = satMaeTemporalVitForward(clf, x, b.meta.map((mm) => (mm as { timestamps: number[][] }).timestamps));
        assert.deepEqual(o.logits!.shape, [4, 62]);
      });
      disposeSatMaeTemporalVit(clf);
      disposeBatch(b);
    });

    it('dates change the site: season (crop strips), construction progress (roofs appear), a flood on one date', () => {
      const r = new Rng(5);
      const dates = siteDates(4, r);
      for (let k = 1; k < dates.length; k++) assert.ok(dates[k].timestamp > dates[k - 1].timestamp, 'sorted');
      assert.equal(seasonalDryness(7), 0);
      assert.equal(seasonalDryness(1), 1);
      const mean = (im: { data: Float32Array }, band: number): number => {
        let s = 0;
        for (let i = band; i < im.data.length; i += 13) s += im.data[i];
        return s / (im.data.length / 13);
      };
      // construction: the last date (roofs: bright, flat SWIR) differs from the first (bare soil)
      const c = renderSiteDates('construction_site', 24, siteDates(4, new Rng(1), 2005, 2015), new Rng(2));
      assert.ok(Math.abs(mean(c[3].ms, 11) / mean(c[3].ms, 3) - mean(c[0].ms, 11) / mean(c[0].ms, 3)) > 0.02, 'SWIR/red ratio moves with progress');
      // the flooded road: one date has much more water (low NIR) than the others
      const f = renderSiteDates('flooded_road', 24, siteDates(4, new Rng(3)), new Rng(4));
      const nir = f.map((im) => mean(im.ms, 7) / mean(im.ms, 3));
      const low = nir.indexOf(Math.min(...nir));
      assert.ok(low > 0, 'the flood is never on the first date');
      assert.ok(nir.filter((_, k) => k !== low).every((v) => v > nir[low] * 1.05), `NIR/red per date ${nir.map((v) => v.toFixed(2))}`);
    });

    it('deterministic: same options ⇒ byte-identical CSV / GeoTIFF files in another cache', async () => {
      const other = await fsp.mkdtemp(path.join(os.tmpdir(), 'vitpeft-beyond2-'));
      try {
        const a = emb.paths;
        const b = await ensureEmbeddedTemporal({ ...OPTS, cacheDir: other });
        assert.equal(await sha(a.rgbCsv.train), await sha(b.rgbCsv.train));
        assert.equal(await sha(a.sentinelCsv.test), await sha(b.sentinelCsv.test));
        const rel = path.relative(a.root, emb.sentinel.val.info(3).path!);
        assert.equal(await sha(path.join(a.root, rel)), await sha(path.join(b.root, rel)));
        const c = await ensureEmbeddedTemporal({ ...OPTS, seed: 4, cacheDir: other });
        assert.notEqual(await sha(c.rgbCsv.train), await sha(a.rgbCsv.train));
      } finally {
        await fsp.rm(other, { recursive: true, force: true });
      }
    });

    it('the group-channel classifier takes fMoW-Sentinel and EuroSAT 13-band batches (SatMAE Sentinel transform)', async () => {
      const clf = createSatMaeGroupVit('satmae_group_vit_base_patch8', { imgSize: 16, patchSize: 8, embedDim: 32, depth: 1, numHeads: 2, channelEmbedDim: 8, numClasses: 10 });
      const eu = await loadEmbedded({ seed: 0, size: 16, satellitePerClass: 5, naturalPerClass: 5, cacheDir: cache });
      for (const ds of [emb.sentinel.train, eu.satellite.ms.train]) {
        const loader = new Loader(ds, { batchSize: 3, seed: 0, transform: sentinelEval(16) });
        const b = await loader.batchAt(0);
        assert.deepEqual(b.images!.shape, [3, 16, 16, 13]);
        tf.tidy(() => assert.deepEqual(satMaeGroupVitForward(clf, b.images!).logits!.shape, [3, 10]));
        disposeBatch(b);
      }
      disposeSatMaeGroupVit(clf);
    });
  });

  describe('building chips (SpaceNet-v1 format)', () => {
    it('spacenet1 reads 3/8/13-band products; its rasterised masks equal the rendered footprints; splits by image id', async () => {
      const OPTS = { seed: 2, size: 24, chips: 10, cacheDir: cache };
      const e13 = await loadEmbeddedBuildings(OPTS);
      assert.deepEqual([e13.train.length, e13.val.length, e13.test.length], [6, 2, 2]);
      const s = await e13.train.get(1);
      assert.equal(s.image.channels, 13);
      const id = (s.meta as { imageId: number }).imageId;
      const chip = renderBuildingChip(24, Rng.derive(2, 'embedded-buildings', id));
      assert.deepEqual(Array.from(s.mask!.data), Array.from(chip.mask.data), 'mask from GeoJSON + georeference == footprints at pixel centres');
      assert.ok(chip.mask.data.some((v) => v === 1));
      for (const [product, C] of [['3band', 3], ['8band', 8]] as const) {
        const e = await loadEmbeddedBuildings({ ...OPTS, product });
        const t = await e.test.get(0);
        assert.equal(t.image.channels, C);
        assert.equal(t.mask!.channels, 1);
      }
      const rgb = (await (await loadEmbeddedBuildings({ ...OPTS, product: '3band' })).train.get(1)).image;
      assert.ok(Math.max(...rgb.data) > 1 && Math.max(...rgb.data) <= 255, '3band is 8-bit RGB like SpaceNet');
    });

    it('dark roofs vs asphalt and concrete vs bright roofs: same RGB chromaticity (±0.025), separated by SWIR/red (≥ 0.25)', () => {
      const sp = (name: string): readonly number[] => SCENE_SPECTRA[(SCENE_COVERS as readonly string[]).indexOf(name)];
      const chroma = (s: readonly number[]): number[] => [s[3], s[2], s[1]].map((v) => v / (s[3] + s[2] + s[1]));
      for (const [a, b, swir] of [['darkroof', 'road', 11], ['concrete', 'roof', 12]] as const) {
        const ca = chroma(sp(a));
        const cb = chroma(sp(b));
        assert.ok(ca.every((v, i) => Math.abs(v - cb[i]) < 0.025), `${a} vs ${b} RGB chromaticity ${ca.map((v) => v.toFixed(3))} / ${cb.map((v) => v.toFixed(3))}`);
        assert.ok(Math.abs(sp(a)[swir] / sp(a)[3] - sp(b)[swir] / sp(b)[3]) >= 0.25, `${a} vs ${b} SWIR/red`);
      }
      const chip = renderBuildingChip(32, new Rng(9), 1);
      assert.equal(chip.ms.channels, 13);
      assert.ok(chip.footprints.length >= 3);
      for (const f of chip.footprints) assert.deepEqual(f[0], f[f.length - 1], 'closed GeoJSON rings');
    });

    it('mask errors name the file and the field: short GeoJSON ring, labels outside the raster, mask/image size mismatch in a batch', async () => {
      const root = path.join(cache, 'bad-spacenet');
      const base = path.join(root, 'SN1_buildings', 'train');
      const img = makeImg(8, 8, 3);
      await writeGeoTiff(path.join(base, '3band', '3band_AOI_1_RIO_img1.tif'), img, { dtype: 'uint8', origin: [-43, -22], pixelSize: [1e-5, 1e-5], epsg: 4326 });
      await writeGeoTiff(path.join(base, '3band', '3band_AOI_1_RIO_img2.tif'), img, { dtype: 'uint8', origin: [-43, -22], pixelSize: [1e-5, 1e-5], epsg: 4326 });
      await fsp.mkdir(path.join(base, 'geojson'), { recursive: true });
      const g1 = path.join(base, 'geojson', 'Geo_AOI_1_RIO_img1.geojson');
      await fsp.writeFile(g1, JSON.stringify({ type: 'FeatureCollection', features: [{ type: 'Feature', geometry: { type: 'Polygon', coordinates: [[[-43, -22], [-42.99999, -22]]] } }] }));
      const g2 = path.join(base, 'geojson', 'Geo_AOI_1_RIO_img2.geojson');
      await writeGeojson(g2, [[[[-40, -20], [-39.9999, -20], [-39.9999, -20.0001], [-40, -20]]]]);
      const ds = await spacenet1(root);
      await assert.rejects(ds.get(0), /Geo_AOI_1_RIO_img1\.geojson: features\[0\]\.geometry: ring of 2 positions encloses nothing/);
      await assert.rejects(ds.get(1), /Geo_AOI_1_RIO_img2\.geojson: none of its 1 polygon\(s\) overlaps the raster .*3band_AOI_1_RIO_img2\.tif/);
      // a transform that resizes the image but not the mask → the batch names the sample and file
      const rec = new RecordDataset('masks', [{ path: 'chip_7.tif' }], async () => ({ image: makeImg(8, 8, 3), mask: makeImg(4, 4, 1), path: 'chip_7.tif' }));
      const loader = new Loader(rec, { batchSize: 1, shuffle: false });
      await assert.rejects(loader.batchAt(0), /masks: sample 0 \(chip_7\.tif\): mask is 4×4×1 but the image is 8×8×3/);
      const ok = new Loader(rec, { batchSize: 1, shuffle: false, transform: resizeTo(8) });
      const b = await ok.batchAt(0);
      assert.deepEqual(b.masks!.shape, [1, 8, 8, 1]);
      disposeBatch(b);
    });
  });

  describe('pathology hospitals (Camelyon17-WILDS format)', () => {
    it('the WILDS hospital protocol: train on 0/3/4, OOD val = 1, OOD test = 2, pre-train on the unlabelled target hospitals', async () => {
      const e = await loadEmbeddedPathology({ seed: 1, size: 16, labelledPerHospital: 20, unlabeledPerHospital: 6, cacheDir: cache });
      const hosp = (ds: Dataset): Set<number> => new Set(Array.from({ length: ds.length }, (_, i) => (ds.info(i).meta as { hospital: number }).hospital));
      assert.deepEqual([...hosp(e.train)].sort(), [0, 3, 4]);
      assert.deepEqual([...hosp(e.idVal)].sort(), [0, 3, 4]);
      assert.deepEqual([...hosp(e.val)], [1]);
      assert.deepEqual([...hosp(e.test)], [2]);
      assert.deepEqual([...hosp(e.pretrain)].sort(), [1, 2]);
      assert.equal(e.pretrain.length, 12);
      assert.equal(e.train.length + e.idVal.length, 60);
      assert.equal(e.test.length, 20);
      assert.ok(Array.from(labelsOf(e.test)).filter((y) => y === 1).length === 10, 'balanced labels');
      const s = await e.pretrain.get(0);
      assert.equal(s.label, undefined, 'unlabelled');
      assert.equal(s.image.channels, 3);
      const all = await camelyon17Protocol(e.paths.root, e.paths.unlabeledRoot, { pretrainSplits: ['train_unlabeled', 'val_unlabeled', 'test_unlabeled'] });
      assert.equal(all.pretrain.length, 30);
    });

    it('hospitals differ in stain (mean colour), labels do not depend on the hospital', () => {
      const meanRgb = (h: number): number[] => {
        const acc = [0, 0, 0];
        for (let i = 0; i < 6; i++) {
          const im = renderPathologyPatch(i % 2 === 0, h, 16, Rng.derive(7, h, i));
          for (let p = 0; p < im.data.length; p++) acc[p % 3] += im.data[p] / (im.data.length / 3) / 6;
        }
        return acc;
      };
      const m0 = meanRgb(0);
      const m2 = meanRgb(2);
      assert.ok(Math.hypot(m0[0] - m2[0], m0[1] - m2[1], m0[2] - m2[2]) > 0.05, `hospital 0 ${m0.map((v) => v.toFixed(2))} vs 2 ${m2.map((v) => v.toFixed(2))}`);
      assert.equal(HOSPITAL_STAINS.length, 5);
    });
  });

  describe('camera traps (iWildCam-WILDS format)', () => {
    it('five CSVs, sparse category ids remapped, OOD locations disjoint from training, long tail, macro F1 over present classes', async () => {
      const e = await loadEmbeddedCameraTraps({ seed: 2, size: 16, locations: 6, trainSequences: 40, idSequences: 4, oodSequences: 6, cacheDir: cache });
      const locs = (ds: Dataset): Set<number> => new Set(Array.from({ length: ds.length }, (_, i) => (ds.info(i).meta as { location: number }).location));
      const tr = locs(e.train);
      for (const l of [...locs(e.val), ...locs(e.test)]) assert.ok(!tr.has(l), `OOD location ${l} also in train`);
      for (const l of [...locs(e.idVal), ...locs(e.idTest)]) assert.ok(tr.has(l));
      assert.equal(e.train.length, 120);
      assert.deepEqual(e.train.classes, [...new Set(CAMERA_TRAP_SPECIES.map((s) => s.categoryId))].filter((c) => e.train.classes!.includes(String(c))).map(String));
      const y = labelsOf(e.train);
      const counts = new Map<number, number>();
      for (const v of y) counts.set(v, (counts.get(v) ?? 0) + 1);
      assert.equal([...counts.entries()].sort((a, b) => b[1] - a[1])[0][0], 0, 'empty frames are the most frequent class');
      const s = await e.test.get(0);
      assert.equal(s.image.channels, 3);
      // a majority-class predictor: WILDS macro F1 over the classes present in the labels
      const yt = labelsOf(e.test);
      const m = classificationMetrics(yt, new Int32Array(yt.length));
      assert.ok(m.macroF1 < m.accuracy);
    });
  });

  describe('date-format and band-count errors name the file and the field', () => {
    it('fMoW timestamps: day-first dates, 24h overflow, US format', async () => {
      const dir = path.join(cache, 'bad-fmow');
      await fsp.mkdir(path.join(dir, 'fmow/train/park/park_1'), { recursive: true });
      for (const [ts, re] of [
        ['2015-31-12T10:00:00Z', /line 2, column 2: month 31 \(characters 5–7 of '2015-31-12T10:00:00Z'\) is not in 1–12/],
        ['2015-06-01T25:00:00Z', /line 2, column 2: hour 25 .* is not in 0–23/],
        ['06/01/2015 10:00', /line 2, column 2: cannot read the year at characters 0–4 of '06\/01\/2015 10:00'/],
      ] as const) {
        const csv = path.join(dir, 'train.csv');
        await fsp.writeFile(csv, `category,image_path,timestamp\n34,fmow/train/park/park_1/park_1_0_rgb.jpg,${ts}\n`);
        await assert.rejects(fmowTemporal(csv), (e: Error) => e.message.includes(csv) && re.test(e.message));
      }
    });

    it('fMoW-Sentinel and the 13-band SpaceNet product: a 12-band file is an error naming it', async () => {
      const dir = path.join(cache, 'bad-sentinel');
      const tif = path.join(dir, 'fmow-sentinel/train/park/park_1/park_1_0.tif');
      await writeGeoTiff(tif, makeImg(4, 4, 12));
      const csv = path.join(dir, 'train.csv');
      await fsp.writeFile(csv, ',category,location_id,image_id,timestamp\n0,park,1,0,2015-06-01T10:00:00Z\n');
      const ds = await fmowSentinel(csv);
      await assert.rejects(ds.get(0), (e: Error) => e.message.includes(tif) && /12 bands, expected 13/.test(e.message));
      const root = path.join(cache, 'bad-13band');
      await writeGeoTiff(path.join(root, 'SN1_buildings/test/13band/13band_AOI_1_RIO_img3.tif'), makeImg(4, 4, 12));
      const sn = await spacenet1(root, { split: 'test', image: '13band' });
      await assert.rejects(sn.get(0), /13band_AOI_1_RIO_img3\.tif: 12 bands, expected 13/);
      await assert.rejects(spacenet1(root, { image: '4band' as never }), /image must be one of 3band, 8band, 13band, got '4band'/);
    });
  });
});
