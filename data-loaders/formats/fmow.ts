/**
 * fMoW-RGB as used by SatMAE/ExPLoRA: CSVs with a header row, column 0 = integer class id (index in the 62-class
 * alphabetical list), column 1 = image path, column 2 = timestamp; the raw per-image JSON metadata of the fMoW
 * release; and fMoW-temporal triplets (anchor + two other images of the same location, timestamps parsed by
 * character positions as SatMAE does).
 *
 * Never use the fMoW-baseline 63-entry order (`false_detection` first): labels here index `FMOW_CLASSES`. When an
 * image path contains a category folder, it must agree with the label (this catches CSVs written in the other order).
 */
import * as path from 'path';
import { Rng } from '../../lib/rng';
import { writeFileAtomic } from '../../lib/io/atomic';
import { RecordDataset, Sample, SampleInfo, SampleTransform } from '../dataset';
import { loadImage, readFileChecked } from '../decode';
import { Img } from '../image';
import { readCsv, strCell } from '../csv';
import { FMOW_RGB_STATS, NormStats, crop, normalize, resizeShorter } from '../transforms';
import { checkLabel, resolveUnder } from './common';

/** The 62 fMoW categories in alphabetical order (label = index), as SatMAE/ExPLoRA. */
export const FMOW_CLASSES = [
  'airport', 'airport_hangar', 'airport_terminal', 'amusement_park', 'aquaculture', 'archaeological_site', 'barn',
  'border_checkpoint', 'burial_site', 'car_dealership', 'construction_site', 'crop_field', 'dam', 'debris_or_rubble',
  'educational_institution', 'electric_substation', 'factory_or_powerplant', 'fire_station', 'flooded_road',
  'fountain', 'gas_station', 'golf_course', 'ground_transportation_station', 'helipad', 'hospital',
  'impoverished_settlement', 'interchange', 'lake_or_pond', 'lighthouse', 'military_facility',
  'multi-unit_residential', 'nuclear_powerplant', 'office_building', 'oil_or_gas_facility', 'park',
  'parking_lot_or_garage', 'place_of_worship', 'police_station', 'port', 'prison', 'race_track', 'railway_bridge',
  'recreational_facility', 'road_bridge', 'runway', 'shipyard', 'shopping_mall', 'single-unit_residential',
  'smokestack', 'solar_farm', 'space_facility', 'stadium', 'storage_tank', 'surface_mine', 'swimming_pool',
  'toll_booth', 'tower', 'tunnel_opening', 'waste_disposal', 'water_treatment_facility', 'wind_farm', 'zoo',
] as const;

/** SatMAE's temporal year offset (`min_year`). */
export const FMOW_MIN_YEAR = 2002;

/** Timestamp fields parsed the reference way: year = chars[0:4], month = chars[5:7], hour = chars[11:13]. */
export function parseFmowTimestamp(ts: string, where = 'timestamp'): { year: number; month: number; hour: number } {
  const part = (a: number, b: number, name: string): number => {
    const s = ts.slice(a, b);
    if (!/^\d+$/.test(s)) throw new Error(`${where}: cannot read the ${name} at characters ${a}–${b} of '${ts}'`);
    return parseInt(s, 10);
  };
  const t = { year: part(0, 4, 'year'), month: part(5, 7, 'month'), hour: part(11, 13, 'hour') };
  // characters in the right places but not a date (e.g. day-first '2015-31-12', or a 12-hour clock gone wrong)
  if (t.month < 1 || t.month > 12) throw new Error(`${where}: month ${t.month} (characters 5–7 of '${ts}') is not in 1–12; expected 'YYYY-MM-DDTHH:MM:SS…'`);
  if (t.hour > 23) throw new Error(`${where}: hour ${t.hour} (characters 11–13 of '${ts}') is not in 0–23; expected 'YYYY-MM-DDTHH:MM:SS…'`);
  return t;
}

/** The temporal model's per-image code [year − 2002, month − 1, hour]. */
export function fmowTemporalCode(ts: string, where?: string): [number, number, number] {
  const t = parseFmowTimestamp(ts, where);
  return [t.year - FMOW_MIN_YEAR, t.month - 1, t.hour];
}

