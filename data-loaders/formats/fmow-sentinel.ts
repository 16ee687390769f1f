/**
 * fMoW-Sentinel (SatMAE): CSVs `train.csv` / `val.csv` / `test_gt.csv` with columns `category`, `location_id`,
 * `image_id`, `timestamp` (first column an unnamed index; `image_path` when present), 13-band Sentinel-2 GeoTIFFs.
 * Rows are sorted by (category, location_id, timestamp) and filtered to years 2000–2020 as SatMAE does (pandas
 * `to_datetime`, `sort_values`); label = index of the category in the 62-class alphabetical list. Timestamps are parsed
 * strictly (ISO 8601 date, optional time, fraction and zone, as `pd.to_datetime` reads them): a malformed one is an
 * error naming file, line and value, never a silently dropped row; so is a column mixing zoned and naive times (pandas
 * refuses to sort it), and a year filter that keeps no row names the years the file has. Per-band statistics: `SENTINEL2_STATS` (SatMAE's), or compute
 * them with `channelStats`. Normalise with `sentinelNormalizeWith`; drop bands (default 0, 9, 10) with
 * `dropBandsWith` — after the transform as SatMAE, or before it as ExPLoRA's linear probe.
 */
import * as path from 'path';
import { RecordDataset, SampleInfo } from '../dataset';
import { loadImage } from '../decode';
import { columns, readCsv, strCell } from '../csv';
import { SENTINEL2_STATS, maskBands } from '../transforms';
import { FMOW_CLASSES } from './fmow';
import { resolveUnder } from './common';
import { checkKeys, checkNumber, fmtValue } from '../../lib/check';

export interface FmowSentinelRecord extends SampleInfo {
  path: string;
  label: number;
  meta: { category: string; locationId: number; imageId: number; timestamp: string; year: number };
}

/** A parsed timestamp: the calendar year as written, and the instant (UTC; naive times read as UTC) for sorting. */
export interface ParsedTimestamp {
  year: number;
  /** Milliseconds since the epoch and the nanoseconds below them (pandas keeps nanoseconds). */
  ms: number;
  ns: number;
  /** Whether the string carries a zone (Z or ±hh:mm). */
  zoned: boolean;
}

const TS = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/;

/**
 * Parse an fMoW-Sentinel timestamp (`2016-04-03T09:14:52Z`, `2016-04-03 09:14:52.5+01:00`, `2016-04-03`...) strictly;
 * throws naming `where`, the value and what is wrong.
 */
