/**
 * The embedded default datasets: generated deterministically from a seed, in the real on-disk formats, cached.
 *
 * - `natural/` — the source domain: ImageFolder `natural/{train,val}/<shape>/<shape>_<i>.png` (10 object classes).
 * - `satellite/` — the target domain with the 10 EuroSAT class names, in EuroSAT layout: RGB JPEGs
 *   `2750/<Class>/<Class>_<i>.jpg`, 13-band uint16 GeoTIFFs `ds/images/remote_sensing/otherDatasets/sentinel_2/tif/
 *   <Class>/<Class>_<i>.tif` (the same scenes), and SatMAE-style split files `eurosat-{rgb,ms}-{train,val,test}.txt`
 *   (`path label`, 60/20/20 per class).
 *
 * `ensureEmbedded()` generates into `<cacheDir>/<name>-<seed>-<size>/` once and reuses it: generation writes into a
 * temporary sibling folder, writes `COMPLETE.json` last and renames the folder into place, so a half-written cache is
 * never used (an interrupted run leaves only a `*.tmp-<host>.<pid>.*` folder that is ignored, and removed by a later
 * run once its generator process is gone). See
 * data-loaders/README.md for what these datasets can and cannot show.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { Rng } from '../lib/rng';
import { checkKeys, fmtValue } from '../lib/check';
import { ensureDir, tempOwnerTag, writerGone } from '../lib/io/atomic';
import { kitCacheDir } from '../lib/report/paths';
import { Dataset, Progress } from './dataset';
import { encodeGeoTiff, encodeImage } from './encode';
import { EUROSAT_CLASSES, EUROSAT_DIRS, eurosat } from './formats/eurosat';
import { imageFolder } from './formats/imagefolder';
import { NATURAL_CLASSES, SATELLITE_CLASSES, renderNatural, renderSatellite } from './embedded-render';

/** Bumped whenever the generator's output changes (a cache of another version is regenerated). */
export const EMBEDDED_VERSION = 1;

export interface EmbeddedOptions {
  /** Generation seed (default 0). */
  seed?: number;
  /** Image side in pixels (default 32). */
  size?: number;
  /** Satellite scenes per class (default 100 → 1000 scenes: 600 train / 200 val / 200 test). */
  satellitePerClass?: number;
  /** Natural images per class (default 100 → 800 train / 200 val). */
  naturalPerClass?: number;
  /** Cache root (default `$VITPEFT_CACHE_DIR`, else `<repo>/.cache/embedded`; `~/.cache/vitpeft/embedded` for an installed copy). */
  cacheDir?: string;
  /** Regenerate even if a complete cache exists. */
  force?: boolean;
  onProgress?: (p: Progress) => void;
}

const OPTION_KEYS = ['seed', 'size', 'satellitePerClass', 'naturalPerClass', 'cacheDir', 'force', 'onProgress'] as const;

/** What `COMPLETE.json` records. */
export interface EmbeddedManifest {
  version: number;
  seed: number;
  size: number;
  satellitePerClass: number;
  naturalPerClass: number;
  satelliteClasses: string[];
  naturalClasses: string[];
  files: number;
  seconds: number;
}

export interface EmbeddedPaths {
  /** The cache folder of this configuration. */
  root: string;
  /** ImageFolder roots of the natural domain. */
  natural: { train: string; val: string };
  /** EuroSAT root of the satellite domain and its split files. */
  satellite: {
    root: string;
    splits: { rgb: Record<'train' | 'val' | 'test', string>; ms: Record<'train' | 'val' | 'test', string> };
  };
  manifest: EmbeddedManifest;
}

/** Default cache root. */
export function defaultCacheDir(): string {
  return process.env.VITPEFT_CACHE_DIR ?? path.join(kitCacheDir(), 'embedded');
}

function resolved(opt: EmbeddedOptions): Required<Pick<EmbeddedOptions, 'seed' | 'size' | 'satellitePerClass' | 'naturalPerClass'>> {
  const r = {
    seed: opt.seed ?? 0,
    size: opt.size ?? 32,
    satellitePerClass: opt.satellitePerClass ?? 100,
    naturalPerClass: opt.naturalPerClass ?? 100,
  };
  if (!Number.isInteger(r.seed)) throw new Error(`embedded: seed must be an integer, got ${fmtValue(r.seed)}`);
  if (!Number.isInteger(r.size) || r.size < 8 || r.size > 512) throw new Error(`embedded: size must be an integer in [8, 512], got ${fmtValue(r.size)}`);
  for (const k of ['satellitePerClass', 'naturalPerClass'] as const) {
    if (!Number.isInteger(r[k]) || r[k] < 5) throw new Error(`embedded: ${k} must be an integer ≥ 5, got ${fmtValue(r[k])}`);
  }
  return r;
}

/** Cache folder name of a configuration: `<name>-<seed>-<size>`, name = `default` or `s<sat>n<nat>`. */
export function embeddedName(opt: EmbeddedOptions = {}): string {
  const r = resolved(opt);
  const name = r.satellitePerClass === 100 && r.naturalPerClass === 100 ? 'default' : `s${r.satellitePerClass}n${r.naturalPerClass}`;
  return `${name}-${r.seed}-${r.size}`;
}

