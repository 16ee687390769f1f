/**
 * Embedded offline domains for the beyond-RGB experiments, generated deterministically from a seed in the **real
 * on-disk formats** and opened with the same loaders as the real datasets (data-loaders/README.md documents what each
 * can and cannot show):
 *
 * | domain | formats written | loaders |
 * |---|---|---|
 * | `temporal` — multi-date sites (8 fMoW categories) | fMoW-RGB CSVs `{train,val,test}_62classes.csv` + JPEGs (fMoW-temporal), fMoW-Sentinel CSVs `train.csv` / `val.csv` / `test_gt.csv` + 13-band GeoTIFFs | `fmowTemporal`, `fmowRgb`, `fmowSentinel` |
 * | `buildings` — urban chips with building footprints | SpaceNet-v1 `SN1_buildings/train/{3band,8band,13band,geojson}` (EPSG:4326) | `spacenet1` |
 * | `pathology` — patches of 5 hospitals | Camelyon17-WILDS `camelyon17/metadata.csv` + PNG patches, `camelyon17_unlabeled/` | `camelyon17`, `camelyon17Unlabeled`, `camelyon17Protocol` |
 * | `cameratraps` — camera locations, long-tailed species | iWildCam-WILDS five CSVs + `train/<file>.jpg` | `iwildcam` |
 *
 * Every domain is cached under `<cacheDir>/<domain>-<seed>-<size>-<options hash>/`, generated into a temporary sibling,
 * `COMPLETE.json` written last and the folder renamed into place (an interrupted run is never used). Same options ⇒
 * byte-identical PNG / TIFF / CSV / GeoJSON files (JPEGs too with the same libjpeg).
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { Rng, hash32 } from '../lib/rng';
import { checkKeys } from '../lib/check';
import { Dataset, Progress, filterDataset } from './dataset';
import { encodeGeoTiff, encodeImage } from './encode';
import { toCsv } from './csv';
import { Img, makeImg } from './image';
import { defaultCacheDir } from './embedded';
import { FMOW_CLASSES, fmowRgb, fmowTemporal } from './formats/fmow';
import { fmowSentinel } from './formats/fmow-sentinel';
import { spacenet1 } from './formats/spacenet';
import { Camelyon17ProtocolDatasets, camelyon17Protocol, iwildcam, CAMELYON17_PROTOCOL } from './formats/wilds';
import { TEMPORAL_SITE_CLASSES, renderBuildingChip, renderSiteDates, siteDates } from './embedded-scenes';
import { HOSPITAL_STAINS, renderPathologyPatch } from './embedded-pathology';
import { CAMERA_TRAP_SPECIES, animalPose, cameraLocation, drawSpecies, renderCameraTrapFrame } from './embedded-cameratrap';

/** Bumped whenever a generator's output changes (caches of another version are regenerated). */
export const EMBEDDED_BEYOND_VERSION = 1;

interface CommonOptions {
  /** Generation seed (default 0). */
  seed?: number;
  /** Image side in pixels (default 32). */
  size?: number;
  /** Cache root (default `$VITPEFT_CACHE_DIR` or `<repo>/.cache/embedded`). */
  cacheDir?: string;
  force?: boolean;
  onProgress?: (p: Progress) => void;
}

const COMMON = ['seed', 'size', 'cacheDir', 'force', 'onProgress'] as const;

/** What `COMPLETE.json` of a domain records. */
export interface DomainManifest<K> {
  version: number;
  domain: string;
  key: K;
  files: number;
  seconds: number;
  /** Domain facts (split sizes, class counts, ids). */
  info: Record<string, unknown>;
}

function checkSize(size: number): void {
  if (!Number.isInteger(size) || size < 8 || size > 512) throw new Error(`embedded: size must be an integer in [8, 512], got ${size}`);
}

function checkCount(what: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) throw new Error(`embedded: ${what} must be an integer ≥ ${min}, got ${v}`);
}

