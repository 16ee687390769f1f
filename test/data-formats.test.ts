/**
 * Every format loader on small fixtures written here in the real on-disk layouts: round trips, class orders and split
 * ids equal to the reference lists, and errors that name the file/row/column for bad input.
 */
import { strict as assert } from 'assert';
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Rng } from '../lib/rng';
import { Img, makeImg } from '../data-loaders/image';
import { writeGeoTiff, writeJpeg, writePng } from '../data-loaders/encode';
import { labelsOf } from '../data-loaders/dataset';
import { toCsv } from '../data-loaders/csv';
import { imageFolder } from '../data-loaders/formats/imagefolder';
import { EUROSAT_CLASSES, EUROSAT_DIRS, eurosat } from '../data-loaders/formats/eurosat';
import {
  FMOW_CLASSES,
  fmowRgb,
  fmowTemporal,
  fmowTemporalCode,
  fmowTemporalJointCrop,
  readFmowMetadata,
  writeFmowMetadata,
} from '../data-loaders/formats/fmow';
import { fmowSentinel } from '../data-loaders/formats/fmow-sentinel';
import { rasterizePolygons, spacenet1, writeGeojson } from '../data-loaders/formats/spacenet';
import { camelyon17, camelyon17Unlabeled, iwildcam } from '../data-loaders/formats/wilds';
import { VTAB_TASKS, vtab1k, vtabAverage, vtabTask } from '../data-loaders/formats/vtab';

function solid(h: number, w: number, c: number, v: number): Img {
  const img = makeImg(h, w, c);
  img.data.fill(v);
  return img;
}
async function write(file: string, text: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, text);
}