/** Per-class split of indices 1..n: first 60 % train, next 20 % val, rest test. */
function satSplit(i: number, n: number): 'train' | 'val' | 'test' {
  const nTrain = Math.round(n * 0.6);
  const nVal = Math.round(n * 0.2);
  return i <= nTrain ? 'train' : i <= nTrain + nVal ? 'val' : 'test';
}

function pathsFor(root: string, manifest: EmbeddedManifest): EmbeddedPaths {
  const sat = path.join(root, 'satellite');
  const sp = (v: 'rgb' | 'ms', s: string): string => path.join(sat, `eurosat-${v}-${s}.txt`);
  return {
    root,
    natural: { train: path.join(root, 'natural', 'train'), val: path.join(root, 'natural', 'val') },
    satellite: {
      root: sat,
      splits: {
        rgb: { train: sp('rgb', 'train'), val: sp('rgb', 'val'), test: sp('rgb', 'test') },
        ms: { train: sp('ms', 'train'), val: sp('ms', 'val'), test: sp('ms', 'test') },
      },
    },
    manifest,
  };
}

/**
 * Generate the embedded datasets into `dir` (created; must not hold another dataset). Deterministic: the same options
 * give byte-identical PNG/TIFF files and the same JPEGs with the same libjpeg.
 */