/** A file writer counting files, creating folders. */
function writer(root: string): { write: (rel: string, data: Buffer | string) => Promise<void>; count: () => number } {
  let n = 0;
  return {
    write: async (rel, data) => {
      const file = path.join(root, rel);
      await fsp.mkdir(path.dirname(file), { recursive: true });
      await fsp.writeFile(file, data);
      n++;
    },
    count: () => n,
  };
}

async function readManifest<K>(dir: string): Promise<DomainManifest<K> | null> {
  try {
    return JSON.parse(await fsp.readFile(path.join(dir, 'COMPLETE.json'), 'utf8')) as DomainManifest<K>;
  } catch {
    return null;
  }
}

/** Generate-once cache of one domain configuration (same protocol as `ensureEmbedded`). */
async function ensureDomain<K extends { seed: number; size: number }>(
  domain: string,
  key: K,
  opt: CommonOptions,
  generate: (dir: string) => Promise<{ files: number; info: Record<string, unknown> }>,
): Promise<{ dir: string; manifest: DomainManifest<K> }> {
  const cache = opt.cacheDir ?? defaultCacheDir();
  const keyJson = JSON.stringify(key);
  const dir = path.join(cache, `${domain}-${key.seed}-${key.size}-${hash32(keyJson).toString(16)}`);
  const matches = (m: DomainManifest<K> | null): m is DomainManifest<K> =>
    !!m && m.version === EMBEDDED_BEYOND_VERSION && m.domain === domain && JSON.stringify(m.key) === keyJson;
  const existing = await readManifest<K>(dir);
  if (!opt.force && matches(existing)) return { dir, manifest: existing };
  await fsp.mkdir(cache, { recursive: true });
  for (const e of await fsp.readdir(cache)) {
    if (e.startsWith(`${path.basename(dir)}.tmp-`)) {
      const st = await fsp.stat(path.join(cache, e)).catch(() => null);
      if (st && Date.now() - st.mtimeMs > 3600e3) await fsp.rm(path.join(cache, e), { recursive: true, force: true });
    }
  }
  const tmp = `${dir}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    const t0 = Date.now();
    const { files, info } = await generate(tmp);
    const manifest: DomainManifest<K> = { version: EMBEDDED_BEYOND_VERSION, domain, key, files, seconds: (Date.now() - t0) / 1000, info };
    await fsp.writeFile(path.join(tmp, 'COMPLETE.json'), JSON.stringify(manifest, null, 2));
    const now = await readManifest<K>(dir);
    if (matches(now) && !opt.force) {
      await fsp.rm(tmp, { recursive: true, force: true });
      return { dir, manifest: now };
    }
    const trash = `${dir}.old-${process.pid}-${Math.random().toString(36).slice(2)}`;
    await fsp.rename(dir, trash).catch(() => undefined);
    try {
      await fsp.rename(tmp, dir);
    } catch (e) {
      const other = await readManifest<K>(dir);
      if (matches(other)) {
        await fsp.rm(tmp, { recursive: true, force: true });
        return { dir, manifest: other };
      }
      throw new Error(`embedded ${domain}: cannot move ${tmp} to ${dir}: ${(e as Error).message}`);
    }
    await fsp.rm(trash, { recursive: true, force: true });
    return { dir, manifest };
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Split position k of n items: first 60 % train, next 20 % val, rest test. */
function split3(k: number, n: number): 'train' | 'val' | 'test' {
  const a = Math.round(n * 0.6);
  const b = Math.round(n * 0.2);
  return k < a ? 'train' : k < a + b ? 'val' : 'test';
}

/** Run async jobs with at most `n` in flight. */
async function pool(jobs: Array<() => Promise<void>>, n = 8): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, jobs.length) }, async () => {
      while (next < jobs.length) await jobs[next++]();
    }),
  );
}

function progress(opt: CommonOptions, phase: string, total: number): () => void {
  let done = 0;
  return () => {
    done++;
    if (opt.onProgress && (done % 25 === 0 || done === total)) opt.onProgress({ phase, done, total });
  };
}

// ------------------------------------------------------------------------------------------------------------------
// temporal (fMoW-temporal RGB + fMoW-Sentinel 13-band)

export interface EmbeddedTemporalOptions extends CommonOptions {
  /** Sites per class (default 20 → 12 train / 4 val / 4 test locations per class). */
  locationsPerClass?: number;
  /** Dates per site, inclusive range (default [3, 5]). */
  datesPerLocation?: [number, number];
}

export interface EmbeddedTemporalPaths {
  root: string;
  /** fMoW-RGB CSVs (column 0 class id, 1 path, 2 timestamp), one row per image. */
  rgbCsv: Record<'train' | 'val' | 'test', string>;
  /** fMoW-Sentinel CSVs (category, location_id, image_id, timestamp); images under `sentinel/fmow-sentinel/<split>/`. */
  sentinelCsv: Record<'train' | 'val' | 'test', string>;
  manifest: DomainManifest<Record<string, unknown>>;
}

/** Generate (once) the multi-date domain. */
export async function ensureEmbeddedTemporal(opt: EmbeddedTemporalOptions = {}): Promise<EmbeddedTemporalPaths> {
  checkKeys('EmbeddedTemporalOptions', opt, [...COMMON, 'locationsPerClass', 'datesPerLocation']);
  const key = {
    seed: opt.seed ?? 0,
    size: opt.size ?? 32,
    locationsPerClass: opt.locationsPerClass ?? 20,
    datesPerLocation: opt.datesPerLocation ?? ([3, 5] as [number, number]),
  };
  checkSize(key.size);
  checkCount('locationsPerClass', key.locationsPerClass, 5);
  const [dMin, dMax] = key.datesPerLocation;
  if (!Number.isInteger(dMin) || !Number.isInteger(dMax) || dMin < 1 || dMax < dMin) throw new Error(`embedded: datesPerLocation must be [min, max] integers with 1 ≤ min ≤ max, got [${key.datesPerLocation}]`);
  const { dir, manifest } = await ensureDomain('temporal', key, opt, async (out) => {
    const w = writer(out);
    const rgbRows: Record<string, Array<Array<string | number>>> = { train: [], val: [], test: [] };
    const senRows: Record<string, Array<Array<string | number>>> = { train: [], val: [], test: [] };
    const jobs: Array<() => Promise<void>> = [];
    const total = TEMPORAL_SITE_CLASSES.length * key.locationsPerClass;
    const tick = progress(opt, 'generate embedded temporal', total);
    const splitName = { train: 'train', val: 'val', test: 'test' } as const;
    let images = 0;
    for (const cls of TEMPORAL_SITE_CLASSES) {
      const label = (FMOW_CLASSES as readonly string[]).indexOf(cls);
      for (let loc = 0; loc < key.locationsPerClass; loc++) {
        const split = split3(loc, key.locationsPerClass);
        const rng = Rng.derive(key.seed, 'embedded-temporal', cls, loc);
        const n = dMin + rng.fork('n').int(dMax - dMin + 1);
        const dates = siteDates(n, rng.fork('dates'));
        const locationId = loc;
        images += n;
        jobs.push(async () => {
          const imgs = renderSiteDates(cls, key.size, dates, rng.fork('render'));
          const stem = `${cls}_${locationId}`;
          for (let k = 0; k < imgs.length; k++) {
            const rgbRel = `fmow/${splitName[split]}/${cls}/${stem}/${stem}_${k}_rgb.jpg`;
            await w.write(rgbRel, await encodeImage(imgs[k].rgb, 'jpeg', 95));
            const senRel = `sentinel/fmow-sentinel/${splitName[split]}/${cls}/${stem}/${stem}_${k}.tif`;
            await w.write(senRel, await encodeGeoTiff(imgs[k].ms, { dtype: 'uint16', origin: [500000 + 1000 * loc, 4500000 - 1000 * label], pixelSize: [10, 10], epsg: 32633 }));
            rgbRows[split].push([label, rgbRel, imgs[k].date.timestamp]);
            senRows[split].push([cls, locationId, k, imgs[k].date.timestamp]);
          }
          tick();
        });
      }
    }
    await pool(jobs);
    const sortRows = (rows: Array<Array<string | number>>): Array<Array<string | number>> => rows.sort((a, b) => (String(a[1]) < String(b[1]) ? -1 : String(a[1]) > String(b[1]) ? 1 : 0));
    for (const s of ['train', 'val', 'test'] as const) {
      await w.write(`${s}_62classes.csv`, toCsv(['category', 'image_path', 'timestamp'], sortRows(rgbRows[s])));
      const sen = senRows[s]
        .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : Number(a[1]) - Number(b[1]) || Number(a[2]) - Number(b[2])))
        .map((r, i) => [i, ...r]);
      await w.write(`sentinel/${s === 'test' ? 'test_gt' : s}.csv`, toCsv(['', 'category', 'location_id', 'image_id', 'timestamp'], sen));
    }
    return {
      files: w.count() + 1,
      info: {
        classes: [...TEMPORAL_SITE_CLASSES],
        labels: TEMPORAL_SITE_CLASSES.map((c) => (FMOW_CLASSES as readonly string[]).indexOf(c)),
        images,
        rows: { train: rgbRows.train.length, val: rgbRows.val.length, test: rgbRows.test.length },
      },
    };
  });
  return {
    root: dir,
    rgbCsv: { train: path.join(dir, 'train_62classes.csv'), val: path.join(dir, 'val_62classes.csv'), test: path.join(dir, 'test_62classes.csv') },
    sentinelCsv: { train: path.join(dir, 'sentinel', 'train.csv'), val: path.join(dir, 'sentinel', 'val.csv'), test: path.join(dir, 'sentinel', 'test_gt.csv') },
    manifest,
  };
}

export interface EmbeddedTemporalDatasets {
  paths: EmbeddedTemporalPaths;
  /** fMoW-temporal triplets (anchor + two other dates of its site), RGB. */
  temporal: Record<'train' | 'val' | 'test', Dataset>;
  /** Single images (fMoW-RGB loader). */
  rgb: Record<'train' | 'val' | 'test', Dataset>;
  /** 13-band single images (fMoW-Sentinel loader). */
  sentinel: Record<'train' | 'val' | 'test', Dataset>;
}

/** Ensure the multi-date domain, then open it with the fMoW-temporal, fMoW-RGB and fMoW-Sentinel loaders. */
export async function loadEmbeddedTemporal(opt: EmbeddedTemporalOptions = {}): Promise<EmbeddedTemporalDatasets> {
  const p = await ensureEmbeddedTemporal(opt);
  const out = { paths: p, temporal: {}, rgb: {}, sentinel: {} } as EmbeddedTemporalDatasets;
  for (const s of ['train', 'val', 'test'] as const) {
    out.temporal[s] = await fmowTemporal(p.rgbCsv[s], { name: `embedded-temporal-${s}` });
    out.rgb[s] = await fmowRgb(p.rgbCsv[s], { name: `embedded-temporal-rgb-${s}` });
    out.sentinel[s] = await fmowSentinel(p.sentinelCsv[s], { name: `embedded-temporal-sentinel-${s}` });
  }
  return out;
}

// ------------------------------------------------------------------------------------------------------------------
// buildings (SpaceNet-v1 layout)

export interface EmbeddedBuildingsOptions extends CommonOptions {
  /** Chips (default 300 → 180 train / 60 val / 60 test by image id). */
  chips?: number;
}

export interface EmbeddedBuildingsPaths {
  /** SpaceNet root (holds `SN1_buildings/train/…`). */
  root: string;
  /** Image ids of each split (all chips are in the torchgeo `train` folder, with labels). */
  ids: Record<'train' | 'val' | 'test', number[]>;
  manifest: DomainManifest<Record<string, unknown>>;
}

/** WorldView-2-like 8-band product from the 13 Sentinel-like bands: coastal, blue, green, yellow, red, red edge, NIR1, NIR2. */
export function eightBandProduct(ms: Img): Img {
  const S = ms.height * ms.width;
  const out = makeImg(ms.height, ms.width, 8);
  for (let p = 0; p < S; p++) {
    const b = (k: number): number => ms.data[p * 13 + k];
    const v = [b(0), b(1), b(2), (b(2) + b(3)) / 2, b(3), b(4), b(7), b(8)];
    for (let k = 0; k < 8; k++) out.data[p * 8 + k] = v[k];
  }
  return out;
}

/** Generate (once) the building-chip domain. */
export async function ensureEmbeddedBuildings(opt: EmbeddedBuildingsOptions = {}): Promise<EmbeddedBuildingsPaths> {
  checkKeys('EmbeddedBuildingsOptions', opt, [...COMMON, 'chips']);
  const key = { seed: opt.seed ?? 0, size: opt.size ?? 32, chips: opt.chips ?? 300 };
  checkSize(key.size);
  checkCount('chips', key.chips, 5);
  const ids: Record<'train' | 'val' | 'test', number[]> = { train: [], val: [], test: [] };
  for (let k = 0; k < key.chips; k++) ids[split3(k, key.chips)].push(k + 1);
  const { dir, manifest } = await ensureDomain('buildings', key, opt, async (out) => {
    const w = writer(out);
    const base = 'SN1_buildings/train';
    const tick = progress(opt, 'generate embedded buildings', key.chips);
    let buildingPixels = 0;
    const jobs = Array.from({ length: key.chips }, (_, k) => async () => {
      const id = k + 1;
      const chip = renderBuildingChip(key.size, Rng.derive(key.seed, 'embedded-buildings', id));
      // EPSG:4326 georeference near Rio (AOI_1): ~1e-5° pixels, chips on a grid
      const dx = 1e-5;
      const ox = -43.3 + (k % 50) * dx * (key.size + 4);
      const oy = -22.85 - Math.floor(k / 50) * dx * (key.size + 4);
      const geo = { origin: [ox, oy] as [number, number], pixelSize: [dx, dx] as [number, number], epsg: 4326 };
      const rgb8 = makeImg(key.size, key.size, 3, chip.rgb.data.map((v) => Math.round(v * 255)));
      await w.write(`${base}/3band/3band_AOI_1_RIO_img${id}.tif`, await encodeGeoTiff(rgb8, { ...geo, dtype: 'uint8' }));
      await w.write(`${base}/8band/8band_AOI_1_RIO_img${id}.tif`, await encodeGeoTiff(eightBandProduct(chip.ms), { ...geo, dtype: 'uint16' }));
      await w.write(`${base}/13band/13band_AOI_1_RIO_img${id}.tif`, await encodeGeoTiff(chip.ms, { ...geo, dtype: 'uint16' }));
      const polys = chip.footprints.map((ring) => [ring.map(([x, y]) => [ox + x * key.size * dx, oy - y * key.size * dx])]);
      const fc = {
        type: 'FeatureCollection',
        features: polys.map((p, j) => ({ type: 'Feature', properties: { building_id: j }, geometry: { type: 'Polygon', coordinates: p } })),
      };
      await w.write(`${base}/geojson/Geo_AOI_1_RIO_img${id}.geojson`, JSON.stringify(fc));
      for (const v of chip.mask.data) buildingPixels += v;
      tick();
    });
    await pool(jobs);
    return { files: w.count() + 1, info: { ids, buildingFraction: buildingPixels / (key.chips * key.size * key.size), products: ['3band', '8band', '13band'] } };
  });
  return { root: dir, ids, manifest };
}

export interface EmbeddedBuildingsDatasets {
  paths: EmbeddedBuildingsPaths;
  /** Chips with their rasterised masks (`spacenet1`), split by image id. */
  train: Dataset;
  val: Dataset;
  test: Dataset;
}

/** Ensure the building domain, then open one product ('3band' RGB uint8, '8band', '13band') with `spacenet1`. */
export async function loadEmbeddedBuildings(opt: EmbeddedBuildingsOptions & { product?: '3band' | '8band' | '13band' } = {}): Promise<EmbeddedBuildingsDatasets> {
  const { product, ...rest } = opt;
  const p = await ensureEmbeddedBuildings(rest);
  const all = await spacenet1(p.root, { split: 'train', image: product ?? '13band', name: `embedded-buildings-${product ?? '13band'}` });
  const part = (s: 'train' | 'val' | 'test'): Dataset => {
    const want = new Set(p.ids[s]);
    return filterDataset(all, (inf) => want.has((inf.meta as { imageId: number }).imageId), `embedded-buildings-${product ?? '13band'}-${s}`);
  };
  return { paths: p, train: part('train'), val: part('val'), test: part('test') };
}

// ------------------------------------------------------------------------------------------------------------------
// pathology (Camelyon17-WILDS layout)

export interface EmbeddedPathologyOptions extends CommonOptions {
  /** Labelled patches per hospital (default 120; half tumour). */
  labelledPerHospital?: number;
  /** Unlabelled patches per hospital (default 120; 30 % tumour, labels not written). */
  unlabeledPerHospital?: number;
}

export interface EmbeddedPathologyPaths {
  /** Labelled root (`metadata.csv`, `patches/`). */
  root: string;
  /** Unlabelled root. */
  unlabeledRoot: string;
  manifest: DomainManifest<Record<string, unknown>>;
}

/** Generate (once) the pathology domain: 5 hospitals × 2 patients (one node, one slide each). */
export async function ensureEmbeddedPathology(opt: EmbeddedPathologyOptions = {}): Promise<EmbeddedPathologyPaths> {
  checkKeys('EmbeddedPathologyOptions', opt, [...COMMON, 'labelledPerHospital', 'unlabeledPerHospital']);
  const key = { seed: opt.seed ?? 0, size: opt.size ?? 32, labelledPerHospital: opt.labelledPerHospital ?? 120, unlabeledPerHospital: opt.unlabeledPerHospital ?? 120 };
  checkSize(key.size);
  checkCount('labelledPerHospital', key.labelledPerHospital, 4);
  checkCount('unlabeledPerHospital', key.unlabeledPerHospital, 2);
  const { dir, manifest } = await ensureDomain('pathology', key, opt, async (out) => {
    const w = writer(out);
    const H = HOSPITAL_STAINS.length;
    const total = H * (key.labelledPerHospital + key.unlabeledPerHospital);
    const tick = progress(opt, 'generate embedded pathology', total);
    const lab: Array<Array<string | number>> = [];
    const unl: Array<Array<string | number>> = [];
    const jobs: Array<() => Promise<void>> = [];
    const counts: Record<string, number> = {};
    for (let h = 0; h < H; h++) {
      for (const labelled of [true, false]) {
        const n = labelled ? key.labelledPerHospital : key.unlabeledPerHospital;
        for (let i = 0; i < n; i++) {
          const p = i % 2; // two patients per hospital
          const patient = String(h * 10 + p + (labelled ? 0 : 5)).padStart(3, '0');
          const node = p;
          const slide = h * 10 + p + (labelled ? 0 : 5);
          const x = 96 * (i + 1);
          const y = 96 * (h + 1);
          const r = Rng.derive(key.seed, 'embedded-pathology', labelled ? 'l' : 'u', h, i);
          const tumor = labelled ? i % 4 < 2 : r.fork('label').next() < 0.3;
          // WILDS: train (0) / id_val (1) within hospitals 0, 3, 4 (90 / 10); hospitals 1 and 2 are overridden to val / test
          const split = i % 10 === 9 ? 1 : 0;
          const rel = `patches/patient_${patient}_node_${node}/patch_patient_${patient}_node_${node}_x_${x}_y_${y}.png`;
          const row = labelled ? [lab.length, patient, node, x, y, tumor ? 1 : 0, slide, h, split] : [unl.length, patient, node, x, y, slide, h];
          (labelled ? lab : unl).push(row);
          const kk = `${labelled ? 'labelled' : 'unlabelled'}-h${h}-${tumor ? 'tumor' : 'normal'}`;
          counts[kk] = (counts[kk] ?? 0) + 1;
          jobs.push(async () => {
            const img = renderPathologyPatch(tumor, h, key.size, r, Rng.derive(key.seed, 'embedded-pathology-slide', slide));
            await w.write(`${labelled ? 'camelyon17' : 'camelyon17_unlabeled'}/${rel}`, await encodeImage(img, 'png'));
            tick();
          });
        }
      }
    }
    await pool(jobs);
    await w.write('camelyon17/metadata.csv', toCsv(['', 'patient', 'node', 'x_coord', 'y_coord', 'tumor', 'slide', 'center', 'split'], lab));
    await w.write('camelyon17_unlabeled/metadata.csv', toCsv(['', 'patient', 'node', 'x_coord', 'y_coord', 'slide', 'center'], unl));
    return { files: w.count() + 1, info: { hospitals: H, counts, protocol: CAMELYON17_PROTOCOL } };
  });
  return { root: path.join(dir, 'camelyon17'), unlabeledRoot: path.join(dir, 'camelyon17_unlabeled'), manifest };
}

/** Ensure the pathology domain, then open the WILDS hospital protocol on it (`camelyon17Protocol`). */
export async function loadEmbeddedPathology(
  opt: EmbeddedPathologyOptions & { pretrainSplits?: readonly ('train_unlabeled' | 'val_unlabeled' | 'test_unlabeled')[] } = {},
): Promise<Camelyon17ProtocolDatasets & { paths: EmbeddedPathologyPaths }> {
  const { pretrainSplits, ...rest } = opt;
  const p = await ensureEmbeddedPathology(rest);
  return { ...(await camelyon17Protocol(p.root, p.unlabeledRoot, pretrainSplits ? { pretrainSplits } : {})), paths: p };
}

// ------------------------------------------------------------------------------------------------------------------
// camera traps (iWildCam-WILDS layout)

export interface EmbeddedCameraTrapOptions extends CommonOptions {
  /** Camera locations: the first 2/3 are training locations, then OOD validation, then OOD test (default 15: 10 / 2 / 3). */
  locations?: number;
  /** Three-frame bursts at the training locations for `train` (default 200). */
  trainSequences?: number;
  /** Bursts for each in-distribution split (`val_cis`, `test_cis`; default 30). */
  idSequences?: number;
  /** Bursts for each OOD split (`val_trans`, `test_trans`; default 40). */
  oodSequences?: number;
}

export interface EmbeddedCameraTrapPaths {
  root: string;
  /** Location ids of each kind. */
  locations: { train: number[]; oodVal: number[]; oodTest: number[] };
  manifest: DomainManifest<Record<string, unknown>>;
}

/** Generate (once) the camera-trap domain. */
export async function ensureEmbeddedCameraTraps(opt: EmbeddedCameraTrapOptions = {}): Promise<EmbeddedCameraTrapPaths> {
  checkKeys('EmbeddedCameraTrapOptions', opt, [...COMMON, 'locations', 'trainSequences', 'idSequences', 'oodSequences']);
  const key = {
    seed: opt.seed ?? 0,
    size: opt.size ?? 32,
    locations: opt.locations ?? 15,
    trainSequences: opt.trainSequences ?? 200,
    idSequences: opt.idSequences ?? 30,
    oodSequences: opt.oodSequences ?? 40,
  };
  checkSize(key.size);
  checkCount('locations', key.locations, 5);
  checkCount('trainSequences', key.trainSequences, 2);
  checkCount('idSequences', key.idSequences, 1);
  checkCount('oodSequences', key.oodSequences, 1);
  const nTrain = Math.round((key.locations * 2) / 3);
  const nVal = Math.max(1, Math.floor((key.locations - nTrain) / 2));
  const locs = {
    train: Array.from({ length: nTrain }, (_, i) => i),
    oodVal: Array.from({ length: nVal }, (_, i) => nTrain + i),
    oodTest: Array.from({ length: key.locations - nTrain - nVal }, (_, i) => nTrain + nVal + i),
  };
  const { dir, manifest } = await ensureDomain('cameratraps', key, opt, async (out) => {
    const w = writer(out);
    const locations = Array.from({ length: key.locations }, (_, l) => cameraLocation(Rng.derive(key.seed, 'embedded-cameratrap-location', l)));
    const plan: Array<{ csv: string; n: number; locs: number[]; years: [number, number] }> = [
      { csv: 'train.csv', n: key.trainSequences, locs: locs.train, years: [2013, 2014] },
      { csv: 'val_cis.csv', n: key.idSequences, locs: locs.train, years: [2015, 2015] },
      { csv: 'test_cis.csv', n: key.idSequences, locs: locs.train, years: [2016, 2016] },
      { csv: 'val_trans.csv', n: key.oodSequences, locs: locs.oodVal, years: [2013, 2016] },
      { csv: 'test_trans.csv', n: key.oodSequences, locs: locs.oodTest, years: [2013, 2016] },
    ];
    const total = plan.reduce((s, p) => s + 3 * p.n, 0);
    const tick = progress(opt, 'generate embedded camera traps', total);
    const jobs: Array<() => Promise<void>> = [];
    const counts: Record<string, Record<string, number>> = {};
    let seq = 0;
    for (const p of plan) {
      const rows: Array<Array<string | number>> = [];
      counts[p.csv] = {};
      for (let q = 0; q < p.n; q++) {
        const r = Rng.derive(key.seed, 'embedded-cameratrap', p.csv, q);
        const l = p.locs[r.int(p.locs.length)];
        const loc = locations[l];
        const sp = drawSpecies(loc, r.fork('species'));
        const pose = sp > 0 ? animalPose(loc, r.fork('pose')) : null;
        const year = p.years[0] + r.int(p.years[1] - p.years[0] + 1);
        const month = 1 + r.int(12);
        const day = 1 + r.int(28);
        const hour = r.int(24);
        const minute = r.int(60);
        const seqId = `seq${String(seq++).padStart(5, '0')}`;
        const name = CAMERA_TRAP_SPECIES[sp].name;
        counts[p.csv][name] = (counts[p.csv][name] ?? 0) + 3;
        for (let f = 0; f < 3; f++) {
          const sec = 2 * f + r.int(2);
          const filename = `loc${String(l).padStart(2, '0')}_${seqId}_f${f}.jpg`;
          const dt = `${year}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')} ${String(hour).padStart(2, '0')}:${String(minute).padStart(2, '0')}:${String(sec).padStart(2, '0')}.000`;
          rows.push([filename, CAMERA_TRAP_SPECIES[sp].categoryId, l, seqId, dt]);
          const fr = r.fork(`frame-${f}`);
          jobs.push(async () => {
            const img = renderCameraTrapFrame(loc, sp, pose, f, hour, key.size, fr);
            await w.write(`train/${filename}`, await encodeImage(img, 'jpeg', 92));
            tick();
          });
        }
      }
      await w.write(p.csv, toCsv(['filename', 'category_id', 'location', 'seq_id', 'datetime'], rows));
    }
    await w.write('categories.csv', toCsv(['category_id', 'name'], CAMERA_TRAP_SPECIES.map((s) => [s.categoryId, s.name])));
    await pool(jobs);
    return { files: w.count() + 1, info: { locations: locs, counts, species: CAMERA_TRAP_SPECIES.map((s) => ({ name: s.name, categoryId: s.categoryId, weight: s.weight })) } };
  });
  return { root: dir, locations: locs, manifest };
}

export interface EmbeddedCameraTrapDatasets {
  paths: EmbeddedCameraTrapPaths;
  /** WILDS splits: train, OOD val / test (other locations), ID val / test (training locations, other years). */
  train: Dataset;
  val: Dataset;
  test: Dataset;
  idVal: Dataset;
  idTest: Dataset;
}

/** Ensure the camera-trap domain, then open its WILDS splits with the iWildCam loader. */
export async function loadEmbeddedCameraTraps(opt: EmbeddedCameraTrapOptions = {}): Promise<EmbeddedCameraTrapDatasets> {
  const p = await ensureEmbeddedCameraTraps(opt);
  return {
    paths: p,
    train: await iwildcam(p.root, { split: 'train' }),
    val: await iwildcam(p.root, { split: 'val' }),
    test: await iwildcam(p.root, { split: 'test' }),
    idVal: await iwildcam(p.root, { split: 'id_val' }),
    idTest: await iwildcam(p.root, { split: 'id_test' }),
  };
}