let tmp: string;
before(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'vitpeft-formats-'));
});
after(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('data formats: ImageFolder', () => {
  it('classes = sorted folders, files sorted, non-images ignored; empty class and unknown class are errors', async () => {
    const root = path.join(tmp, 'if');
    await writePng(path.join(root, 'dog', 'b.png'), solid(3, 4, 3, 0.2));
    await writePng(path.join(root, 'cat', 'z.png'), solid(3, 4, 3, 0.6));
    await writeJpeg(path.join(root, 'cat', 'a.jpg'), solid(3, 4, 3, 0.4));
    await write(path.join(root, 'cat', 'notes.txt'), 'x');
    const ds = await imageFolder(root);
    assert.deepEqual(ds.classes, ['cat', 'dog']);
    assert.deepEqual(Array.from(labelsOf(ds)), [0, 0, 1]);
    assert.deepEqual([0, 1, 2].map((i) => path.basename(ds.info(i).path!)), ['a.jpg', 'z.png', 'b.png']);
    const s = await ds.get(2);
    assert.ok(Math.abs(s.image.data[0] - 0.2) < 0.003);
    await assert.rejects(imageFolder(root, { classes: ['cat'] }), /dog: unknown class 'dog'; valid: cat/);
    await fsp.mkdir(path.join(root, 'emu'));
    await assert.rejects(imageFolder(root), /emu: class 'emu' has no image file/);
    await assert.rejects(imageFolder(path.join(tmp, 'nothing')), /missing ImageFolder root/);
  });
});

describe('data formats: EuroSAT', () => {
  const root = (): string => path.join(tmp, 'eurosat');
  before(async () => {
    for (const [k, cls] of EUROSAT_CLASSES.entries()) {
      const ids = cls === 'Forest' ? [1, 2, 10] : [1, 2];
      for (const i of ids) {
        await writeJpeg(path.join(root(), EUROSAT_DIRS.rgb, cls, `${cls}_${i}.jpg`), solid(4, 4, 3, k / 10));
        const ms = makeImg(4, 4, 13);
        for (let j = 0; j < ms.data.length; j++) ms.data[j] = 100 * k + (j % 13);
        await writeGeoTiff(path.join(root(), EUROSAT_DIRS.ms, cls, `${cls}_${i}.tif`), ms);
      }
    }
  });

  it('enumerates the 10 classes in the reference order, files by numeric index', async () => {
    assert.deepEqual([...EUROSAT_CLASSES], [
      'AnnualCrop', 'Forest', 'HerbaceousVegetation', 'Highway', 'Industrial',
      'Pasture', 'PermanentCrop', 'Residential', 'River', 'SeaLake',
    ]);
    const rgb = await eurosat(root(), { variant: 'rgb' });
    assert.equal(rgb.length, 21);
    assert.deepEqual([2, 3, 4].map((i) => path.basename(rgb.info(i).path!)), ['Forest_1.jpg', 'Forest_2.jpg', 'Forest_10.jpg']);
    assert.equal(rgb.info(20).label, 9);
    const ms = await eurosat(root(), { variant: 'ms' });
    const s = await ms.get(5);
    assert.equal(s.image.channels, 13);
    assert.deepEqual(Array.from(s.image.data.slice(0, 13)), Array.from({ length: 13 }, (_, j) => 200 + j));
    assert.equal(s.label, 2);
  });

  it('reads SatMAE `path label` and torchgeo bare-name split files; bad lines name file and line', async () => {
    const sat = path.join(root(), 'eurosat-train.txt');
    await write(sat, `${EUROSAT_DIRS.ms}/SeaLake/SeaLake_2.tif 9\n\n${EUROSAT_DIRS.ms}/Forest/Forest_10.tif 1\n`);
    const a = await eurosat(root(), { variant: 'ms', split: sat });
    assert.deepEqual(Array.from(labelsOf(a)), [9, 1]);
    const tg = path.join(root(), 'tg-val.txt');
    await write(tg, 'River_1.tif\nHighway_2.tif\n');
    const b = await eurosat(root(), { variant: 'rgb', split: tg });
    assert.equal(path.basename(b.info(0).path!), 'River_1.jpg');
    assert.deepEqual(Array.from(labelsOf(b)), [8, 3]);
    assert.ok(Math.abs((await b.get(1)).image.data[0] - 0.3) < 0.01);
    const bad = path.join(root(), 'bad.txt');
    await write(bad, `${EUROSAT_DIRS.ms}/SeaLake/SeaLake_1.tif 9\n${EUROSAT_DIRS.ms}/Forest/Forest_1.tif 3\n`);
    await assert.rejects(eurosat(root(), { variant: 'ms', split: bad }), /bad\.txt: line 2: label 3 \(Highway\) disagrees with the class 'Forest'/);
    await write(bad, `${EUROSAT_DIRS.ms}/Forest/Forest_1.tif 10\n`);
    await assert.rejects(eurosat(root(), { variant: 'ms', split: bad }), /bad\.txt: line 1: label 10 out of range \[0, 10\)/);
    await write(bad, '\n\n');
    await assert.rejects(eurosat(root(), { variant: 'ms', split: bad }), /bad\.txt: empty split/);
    await write(bad, 'Lava_1.tif\n');
    await assert.rejects(eurosat(root(), { variant: 'ms', split: bad }), /bad\.txt: line 1: cannot tell the class of 'Lava_1\.tif'/);
  });

  it('unknown class folders, missing files and wrong band counts are errors naming the path', async () => {
    const r2 = path.join(tmp, 'eurosat2');
    await writeJpeg(path.join(r2, EUROSAT_DIRS.rgb, 'Lava', 'Lava_1.jpg'), solid(4, 4, 3, 0.1));
    await assert.rejects(eurosat(r2, { variant: 'rgb' }), /Lava: unknown EuroSAT class 'Lava'/);
    const sat = path.join(root(), 'gone.txt');
    await write(sat, `${EUROSAT_DIRS.ms}/Forest/Forest_99.tif 1\n`);
    const ds = await eurosat(root(), { variant: 'ms', split: sat });
    await assert.rejects(ds.get(0), /missing image: .*Forest_99\.tif/);
    await writeGeoTiff(path.join(root(), 'twelve', 'Forest_5.tif'), makeImg(4, 4, 12));
    await write(sat, 'twelve/Forest_5.tif 1\n');
    const ds12 = await eurosat(root(), { variant: 'ms', split: sat });
    await assert.rejects(ds12.get(0), /Forest_5\.tif: 12 bands, expected 13/);
  });
});

describe('data formats: fMoW', () => {
  const root = (): string => path.join(tmp, 'fmow');
  const img = (cat: string, loc: number, id: number): string => `train/${cat}/${cat}_${loc}/${cat}_${loc}_${id}_rgb.jpg`;
  before(async () => {
    const sizes: Record<string, [number, number]> = { a: [10, 14], b: [12, 11], c: [9, 9] };
    let k = 0;
    for (const [cat, loc, id] of [['airport', 0, 0], ['airport', 0, 1], ['airport', 0, 2], ['airport', 1, 0], ['zoo', 5, 3], ['zoo', 5, 4]] as const) {
      const [h, w] = Object.values(sizes)[k++ % 3];
      await writeJpeg(path.join(root(), img(cat, loc, id)), solid(h, w, 3, 0.1 * (id + 1)));
      await writeFmowMetadata(path.join(root(), img(cat, loc, id).replace('.jpg', '.json')), {
        gsd: 0.5 + id, timestamp: `201${id}-0${id + 1}-1${id}T0${id}:11:12Z`, imgWidth: w, imgHeight: h,
        boxes: [{ id: 7, box: [1, 2, 3, 4], category: cat }],
      });
    }
    const rows = [
      [0, img('airport', 0, 0), '2010-01-10T00:11:12Z'],
      [0, img('airport', 0, 1), '2011-02-11T13:11:12Z'],
      [0, img('airport', 0, 2), '2012-03-12T22:11:12Z'],
      [0, img('airport', 1, 0), '2015-12-01T09:00:00Z'],
      [61, img('zoo', 5, 3), '2016-07-04T05:00:00Z'],
      [61, img('zoo', 5, 4), '2017-08-05T06:00:00Z'],
    ];
    await write(path.join(root(), 'train_62classes.csv'), toCsv(['category', 'image_path', 'timestamp'], rows));
  });

  it('62 alphabetical classes; CSV rows → images, labels, timestamps; JSON metadata parsed', async () => {
    assert.equal(FMOW_CLASSES.length, 62);
    assert.deepEqual([...FMOW_CLASSES].sort(), [...FMOW_CLASSES]);
    assert.equal(FMOW_CLASSES[0], 'airport');
    assert.equal(FMOW_CLASSES[25], 'impoverished_settlement');
    assert.equal(FMOW_CLASSES[61], 'zoo');
    const ds = await fmowRgb(path.join(root(), 'train_62classes.csv'), { withMetadata: true });
    assert.equal(ds.length, 6);
    assert.deepEqual(Array.from(labelsOf(ds)), [0, 0, 0, 0, 61, 61]);
    const s = await ds.get(1);
    assert.ok(Math.abs(s.image.data[0] - 0.2) < 0.01);
    const m = s.meta as any;
    assert.equal(m.timestamp, '2011-02-11T13:11:12Z');
    assert.equal(m.fmow.gsd, 1.5);
    assert.deepEqual(m.fmow.boxes, [{ id: 7, box: [1, 2, 3, 4], category: 'airport' }]);
    assert.deepEqual(fmowTemporalCode('2011-02-11T13:11:12Z'), [9, 1, 13]);
  });

  it('bad CSV rows and bad JSON are errors naming file, line and field', async () => {
    const bad = path.join(root(), 'bad.csv');
    await write(bad, toCsv(['category', 'image_path'], [[0, img('airport', 0, 0)], [3, img('zoo', 5, 3)]]));
    await assert.rejects(fmowRgb(bad), /bad\.csv: line 3: class id 3 is 'amusement_park' but the path is in 'zoo'/);
    await write(bad, toCsv(['category', 'image_path'], [[62, img('airport', 0, 0)]]));
    await assert.rejects(fmowRgb(bad), /bad\.csv: line 2, column 0: label 62 out of range \[0, 62\)/);
    await write(bad, toCsv(['category'], [[1]]));
    await assert.rejects(fmowRgb(bad), /bad\.csv: missing column/);
    await write(bad, toCsv(['category', 'image_path'], []));
    await assert.rejects(fmowRgb(bad), /bad\.csv: empty split/);
    const j = path.join(root(), 'x.json');
    await write(j, JSON.stringify({ gsd: 1, timestamp: 't', img_width: 3, bounding_boxes: [] }));
    await assert.rejects(readFmowMetadata(j), /x\.json: field 'img_height' must be a number/);
  });

  it('temporal triplets: siblings of the same location chosen by the sample rng, SatMAE timestamp codes', async () => {
    const ds = await fmowTemporal(path.join(root(), 'train_62classes.csv'));
    const seen = new Set<string>();
    for (let t = 0; t < 20; t++) {
      const s = await ds.get(0, new Rng(t));
      assert.equal(s.frames!.length, 3);
      const rows = (s.meta as any).rows as number[];
      assert.equal(rows[0], 0);
      assert.ok(rows[1] !== rows[2] && [1, 2].includes(rows[1]) && [1, 2].includes(rows[2]));
      seen.add(rows.join());
      const again = await ds.get(0, new Rng(t));
      assert.deepEqual((again.meta as any).rows, rows);
    }
    assert.equal(seen.size, 2);
    const lone = await ds.get(3, new Rng(1));
    assert.deepEqual((lone.meta as any).rows, [3, 3, 3]);
    const pair = await ds.get(4, new Rng(1));
    assert.deepEqual((pair.meta as any).rows, [4, 5, 5]);
    assert.deepEqual((pair.meta as any).timestamps, [[14, 6, 5], [15, 7, 6], [15, 7, 6]]);
    const jc = fmowTemporalJointCrop(8)(await ds.get(0, new Rng(2)), new Rng(3));
    assert.deepEqual(jc.frames!.map((f) => [f.height, f.width, f.channels]), [[8, 8, 3], [8, 8, 3], [8, 8, 3]]);
    const bad = path.join(root(), 'bad-ts.csv');
    await write(bad, toCsv(['category', 'image_path', 'timestamp'], [[0, img('airport', 0, 0), '20x0-01-01T00']]));
    await assert.rejects(fmowTemporal(bad), /bad-ts\.csv: line 2, column 2: cannot read the year/);
  });
});

describe('data formats: fMoW-Sentinel', () => {
  it('sorts by (category, location, timestamp), filters years, checks bands and categories', async () => {
    const root = path.join(tmp, 'fmow-s');
    const rows = [
      [0, 'zoo', 3, 1, '2017-01-01T00:00:00Z'],
      [1, 'airport', 10, 0, '2016-05-01T00:00:00Z'],
      [2, 'airport', 2, 5, '2018-01-01T00:00:00Z'],
      [3, 'airport', 2, 4, '2015-01-01T00:00:00Z'],
      [4, 'barn', 1, 0, '1999-01-01T00:00:00Z'],
    ] as const;
    for (const [, cat, loc, id] of rows) {
      const ms = makeImg(5, 5, 13);
      ms.data.fill(1000 + id);
      await writeGeoTiff(path.join(root, 'fmow-sentinel', 'train', cat, `${cat}_${loc}`, `${cat}_${loc}_${id}.tif`), ms);
    }
    await write(path.join(root, 'train.csv'), toCsv(['', 'category', 'location_id', 'image_id', 'timestamp'], rows.map((r) => [...r])));
    const ds = await fmowSentinel(path.join(root, 'train.csv'));
    assert.equal(ds.length, 4);
    assert.deepEqual([0, 1, 2, 3].map((i) => (ds.info(i).meta as any).imageId), [4, 5, 0, 1]);
    assert.deepEqual(Array.from(labelsOf(ds)), [0, 0, 0, 61]);
    const s = await ds.get(1);
    assert.equal(s.image.channels, 13);
    assert.equal(s.image.data[0], 1005);
    const masked = await fmowSentinel(path.join(root, 'train.csv'), { maskedBands: [0] });
    assert.ok(Math.abs((await masked.get(1)).image.data[0] - 1370.19151926) < 1e-3);
    const bad = path.join(root, 'val.csv');
    await write(bad, toCsv(['', 'category', 'location_id', 'image_id', 'timestamp'], [[0, 'volcano', 1, 1, '2017-01-01']]));
    await assert.rejects(fmowSentinel(bad), /val\.csv: line 2, column 'category': unknown class 'volcano'/);
    await write(bad, toCsv(['', 'category', 'location_id', 'timestamp'], [[0, 'zoo', 1, '2017-01-01']]));
    await assert.rejects(fmowSentinel(bad), /val\.csv: missing column 'image_id'/);
    await writeGeoTiff(path.join(root, 'fmow-sentinel', 'train', 'zoo', 'zoo_9', 'zoo_9_9.tif'), makeImg(3, 3, 3));
    await write(bad, toCsv(['', 'category', 'location_id', 'image_id', 'timestamp'], [[0, 'zoo', 9, 9, '2017-01-01']]));
    const three = await fmowSentinel(bad, { split: 'train' });
    await assert.rejects(three.get(0), /zoo_9_9\.tif: 3 bands, expected 13/);
  });
});

describe('data formats: SpaceNet-v1', () => {
  it('rasterises polygon centres (holes excluded) on the GeoTIFF grid', () => {
    const geo = { origin: [10, 20] as [number, number], resolution: [1, -1] as [number, number] };
    // square x ∈ [11, 15], y ∈ [19, 14] → pixel cols 1..4, rows 1..5 (centres 1.5..4.5, y 18.5..14.5)
    const outer = [[11, 19], [15, 19], [15, 14], [11, 14], [11, 19]];
    const hole = [[12, 18], [14, 18], [14, 16], [12, 16], [12, 18]];
    const m = rasterizePolygons([[outer, hole]], geo, 7, 7);
    const rows: string[] = [];
    for (let r = 0; r < 7; r++) rows.push(Array.from(m.data.slice(r * 7, r * 7 + 7)).join(''));
    assert.deepEqual(rows, ['0000000', '0111100', '0100100', '0100100', '0111100', '0111100', '0000000']);
  });

  it('pairs images and GeoJSON by id, masks from lon/lat polygons, empty labels → zero mask', async () => {
    const root = path.join(tmp, 'spacenet');
    const base = path.join(root, 'SN1_buildings', 'train');
    const origin: [number, number] = [-43.7, -22.9];
    const px = 1e-4;
    for (const id of [2, 10, 1]) {
      const im = makeImg(6, 8, 3);
      im.data.fill(100 * id);
      await writeGeoTiff(path.join(base, '3band', `3band_AOI_1_RIO_img${id}.tif`), im, { origin, pixelSize: [px, px] });
    }
    // building over cols 2..4, rows 1..2 of img1
    const lon = (c: number): number => origin[0] + c * px;
    const lat = (r: number): number => origin[1] - r * px;
    await writeGeojson(path.join(base, 'geojson', 'Geo_AOI_1_RIO_img1.geojson'), [
      [[[lon(2), lat(1)], [lon(5), lat(1)], [lon(5), lat(3)], [lon(2), lat(3)], [lon(2), lat(1)]]],
    ]);
    await write(path.join(base, 'geojson', 'Geo_AOI_1_RIO_img10.geojson'), '');
    const ds = await spacenet1(root);
    assert.equal(ds.length, 2, 'img2 has no labels and is dropped');
    assert.deepEqual([0, 1].map((i) => (ds.info(i).meta as any).imageId), [1, 10]);
    const s = await ds.get(0);
    let count = 0;
    for (let r = 0; r < 6; r++) for (let c = 0; c < 8; c++) {
      const v = s.mask!.data[r * 8 + c];
      count += v;
      assert.equal(v, r >= 1 && r <= 2 && c >= 2 && c <= 4 ? 1 : 0, `(${r},${c})`);
    }
    assert.equal(count, 6);
    const e = await ds.get(1);
    assert.ok(e.mask!.data.every((v) => v === 0));
    await write(path.join(base, 'geojson', 'Geo_AOI_1_RIO_img10.geojson'), '{"type": "FeatureCollection", "features": [');
    await assert.rejects(ds.get(1), /Geo_AOI_1_RIO_img10\.geojson: invalid GeoJSON/);
  });
});

describe('data formats: WILDS', () => {
  it('Camelyon17: zero-padded patients, split ids after the center overrides, path pattern, unlabelled splits', async () => {
    const root = path.join(tmp, 'camelyon17_v1.0');
    const rows = [
      [0, '004', 4, 3328, 21792, 1, 0, 0, 0],
      [1, '004', 4, 3360, 21792, 0, 0, 0, 1],
      [2, '021', 0, 100, 200, 1, 10, 1, 0],
      [3, '040', 2, 96, 32, 0, 20, 2, 0],
      [4, '087', 1, 7, 8, 1, 40, 4, 1],
    ];
    for (const [, p, n, x, y, tumor] of rows) {
      await writePng(path.join(root, 'patches', `patient_${p}_node_${n}`, `patch_patient_${p}_node_${n}_x_${x}_y_${y}.png`), solid(4, 4, 3, 0.5 + 0.1 * (tumor as number)));
    }
    await write(path.join(root, 'metadata.csv'), toCsv(['', 'patient', 'node', 'x_coord', 'y_coord', 'tumor', 'slide', 'center', 'split'], rows));
    const all = await camelyon17(root);
    assert.deepEqual([0, 1, 2, 3, 4].map((i) => (all.info(i).meta as any).split), [0, 1, 3, 2, 1]);
    assert.ok(all.info(0).path!.endsWith('patches/patient_004_node_4/patch_patient_004_node_4_x_3328_y_21792.png'));
    const test = await camelyon17(root, { split: 'test' });
    assert.equal(test.length, 1);
    const s = await test.get(0);
    assert.equal(s.label, 0);
    assert.deepEqual([(s.meta as any).hospital, (s.meta as any).slide], [2, 20]);
    assert.equal((await camelyon17(root, { split: 'val' })).length, 1);
    const un = await camelyon17Unlabeled(root);
    assert.deepEqual([0, 1, 2, 3, 4].map((i) => (un.info(i).meta as any).split), [10, 10, 11, 12, 10]);
    assert.equal(un.info(0).label, undefined);
    await assert.rejects(camelyon17(root, { split: 'valid' }), /unknown split 'valid'; valid: train, id_val, test, val, all/);
    await write(path.join(root, 'metadata.csv'), toCsv(['', 'patient', 'node', 'x_coord', 'y_coord', 'slide', 'center', 'split'], [[0, '004', 4, 1, 2, 0, 0, 0]]));
    await assert.rejects(camelyon17(root), /metadata\.csv: missing column 'tumor'/);
  });

  it('iWildCam: five CSVs in WILDS order, category/location remap, split ids, datetime parsing', async () => {
    const root = path.join(tmp, 'iwildcam_v2.0');
    const H = ['filename', 'category_id', 'location', 'seq_id', 'datetime'];
    const files: Record<string, Array<Array<string | number>>> = {
      'train.csv': [['a.jpg', 7, 30, 's2', '2013-06-09 16:51:52.000'], ['b.jpg', 0, 5, 's1', '2013-06-10 01:02:03.000']],
      'val_trans.csv': [['c.jpg', 3, 12, 's3', '2014-01-01 00:00:00.000']],
      'test_trans.csv': [['d.jpg', 7, 12, 's3', '2014-01-01 00:00:01.000']],
      'val_cis.csv': [['e.jpg', 0, 30, 's4', '2015-02-03 04:05:06.123']],
      'test_cis.csv': [['f.jpg', 3, 5, 's5', '2015-02-03 04:05:07.000']],
    };
    for (const [f, rows] of Object.entries(files)) {
      await write(path.join(root, f), toCsv(H, rows));
      for (const r of rows) await writeJpeg(path.join(root, 'train', String(r[0])), solid(4, 4, 3, 0.3));
    }
    const ds = await iwildcam(root);
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((i) => path.basename(ds.info(i).path!)), ['a.jpg', 'b.jpg', 'c.jpg', 'd.jpg', 'f.jpg', 'e.jpg']);
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((i) => (ds.info(i).meta as any).split), [0, 0, 1, 2, 4, 3]);
    assert.deepEqual(Array.from(labelsOf(ds)), [2, 0, 1, 2, 1, 0]);
    assert.deepEqual(ds.classes, ['0', '3', '7']);
    assert.deepEqual((ds.info(0).meta as any).location, 2);
    const m = ds.info(5).meta as any;
    assert.deepEqual([m.year, m.month, m.day, m.hour, m.minute, m.second], [2015, 2, 3, 4, 5, 6]);
    assert.equal((await iwildcam(root, { split: 'id_val' })).length, 1);
    await write(path.join(root, 'test_cis.csv'), toCsv(H, [['f.jpg', 3, 5, 's5', '2015/02/03 04:05:07']]));
    await assert.rejects(iwildcam(root), /test_cis\.csv: line 2, column 'datetime': datetime '2015\/02\/03 04:05:07' does not match/);
  });
});