export async function generateEmbedded(dir: string, opt: EmbeddedOptions = {}): Promise<EmbeddedManifest> {
  checkKeys('EmbeddedOptions', opt, OPTION_KEYS);
  const r = resolved(opt);
  const t0 = Date.now();
  const S = r.size;
  if ([...SATELLITE_CLASSES].join() !== [...EUROSAT_CLASSES].join()) throw new Error('embedded: satellite classes out of EuroSAT order');
  const total = 10 * r.satellitePerClass + 10 * r.naturalPerClass;
  let done = 0;
  let files = 0;
  const report = (): void => {
    done++;
    if (opt.onProgress && (done % 50 === 0 || done === total)) opt.onProgress({ phase: 'generate embedded', done, total });
  };
  const write = async (file: string, data: Buffer | string): Promise<void> => {
    try {
      await fsp.mkdir(path.dirname(file), { recursive: true });
      await fsp.writeFile(file, data); // (fs.writeFile retries short writes and reports ENOSPC)
    } catch (e) {
      throw new Error(`embedded: cannot write ${file} (${(e as Error).message}); the partial dataset is discarded`);
    }
    files++;
  };
  // satellite: EuroSAT layout, RGB JPEG + 13-band GeoTIFF of the same scene
  const sat = path.join(dir, 'satellite');
  const lists: Record<string, string[]> = {};
  for (const v of ['rgb', 'ms']) for (const s of ['train', 'val', 'test']) lists[`${v}-${s}`] = [];
  for (let c = 0; c < 10; c++) {
    const cls = EUROSAT_CLASSES[c];
    const pending: Promise<void>[] = [];
    for (let i = 1; i <= r.satellitePerClass; i++) {
      const scene = renderSatellite(cls, S, Rng.derive(r.seed, 'embedded-satellite', cls, i));
      const rgbRel = path.join(EUROSAT_DIRS.rgb, cls, `${cls}_${i}.jpg`);
      const msRel = path.join(EUROSAT_DIRS.ms, cls, `${cls}_${i}.tif`);
      const split = satSplit(i, r.satellitePerClass);
      lists[`rgb-${split}`].push(`${rgbRel} ${c}`);
      lists[`ms-${split}`].push(`${msRel} ${c}`);
      // a fixed, plausible georeference per scene (10 m pixels, UTM-like metres, EPSG 32632)
      const origin: [number, number] = [500000 + 1000 * i, 5200000 - 1000 * c];
      pending.push(
        (async () => {
          await write(path.join(sat, rgbRel), await encodeImage(scene.rgb, 'jpeg', 95));
          await write(path.join(sat, msRel), await encodeGeoTiff(scene.ms, { dtype: 'uint16', origin, pixelSize: [10, 10], epsg: 32632 }));
          report();
        })(),
      );
      if (pending.length >= 16) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
  }
  for (const [k, lines] of Object.entries(lists)) await write(path.join(sat, `eurosat-${k}.txt`), lines.join('\n') + '\n');
  // natural: ImageFolder train/val
  const nTrain = Math.round(r.naturalPerClass * 0.8);
  for (const cls of NATURAL_CLASSES) {
    const pending: Promise<void>[] = [];
    for (let i = 1; i <= r.naturalPerClass; i++) {
      const img = renderNatural(cls, S, Rng.derive(r.seed, 'embedded-natural', cls, i));
      const file = path.join(dir, 'natural', i <= nTrain ? 'train' : 'val', cls, `${cls}_${i}.png`);
      pending.push(
        (async () => {
          await write(file, await encodeImage(img, 'png'));
          report();
        })(),
      );
      if (pending.length >= 16) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
  }
  const manifest: EmbeddedManifest = {
    version: EMBEDDED_VERSION,
    ...r,
    satelliteClasses: [...EUROSAT_CLASSES],
    naturalClasses: [...NATURAL_CLASSES],
    files,
    seconds: (Date.now() - t0) / 1000,
  };
  await write(path.join(dir, 'COMPLETE.json'), JSON.stringify(manifest, null, 2));
  return manifest;
}

async function readManifest(dir: string): Promise<EmbeddedManifest | null> {
  try {
    return JSON.parse(await fsp.readFile(path.join(dir, 'COMPLETE.json'), 'utf8')) as EmbeddedManifest;
  } catch {
    return null;
  }
}

function matches(m: EmbeddedManifest | null, r: ReturnType<typeof resolved>): m is EmbeddedManifest {
  return (
    !!m &&
    m.version === EMBEDDED_VERSION &&
    m.seed === r.seed &&
    m.size === r.size &&
    m.satellitePerClass === r.satellitePerClass &&
    m.naturalPerClass === r.naturalPerClass
  );
}

/**
 * The embedded datasets of a configuration, generated on first use and reused afterwards. Concurrent callers are
 * safe: each generates into its own temporary folder and the first rename wins.
 */
export async function ensureEmbedded(opt: EmbeddedOptions = {}): Promise<EmbeddedPaths> {
  checkKeys('EmbeddedOptions', opt, OPTION_KEYS);
  const r = resolved(opt);
  const cache = opt.cacheDir ?? defaultCacheDir();
  const dir = path.join(cache, embeddedName(opt));
  const existing = await readManifest(dir);
  if (!opt.force && matches(existing, r)) return pathsFor(dir, existing);
  ensureDir(cache, 'embedded: cache folder');
  // clean up the temporary (and replaced) folders of interrupted runs of this configuration whose generator is gone (io/atomic.ts)
  for (const e of await fsp.readdir(cache)) {
    const pre = [`${path.basename(dir)}.tmp-`, `${path.basename(dir)}.old-`].find((p) => e.startsWith(p));
    const m = pre ? /^([A-Za-z0-9_-]+)\.(\d+)\.[a-z0-9]+$/.exec(e.slice(pre.length)) : null;
    if (!m) continue;
    const st = await fsp.lstat(path.join(cache, e)).catch(() => null);
    if (st?.isDirectory() && writerGone({ host: m[1], pid: Number(m[2]) }, st.mtimeMs)) {
      await fsp.rm(path.join(cache, e), { recursive: true, force: true });
    }
  }
  const tmp = `${dir}.tmp-${tempOwnerTag()}.${Math.random().toString(36).slice(2)}`;
  try {
    const manifest = await generateEmbedded(tmp, { ...r, onProgress: opt.onProgress });
    // replace an incomplete/outdated folder (or a forced one); keep a complete one another process just renamed in
    const now = await readManifest(dir);
    if (matches(now, r) && !opt.force) {
      await fsp.rm(tmp, { recursive: true, force: true });
      return pathsFor(dir, now);
    }
    const trash = `${dir}.old-${tempOwnerTag()}.${Math.random().toString(36).slice(2)}`;
    await fsp.rename(dir, trash).catch(() => undefined);
    try {
      await fsp.rename(tmp, dir);
    } catch (e) {
      const other = await readManifest(dir);
      if (matches(other, r)) {
        await fsp.rm(tmp, { recursive: true, force: true });
        return pathsFor(dir, other);
      }
      throw new Error(`embedded: cannot move ${tmp} to ${dir}: ${(e as Error).message}`);
    }
    await fsp.rm(trash, { recursive: true, force: true });
    return pathsFor(dir, manifest);
  } catch (e) {
    await fsp.rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** The embedded datasets as kit Datasets (loaded with the same format loaders as real data). */
export interface EmbeddedDatasets {
  paths: EmbeddedPaths;
  natural: { train: Dataset; val: Dataset };
  satellite: {
    rgb: { train: Dataset; val: Dataset; test: Dataset };
    ms: { train: Dataset; val: Dataset; test: Dataset };
  };
}

/** Ensure the cache, then open every split with the ImageFolder / EuroSAT loaders. */
export async function loadEmbedded(opt: EmbeddedOptions = {}): Promise<EmbeddedDatasets> {
  const p = await ensureEmbedded(opt);
  const sat = async (v: 'rgb' | 'ms', s: 'train' | 'val' | 'test'): Promise<Dataset> =>
    eurosat(p.satellite.root, { variant: v, split: p.satellite.splits[v][s], name: `embedded-satellite-${v}-${s}` });
  return {
    paths: p,
    natural: {
      train: await imageFolder(p.natural.train, { name: 'embedded-natural-train', classes: NATURAL_CLASSES }),
      val: await imageFolder(p.natural.val, { name: 'embedded-natural-val', classes: NATURAL_CLASSES }),
    },
    satellite: {
      rgb: { train: await sat('rgb', 'train'), val: await sat('rgb', 'val'), test: await sat('rgb', 'test') },
      ms: { train: await sat('ms', 'train'), val: await sat('ms', 'val'), test: await sat('ms', 'test') },
    },
  };
}