/** One row of an fMoW CSV. */
export interface FmowRecord extends SampleInfo {
  path: string;
  label: number;
  timestamp?: string;
  /** Row line in the CSV (for messages). */
  line: number;
}

/** Category folder of an fMoW image path (`…/<category>/<category>_<loc>/<file>`), if recognisable. */
export function fmowCategoryOf(p: string): string | null {
  const parts = p.split(/[\\/]/);
  for (let k = parts.length - 2; k >= 1; k--) {
    const cat = parts[k - 1];
    if ((FMOW_CLASSES as readonly string[]).includes(cat) && parts[k].startsWith(`${cat}_`)) return cat;
  }
  return null;
}

/** Read an SatMAE/ExPLoRA fMoW CSV (positional columns; `root` resolves relative paths, default the CSV folder). */
export async function readFmowCsv(csvPath: string, root = path.dirname(csvPath)): Promise<FmowRecord[]> {
  const t = await readCsv(csvPath);
  if (t.header.length < 2) {
    throw new Error(`${csvPath}: missing column: needs column 0 = class id and column 1 = image path (header: ${t.header.join(',')})`);
  }
  if (t.rows.length === 0) throw new Error(`${csvPath}: empty split (header only)`);
  return t.rows.map((_, r) => {
    const where = `${csvPath}: line ${t.lines[r]}`;
    const labelStr = strCell(t, r, 0);
    if (!/^\d+$/.test(labelStr)) throw new Error(`${where}, column 0 ('${t.header[0]}'): class id '${labelStr}' is not an integer`);
    const label = parseInt(labelStr, 10);
    checkLabel(label, FMOW_CLASSES.length, `${where}, column 0`);
    const p = strCell(t, r, 1);
    if (!p) throw new Error(`${where}, column 1 ('${t.header[1]}'): empty image path`);
    const cat = fmowCategoryOf(p);
    if (cat && cat !== FMOW_CLASSES[label]) {
      throw new Error(
        `${where}: class id ${label} is '${FMOW_CLASSES[label]}' but the path is in '${cat}' (labels must index the 62-class alphabetical list)`,
      );
    }
    const rec: FmowRecord = { path: resolveUnder(root, p), label, line: t.lines[r] };
    if (t.header.length >= 3) rec.timestamp = strCell(t, r, 2);
    return rec;
  });
}

/** One bounding box of the raw fMoW metadata: [x, y, w, h] with top-left origin, in image pixels. */
export interface FmowBox {
  id: number;
  box: [number, number, number, number];
  category: string;
}

/** The raw per-image JSON metadata fields the kit uses (others kept in `raw`). */
export interface FmowImageMeta {
  gsd: number;
  timestamp: string;
  imgWidth: number;
  imgHeight: number;
  cloudCover?: number;
  utm?: string;
  boxes: FmowBox[];
  raw: Record<string, unknown>;
}

