/**
 * EuroSAT: RGB JPEGs `2750/<Class>/<Class>_<i>.jpg` and 13-band GeoTIFFs
 * `ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<i>.tif` (i = 1..count), 10 classes in the
 * reference order (torchgeo), optional split files: SatMAE's `path label` lines or torchgeo's bare file names.
 */
import * as path from 'path';
import { RecordDataset, SampleInfo } from '../dataset';
import { loadImage } from '../decode';
import { checkLabel, listDir, readListFile, resolveUnder } from './common';
import { checkKeys, fmtValue } from '../../lib/check';

/** The 10 classes, label = index. */
export const EUROSAT_CLASSES = [
  'AnnualCrop',
  'Forest',
  'HerbaceousVegetation',
  'Highway',
  'Industrial',
  'Pasture',
  'PermanentCrop',
  'Residential',
  'River',
  'SeaLake',
] as const;

/** Folder of each variant under the dataset root. */
export const EUROSAT_DIRS = {
  rgb: '2750',
  ms: path.join('ds', 'images', 'remote_sensing', 'otherDatasets', 'sentinel_2', 'tif'),
} as const;
const EXT = { rgb: '.jpg', ms: '.tif' } as const;

export interface EuroSatOptions {
  variant: 'rgb' | 'ms';
  /** A split file; without it every `<Class>_<i>` file of the class folders is used, ordered by class then i. */
  split?: string;
  name?: string;
}

/** Class of a file named `<Class>_<i>.<ext>`, or null. */
export function eurosatClassOf(file: string): string | null {
  const m = /^([A-Za-z]+)_\d+\.[A-Za-z]+$/.exec(path.basename(file));
  return m && (EUROSAT_CLASSES as readonly string[]).includes(m[1]) ? m[1] : null;
}

/** Build a EuroSAT dataset (RGB in [0, 1]; MS raw 13-band values, band count checked). */
export async function eurosat(root: string, opt: EuroSatOptions): Promise<RecordDataset<SampleInfo>> {
  checkKeys('EuroSatOptions', opt ?? {}, ['variant', 'split', 'name']);
  const variant = opt.variant;
  if (variant !== 'rgb' && variant !== 'ms') throw new Error(`eurosat: variant must be 'rgb' or 'ms', got ${fmtValue(variant)}`);
  const base = path.join(root, EUROSAT_DIRS[variant]);
  const classes = EUROSAT_CLASSES as readonly string[];
  const records: SampleInfo[] = [];
  if (opt.split) {
    const entries = await readListFile(opt.split);
    for (const e of entries) {
      const where = `${opt.split}: line ${e.line}`;
      let file: string;
      let cls: string | null;
      if (!e.path.includes('/') && !e.path.includes('\\')) {
        // torchgeo style: a bare file name, class from its prefix, extension of this variant
        cls = eurosatClassOf(e.path);
        if (!cls) throw new Error(`${where}: cannot tell the class of '${e.path}'; valid classes: ${classes.join(', ')}`);
        file = path.join(base, cls, e.path.replace(/\.[A-Za-z]+$/, EXT[variant]));
      } else {
        file = resolveUnder(root, e.path);
        cls = eurosatClassOf(file);
        const folder = path.basename(path.dirname(file));
        if (!cls && classes.includes(folder)) cls = folder;
      }
      let label = e.label;
      if (label === undefined) {
        if (!cls) throw new Error(`${where}: no label and no class in the path '${e.path}'`);
        label = classes.indexOf(cls);
      }
      checkLabel(label, classes.length, where);
      if (cls && classes.indexOf(cls) !== label) {
        throw new Error(`${where}: label ${label} (${classes[label]}) disagrees with the class '${cls}' in the path '${e.path}'`);
      }
      records.push({ path: file, label });
    }
  } else {
    const { dirs } = await listDir(base, `EuroSAT ${variant} folder`);
    for (const d of dirs) {
      if (!classes.includes(d)) throw new Error(`${path.join(base, d)}: unknown EuroSAT class '${d}'; valid: ${classes.join(', ')}`);
    }
    for (let label = 0; label < classes.length; label++) {
      const cls = classes[label];
      if (!dirs.includes(cls)) throw new Error(`missing class folder: ${path.join(base, cls)}`);
      const { files } = await listDir(path.join(base, cls), 'class folder');
      const items = files
        .map((f) => ({ f, m: new RegExp(`^${cls}_(\\d+)\\${EXT[variant]}$`).exec(f) }))
        .filter((x) => x.m)
        .map((x) => ({ f: x.f, i: parseInt(x.m![1], 10) }))
        .sort((a, b) => a.i - b.i);
      if (items.length === 0) throw new Error(`${path.join(base, cls)}: no ${cls}_<i>${EXT[variant]} files`);
      for (const it of items) records.push({ path: path.join(base, cls, it.f), label });
    }
  }
  const bands = variant === 'ms' ? 13 : 3;
  return new RecordDataset(
    opt.name ?? `eurosat-${variant}${opt.split ? `:${path.basename(opt.split)}` : ''}`,
    records,
    async (r) => ({ image: await loadImage(r.path!, { bands }), label: r.label, path: r.path }),
    classes,
    opt.split ?? base,
  );
}