export function parseSentinelTimestamp(ts: string, where: string): ParsedTimestamp {
  const bad = (why: string): Error =>
    new Error(`${where}: malformed timestamp '${ts}' (${why}); expected ISO 8601 such as 2016-04-03T09:14:52Z`);
  const m = TS.exec(ts.trim());
  if (!m) throw bad('not an ISO 8601 date-time');
  const [year, month, day] = [m[1], m[2], m[3]].map(Number);
  const [hour, minute, second] = [m[4], m[5], m[6]].map((x) => (x === undefined ? 0 : Number(x)));
  if (m[4] !== undefined && m[6] === undefined && m[7] !== undefined) throw bad('fraction without seconds');
  if (month < 1 || month > 12) throw bad(`month ${month}`);
  const days = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day < 1 || day > days) throw bad(`day ${day} of a ${days}-day month`);
  if (hour > 23) throw bad(`hour ${hour}`);
  if (minute > 59) throw bad(`minute ${minute}`);
  if (second > 59) throw bad(`second ${second}`);
  let offsetMin = 0;
  const zone = m[8];
  if (zone && zone !== 'Z') {
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = digits.length > 2 ? Number(digits.slice(2)) : 0;
    if (oh > 23 || om > 59) throw bad(`zone offset ${zone}`);
    offsetMin = (zone[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const frac = (m[7] ?? '').padEnd(9, '0');
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day); // years < 100 are not mapped to 19xx this way
  d.setUTCHours(hour, minute, second, Number(frac.slice(0, 3)));
  return { year, ms: d.getTime() - offsetMin * 60_000, ns: Number(frac.slice(3)), zoned: zone !== undefined };
}

export interface FmowSentinelOptions {
  /**
   * Where images live when the CSV has no `image_path` column: `<imageRoot>/<split>/<category>/<category>_<loc>/
   * <category>_<loc>_<image>.tif`. Default `<csv folder>/fmow-sentinel`.
   */
  imageRoot?: string;
  /** Split folder name (default from the CSV name: train.csv → train, test_gt.csv → test). */
  split?: string;
  /** Years kept (default 2000–2020); null keeps all. */
  years?: readonly number[] | null;
  /** SatMAE `masked_bands`: replaced by their mean (SENTINEL2_STATS) at load. */
  maskedBands?: readonly number[];
  name?: string;
}

/** Read and sort the rows of an fMoW-Sentinel CSV (errors name file, line and column). */
export async function readFmowSentinelCsv(csvPath: string, opt: FmowSentinelOptions = {}): Promise<FmowSentinelRecord[]> {
  checkFmowSentinelOptions(opt);
  const t = await readCsv(csvPath);
  const col = columns(t, ['category', 'location_id', 'image_id', 'timestamp']);
  const hasPath = t.header.includes('image_path');
  const split = opt.split ?? path.basename(csvPath, '.csv').replace(/_gt$/, '');
  const imageRoot = opt.imageRoot ?? path.join(path.dirname(csvPath), 'fmow-sentinel');
  const years = opt.years === undefined ? Array.from({ length: 21 }, (_, k) => 2000 + k) : opt.years;
  const classes = FMOW_CLASSES as readonly string[];
  const parsed: Array<{ rec: FmowSentinelRecord; when: ParsedTimestamp; line: number }> = [];
  t.rows.forEach((_, r) => {
    const where = `${csvPath}: line ${t.lines[r]}`;
    const category = strCell(t, r, col.category);
    const label = classes.indexOf(category);
    if (label < 0) throw new Error(`${where}, column 'category': unknown class '${category}' (not one of the 62 fMoW categories)`);
    const int = (k: 'location_id' | 'image_id'): number => {
      const s = strCell(t, r, col[k]);
      if (!/^\d+$/.test(s)) throw new Error(`${where}, column '${k}': expected an integer, got '${s}'`);
      return parseInt(s, 10);
    };
    const locationId = int('location_id');
    const imageId = int('image_id');
    const timestamp = strCell(t, r, col.timestamp);
    const when = parseSentinelTimestamp(timestamp, `${where}, column 'timestamp'`);
    const first = parsed[0];
    if (first && first.when.zoned !== when.zoned) {
      throw new Error(
        `${where}, column 'timestamp': '${timestamp}' ${when.zoned ? 'has' : 'has no'} time zone but '${first.rec.meta.timestamp}' (line ${first.line}) ${first.when.zoned ? 'has' : 'has no'}; pandas cannot sort such a column`,
      );
    }
    const year = when.year;
    const stem = `${category}_${locationId}`;
    const p = hasPath
      ? resolveUnder(path.dirname(csvPath), strCell(t, r, t.header.indexOf('image_path')))
      : path.join(imageRoot, split, category, stem, `${stem}_${imageId}.tif`);
    parsed.push({ rec: { path: p, label, meta: { category, locationId, imageId, timestamp, year } }, when, line: t.lines[r] });
  });
  const kept = years ? parsed.filter((x) => years.includes(x.rec.meta.year)) : parsed;
  if (parsed.length > 0 && kept.length === 0) {
    const found = [...new Set(parsed.map((x) => x.rec.meta.year))].sort((a, b) => a - b);
    const ys = [...years!].sort((a, b) => a - b);
    const range = ys.every((y, i) => i === 0 || y === ys[i - 1] + 1) && ys.length > 2 ? `${ys[0]}–${ys[ys.length - 1]}` : ys.join(', ');
    throw new Error(`${csvPath}: none of the ${parsed.length} rows falls in the years kept (${range}); the file has ${found.join(', ')} (pass years: null to keep all)`);
  }
  type Row = (typeof parsed)[number];
  const cmp = (a: Row, b: Row): number =>
    a.rec.meta.category < b.rec.meta.category ? -1 : a.rec.meta.category > b.rec.meta.category ? 1
      : a.rec.meta.locationId - b.rec.meta.locationId || a.when.ms - b.when.ms || a.when.ns - b.when.ns;
  return kept.map((r, k) => ({ r, k })).sort((x, y) => cmp(x.r, y.r) || x.k - y.k).map((x) => x.r.rec);
}

function checkFmowSentinelOptions(opt: FmowSentinelOptions): void {
  checkKeys('FmowSentinelOptions', opt, ['imageRoot', 'split', 'years', 'maskedBands', 'name']);
  if (opt.years !== undefined && opt.years !== null) {
    if (!Array.isArray(opt.years) || opt.years.length === 0) throw new Error(`FmowSentinelOptions.years: expected a non-empty list of years or null, got ${fmtValue(opt.years)}`);
    opt.years.forEach((y, i) => checkNumber(`FmowSentinelOptions.years[${i}]`, y, { integer: true }));
  }
  (opt.maskedBands ?? []).forEach((b, i) => checkNumber(`FmowSentinelOptions.maskedBands[${i}]`, b, { integer: true, min: 0, max: 12 }));
}

/** fMoW-Sentinel dataset: raw 13-band images (band count checked), label, metadata. */
export async function fmowSentinel(csvPath: string, opt: FmowSentinelOptions = {}): Promise<RecordDataset<FmowSentinelRecord>> {
  const recs = await readFmowSentinelCsv(csvPath, opt);
  return new RecordDataset(
    opt.name ?? `fmow-sentinel:${path.basename(csvPath)}`,
    recs,
    async (r) => {
      let image = await loadImage(r.path, { bands: 13 });
      if (opt.maskedBands?.length) image = maskBands(image, opt.maskedBands, SENTINEL2_STATS.mean);
      return { image, label: r.label, meta: r.meta, path: r.path };
    },
    FMOW_CLASSES,
    `${csvPath} (after the year filter)`,
  );
}