/** Parse one fMoW JSON metadata file (missing/ill-typed fields → errors naming the file and field). */
export async function readFmowMetadata(jsonPath: string): Promise<FmowImageMeta> {
  const buf = await readFileChecked(jsonPath, 'fMoW metadata');
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    throw new Error(`${jsonPath}: invalid JSON (${(e as Error).message})`);
  }
  const num = (k: string): number => {
    const v = j[k];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${jsonPath}: field '${k}' must be a number, got ${JSON.stringify(v)}`);
    return v;
  };
  const ts = j.timestamp;
  if (typeof ts !== 'string') throw new Error(`${jsonPath}: field 'timestamp' must be a string, got ${JSON.stringify(ts)}`);
  const bbs = j.bounding_boxes;
  if (!Array.isArray(bbs)) throw new Error(`${jsonPath}: field 'bounding_boxes' must be a list`);
  const boxes = bbs.map((b: Record<string, unknown>, k: number) => {
    const box = b?.box;
    if (!Array.isArray(box) || box.length !== 4 || !box.every((v) => typeof v === 'number')) {
      throw new Error(`${jsonPath}: bounding_boxes[${k}].box must be [x, y, w, h] numbers, got ${JSON.stringify(box)}`);
    }
    const category = b.category;
    if (typeof category !== 'string') throw new Error(`${jsonPath}: bounding_boxes[${k}].category must be a string`);
    return { id: typeof b.ID === 'number' ? b.ID : k, box: box as [number, number, number, number], category };
  });
  const positive = (k: string, integer: boolean): number => {
    const v = num(k);
    if (!(v > 0) || (integer && !Number.isInteger(v))) throw new Error(`${jsonPath}: field '${k}' must be a positive ${integer ? 'integer' : 'number'}, got ${v}`);
    return v;
  };
  return {
    gsd: positive('gsd', false),
    timestamp: ts,
    imgWidth: positive('img_width', true),
    imgHeight: positive('img_height', true),
    cloudCover: typeof j.cloud_cover === 'number' ? j.cloud_cover : undefined,
    utm: typeof j.utm === 'string' ? j.utm : undefined,
    boxes,
    raw: j,
  };
}

export interface FmowRgbOptions {
  /** Folder relative image paths are resolved against (default: the CSV's folder). */
  root?: string;
  /** Also read `<image>.json` (same name, .json) into `meta.fmow` (default false). */
  withMetadata?: boolean;
  name?: string;
}

/** fMoW-RGB classification dataset from a SatMAE/ExPLoRA CSV. `meta.timestamp` holds the CSV timestamp. */
export async function fmowRgb(csvPath: string, opt: FmowRgbOptions = {}): Promise<RecordDataset<FmowRecord>> {
  const recs = await readFmowCsv(csvPath, opt.root);
  return new RecordDataset(
    opt.name ?? `fmow-rgb:${path.basename(csvPath)}`,
    recs.map((r): FmowRecord => ({ ...r, meta: r.timestamp !== undefined ? { timestamp: r.timestamp } : {} })),
    async (r) => {
      const image = await loadImage(r.path, { bands: 3 });
      const meta: Record<string, unknown> = { ...(r.meta ?? {}) };
      if (opt.withMetadata) meta.fmow = await readFmowMetadata(r.path.replace(/\.[A-Za-z]+$/, '.json'));
      return { image, label: r.label, meta, path: r.path };
    },
    FMOW_CLASSES,
    csvPath,
  );
}

/**
 * Location key of an fMoW image name `<category>_<location>_<image>_<type>.<ext>`: the directory plus the name with
 * the image-id token removed. Images with the same key are the temporal siblings. (SatMAE globs the file system with
 * a fixed 15-character suffix; siblings must be CSV rows anyway because their timestamps come from the CSV.)
 */
export function fmowLocationKey(p: string): string {
  const dir = path.dirname(p);
  const base = path.basename(p);
  const m = /^(.*)_([^_]+)_([^_]+)$/.exec(base);
  if (!m) throw new Error(`${p}: not an fMoW image name <category>_<location>_<image>_<type>.<ext>`);
  return path.join(dir, `${m[1]}_*_${m[3]}`);
}

export interface FmowTemporalOptions {
  root?: string;
  name?: string;
}

/**
 * fMoW-temporal: sample i is the anchor row i plus two other rows of the same location, chosen with the loader's
 * per-sample rng exactly as SatMAE chooses them (none → anchor ×3; one → it twice; more → two distinct at random).
 * `frames` = [anchor, second, third]; `meta.timestamps` = their [year − 2002, month − 1, hour] codes. Frames keep
 * their decoded sizes: use `fmowTemporalJointCrop` to bring them to one size.
 */
export async function fmowTemporal(csvPath: string, opt: FmowTemporalOptions = {}): Promise<RecordDataset<FmowRecord>> {
  const recs = await readFmowCsv(csvPath, opt.root);
  recs.forEach((r) => {
    if (r.timestamp === undefined) throw new Error(`${csvPath}: missing column 2 (timestamp) needed for fMoW-temporal`);
    fmowTemporalCode(r.timestamp, `${csvPath}: line ${r.line}, column 2`);
  });
  const groups = new Map<string, number[]>();
  recs.forEach((r, i) => {
    const k = fmowLocationKey(r.path);
    const g = groups.get(k);
    if (g) g.push(i);
    else groups.set(k, [i]);
  });
  return new RecordDataset(
    opt.name ?? `fmow-temporal:${path.basename(csvPath)}`,
    recs,
    async (r, i, rng) => {
      const others = (groups.get(fmowLocationKey(r.path)) ?? []).filter((j) => j !== i);
      const [j2, j3] = pickTwo(others, i, rng ?? Rng.derive(0, 'fmow-temporal', i));
      const idx = [i, j2, j3];
      const frames = await Promise.all(idx.map((j) => loadImage(recs[j].path, { bands: 3 })));
      return {
        image: frames[0],
        frames,
        label: r.label,
        path: r.path,
        meta: {
          timestamps: idx.map((j) => fmowTemporalCode(recs[j].timestamp!)),
          rows: idx,
        },
      };
    },
    FMOW_CLASSES,
    csvPath,
  );
}

function pickTwo(others: number[], self: number, rng: Rng): [number, number] {
  if (others.length === 0) return [self, self];
  if (others.length === 1) return [others[0], others[0]];
  const a = others[rng.int(others.length)];
  let b = others[rng.int(others.length)];
  while (b === a) b = others[rng.int(others.length)];
  return [a, b];
}

/**
 * SatMAE's temporal preprocessing: each frame resized (shorter side → `size`), frames cut to a common width (or
 * height) keeping the left/top part — or the anchor used three times when neither fits — then one joint random
 * `size`×`size` crop and per-frame normalisation (fMoW statistics).
 */
export function fmowTemporalJointCrop(size: number, stats: NormStats = FMOW_RGB_STATS): SampleTransform {
  return (s: Sample, rng: Rng): Sample => {
    if (!s.frames || s.frames.length === 0) throw new Error('fmowTemporalJointCrop: sample has no frames');
    let fr = s.frames.map((f) => resizeShorter(f, size));
    if (fr.every((f) => f.width > size)) {
      const w = Math.min(...fr.map((f) => f.width));
      fr = fr.map((f) => crop(f, { top: 0, left: 0, height: f.height, width: w }));
    } else if (fr.every((f) => f.height > size)) {
      const h = Math.min(...fr.map((f) => f.height));
      fr = fr.map((f) => crop(f, { top: 0, left: 0, height: h, width: f.width }));
    } else fr = [fr[0], fr[0], fr[0]];
    const H = fr[0].height;
    const W = fr[0].width;
    if (!fr.every((f) => f.height === H && f.width === W)) {
      // unequal after the SatMAE rule (e.g. both sides equal `size` but the frames differ): crop to the common part
      const h = Math.min(...fr.map((f) => f.height));
      const w = Math.min(...fr.map((f) => f.width));
      fr = fr.map((f) => crop(f, { top: 0, left: 0, height: h, width: w }));
    }
    const top = rng.int(fr[0].height - size + 1);
    const left = rng.int(fr[0].width - size + 1);
    const out: Img[] = fr.map((f) => normalize(crop(f, { top, left, height: size, width: size }), stats));
    return { ...s, image: out[0], frames: out };
  };
}

/** Write a minimal fMoW JSON metadata file (tests and the embedded generator). */
export async function writeFmowMetadata(
  jsonPath: string,
  m: { gsd: number; timestamp: string; imgWidth: number; imgHeight: number; boxes: FmowBox[]; extra?: Record<string, unknown> },
): Promise<void> {
  const j = {
    gsd: m.gsd,
    timestamp: m.timestamp,
    img_width: m.imgWidth,
    img_height: m.imgHeight,
    bounding_boxes: m.boxes.map((b) => ({ ID: b.id, box: b.box, category: b.category })),
    ...(m.extra ?? {}),
  };
  writeFileAtomic(jsonPath, JSON.stringify(j));
}