describe('data formats: VTAB-1k', () => {
  it('19 tasks in 3 groups, folder aliases, list files, label checks, group-mean average', async () => {
    assert.equal(VTAB_TASKS.length, 19);
    const count = (g: string): number => VTAB_TASKS.filter((t) => t.group === g).length;
    assert.deepEqual([count('natural'), count('specialized'), count('structured')], [7, 4, 8]);
    assert.equal(vtabTask('cifar').name, 'cifar100');
    assert.equal(vtabTask('oxford_iiit_pet').numClasses, 37);
    const root = path.join(tmp, 'vtab-1k');
    const dir = path.join(root, 'cifar');
    for (let k = 0; k < 3; k++) await writeJpeg(path.join(dir, 'images', 'train800val200', `00000${k}.jpg`), solid(5, 6, 3, 0.2 * k));
    await write(path.join(dir, 'train800val200.txt'), 'images/train800val200/000000.jpg 5\nimages/train800val200/000001.jpg 99\nimages/train800val200/000002.jpg 0\n');
    const ds = await vtab1k(root, 'cifar100');
    assert.deepEqual(Array.from(labelsOf(ds)), [5, 99, 0]);
    assert.ok(Math.abs((await ds.get(2)).image.data[0] - 0.4) < 0.01);
    await write(path.join(dir, 'test.txt'), 'images/test/000000.jpg 100\n');
    await assert.rejects(vtab1k(root, 'cifar', 'test'), /test\.txt: line 1: label 100 out of range \[0, 100\)/);
    await write(path.join(dir, 'val200.txt'), '');
    await assert.rejects(vtab1k(root, 'cifar', 'val200'), /val200\.txt: empty split/);
    await assert.rejects(vtab1k(root, 'dtd'), /missing VTAB-1k task folder for 'dtd'/);
    assert.throws(() => vtabTask('imagenet'), /unknown VTAB-1k task 'imagenet'/);
    const acc: Record<string, number> = {};
    VTAB_TASKS.forEach((t) => (acc[t.name] = t.group === 'natural' ? 70 : t.group === 'specialized' ? 80 : 60));
    assert.deepEqual(vtabAverage(acc), { natural: 70, specialized: 80, structured: 60, average: 70 });
  });
});
