/**
 * fMoW-Sentinel (SatMAE): CSVs `train.csv` / `val.csv` / `test_gt.csv` with columns `category`, `location_id`,
 * `image_id`, `timestamp` (first column an unnamed index; `image_path` when present), 13-band Sentinel-2 GeoTIFFs.
 * Rows are sorted by (category, location_id, timestamp) and filtered to years 2000–2020 as SatMAE does; label = index
 * of the category in the 62-class alphabetical list. Per-band statistics: `SENTINEL2_STATS` (SatMAE's), or compute
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

export interface FmowSentinelRecord extends SampleInfo {
  path: string;
  label: number;
  meta: { category: string; locationId: number; imageId: number; timestamp: string; year: number };
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
  const t = await readCsv(csvPath);
  const col = columns(t, ['category', 'location_id', 'image_id', 'timestamp']);
  const hasPath = t.header.includes('image_path');
  const split = opt.split ?? path.basename(csvPath, '.csv').replace(/_gt$/, '');
  const imageRoot = opt.imageRoot ?? path.join(path.dirname(csvPath), 'fmow-sentinel');
  const years = opt.years === undefined ? Array.from({ length: 21 }, (_, k) => 2000 + k) : opt.years;
  const classes = FMOW_CLASSES as readonly string[];
  const recs: FmowSentinelRecord[] = [];
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
    const year = parseInt(timestamp.split('-')[0], 10);
    if (!Number.isFinite(year)) throw new Error(`${where}, column 'timestamp': cannot read a year from '${timestamp}'`);
    const stem = `${category}_${locationId}`;
    const p = hasPath
      ? resolveUnder(path.dirname(csvPath), strCell(t, r, t.header.indexOf('image_path')))
      : path.join(imageRoot, split, category, stem, `${stem}_${imageId}.tif`);
    recs.push({ path: p, label, meta: { category, locationId, imageId, timestamp, year } });
  });
  const kept = years ? recs.filter((r) => years.includes(r.meta.year)) : recs;
  const cmp = (a: FmowSentinelRecord, b: FmowSentinelRecord): number =>
    a.meta.category < b.meta.category ? -1 : a.meta.category > b.meta.category ? 1
      : a.meta.locationId - b.meta.locationId || (a.meta.timestamp < b.meta.timestamp ? -1 : a.meta.timestamp > b.meta.timestamp ? 1 : 0);
  return kept.map((r, k) => ({ r, k })).sort((x, y) => cmp(x.r, y.r) || x.k - y.k).map((x) => x.r);
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
