/**
 * WILDS datasets used by ExPLoRA: Camelyon17-WILDS (labelled and unlabelled) and iWildCam-WILDS, with the split ids
 * the WILDS code assigns.
 *
 * Camelyon17: `metadata.csv` (first column = index), columns patient (kept as the zero-padded string), node, x_coord,
 * y_coord, tumor, slide, center, split. Image `patches/patient_<p>_node_<n>/patch_patient_<p>_node_<n>_x_<x>_y_<y>.png`.
 * Split ids: train 0, id_val 1, test 2, val 3; rows of center 1 become val (3) and of center 2 test (2), the CSV's
 * own split column stands for the others. Unlabelled: train_unlabeled 10 (centers 0, 3, 4), val_unlabeled 11
 * (center 1), test_unlabeled 12 (center 2).
 *
 * iWildCam v2.0: five CSVs concatenated in WILDS' order train, val_trans, test_trans, test_cis, val_cis; split ids
 * train 0, val 1, test 2, id_val 3, id_test 4; `category_id` remapped to 0..n−1 by sorted unique value; location and
 * sequence remapped the same way; datetime `%Y-%m-%d %H:%M:%S.%f`. Images at `<root>/train/<filename>`.
 */
import * as path from 'path';
import { Dataset, RecordDataset, SampleInfo, filterDataset } from '../dataset';
import { loadImage } from '../decode';
import { CsvTable, columns, intCell, readCsv, strCell } from '../csv';
import { fmtValue } from '../../lib/check';

export const CAMELYON17_SPLITS = { train: 0, id_val: 1, test: 2, val: 3 } as const;
export const CAMELYON17_UNLABELED_SPLITS = { train_unlabeled: 10, val_unlabeled: 11, test_unlabeled: 12 } as const;
export const CAMELYON17_VAL_CENTER = 1;
export const CAMELYON17_TEST_CENTER = 2;
export const IWILDCAM_SPLITS = { train: 0, val: 1, test: 2, id_val: 3, id_test: 4 } as const;
/** iWildCam CSVs in the order WILDS concatenates them, with their split names. */
export const IWILDCAM_CSVS = [
  ['train.csv', 'train'],
  ['val_trans.csv', 'val'],
  ['test_trans.csv', 'test'],
  ['test_cis.csv', 'id_test'],
  ['val_cis.csv', 'id_val'],
] as const;

export interface WildsRecord extends SampleInfo {
  path: string;
  meta: Record<string, number | string> & { split: number };
}

function camelyonRecords(t: CsvTable, root: string, labelled: boolean): WildsRecord[] {
  const need = ['patient', 'node', 'x_coord', 'y_coord', 'slide', 'center', ...(labelled ? ['tumor', 'split'] : [])];
  const col = columns(t, need);
  return t.rows.map((_, r) => {
    const patient = strCell(t, r, col.patient);
    if (!/^\d+$/.test(patient)) throw new Error(`${t.source}: line ${t.lines[r]}, column 'patient': expected digits, got '${patient}'`);
    const node = intCell(t, r, col.node);
    const x = intCell(t, r, col.x_coord);
    const y = intCell(t, r, col.y_coord);
    const center = intCell(t, r, col.center);
    if (center < 0 || center > 4) throw new Error(`${t.source}: line ${t.lines[r]}, column 'center': expected a hospital 0–4 (Camelyon17 has 5), got ${center}`);
    const slide = intCell(t, r, col.slide);
    let split: number;
    if (labelled) {
      split = intCell(t, r, col.split);
      if (center === CAMELYON17_VAL_CENTER) split = CAMELYON17_SPLITS.val;
      else if (center === CAMELYON17_TEST_CENTER) split = CAMELYON17_SPLITS.test;
    } else {
      split = center === CAMELYON17_VAL_CENTER ? 11 : center === CAMELYON17_TEST_CENTER ? 12 : 10;
    }
    const rel = `patches/patient_${patient}_node_${node}/patch_patient_${patient}_node_${node}_x_${x}_y_${y}.png`;
    const rec: WildsRecord = { path: path.join(root, rel), meta: { hospital: center, slide, split, patient } };
    if (labelled) {
      const tumor = intCell(t, r, col.tumor);
      if (tumor !== 0 && tumor !== 1) throw new Error(`${t.source}: line ${t.lines[r]}, column 'tumor': expected 0 or 1, got ${fmtValue(tumor)}`);
      rec.label = tumor;
      rec.meta.y = tumor;
    }
    return rec;
  });
}

function splitSubset(ds: RecordDataset<WildsRecord>, splits: Record<string, number>, split: string | undefined): Dataset {
  if (split === undefined || split === 'all') return ds;
  if (!(split in splits)) throw new Error(`${ds.name}: unknown split '${split}'; valid: ${Object.keys(splits).join(', ')}, all`);
  const id = splits[split];
  return filterDataset(ds, (inf) => (inf.meta as { split: number }).split === id, `${ds.name}:${split}`);
}

/** Camelyon17-WILDS (labels = tumor). `split`: train | id_val | test | val | all (default all). */
export async function camelyon17(root: string, opt: { split?: string } = {}): Promise<Dataset> {
  const csv = path.join(root, 'metadata.csv');
  const t = await readCsv(csv);
  const ds = new RecordDataset(
    'camelyon17',
    camelyonRecords(t, root, true),
    async (r) => ({ image: await loadImage(r.path, { bands: 3 }), label: r.label, meta: r.meta, path: r.path }),
    ['normal', 'tumor'],
    csv,
  );
  return splitSubset(ds, CAMELYON17_SPLITS, opt.split);
}

/** Camelyon17-WILDS unlabelled patches. `split`: train_unlabeled | val_unlabeled | test_unlabeled | all. */
export async function camelyon17Unlabeled(root: string, opt: { split?: string } = {}): Promise<Dataset> {
  const csv = path.join(root, 'metadata.csv');
  const t = await readCsv(csv);
  const ds = new RecordDataset(
    'camelyon17_unlabeled',
    camelyonRecords(t, root, false),
    async (r) => ({ image: await loadImage(r.path, { bands: 3 }), meta: r.meta, path: r.path }),
    undefined,
    csv,
  );
  return splitSubset(ds, CAMELYON17_UNLABELED_SPLITS, opt.split);
}

/** Parse `%Y-%m-%d %H:%M:%S.%f` strictly. */
export function parseWildsDatetime(s: string, where: string): number[] {
  const m = /^(\d{4})-(\d{1,2})-(\d{1,2}) (\d{1,2}):(\d{1,2}):(\d{1,2})\.(\d{1,6})$/.exec(s);
  if (!m) throw new Error(`${where}: datetime '${s}' does not match %Y-%m-%d %H:%M:%S.%f`);
  return m.slice(1, 7).map((v) => parseInt(v, 10));
}

/** iWildCam-WILDS v2.0. `split`: train | val | test | id_val | id_test | all. `classes` are the original category ids. */
export async function iwildcam(root: string, opt: { split?: string } = {}): Promise<Dataset> {
  type Row = { filename: string; cat: number; location: number; seq: string; dt: number[]; split: number; where: string };
  const rows: Row[] = [];
  for (const [file, splitName] of IWILDCAM_CSVS) {
    const csv = path.join(root, file);
    const t = await readCsv(csv);
    const col = columns(t, ['filename', 'category_id', 'location', 'seq_id', 'datetime']);
    t.rows.forEach((_, r) => {
      const where = `${csv}: line ${t.lines[r]}`;
      rows.push({
        filename: strCell(t, r, col.filename),
        cat: intCell(t, r, col.category_id),
        location: intCell(t, r, col.location),
        seq: strCell(t, r, col.seq_id),
        dt: parseWildsDatetime(strCell(t, r, col.datetime), `${where}, column 'datetime'`),
        split: IWILDCAM_SPLITS[splitName],
        where,
      });
    });
  }
  const uniq = <T>(xs: T[], cmp: (a: T, b: T) => number): Map<T, number> =>
    new Map([...new Set(xs)].sort(cmp).map((v, k) => [v, k]));
  const num = (a: number, b: number): number => a - b;
  const str = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  const catMap = uniq(rows.map((r) => r.cat), num);
  const locMap = uniq(rows.map((r) => r.location), num);
  const seqMap = uniq(rows.map((r) => r.seq), str);
  const recs: WildsRecord[] = rows.map((r) => {
    const y = catMap.get(r.cat)!;
    const [year, month, day, hour, minute, second] = r.dt;
    return {
      path: path.join(root, 'train', r.filename),
      label: y,
      meta: { location: locMap.get(r.location)!, sequence: seqMap.get(r.seq)!, year, month, day, hour, minute, second, y, split: r.split },
    };
  });
  const ds = new RecordDataset(
    'iwildcam',
    recs,
    async (r) => ({ image: await loadImage(r.path, { bands: 3 }), label: r.label, meta: r.meta, path: r.path }),
    [...catMap.keys()].map(String),
    root,
  );
  return splitSubset(ds, IWILDCAM_SPLITS, opt.split);
}

/**
 * The Camelyon17-WILDS hospital protocol for ExPLoRA's WILDS experiment (WILDS split definitions):
 * - supervised training on the labelled patches of hospitals 0, 3, 4 (`train`, split 0), in-distribution validation
 *   on the held-out patches of the same hospitals (`id_val`, split 1);
 * - out-of-distribution evaluation: hospital 1 is the OOD validation hospital (`val`, split 3), hospital 2 the OOD
 *   **test** hospital (`test`, split 2) — the number reported;
 * - extended (unlabelled) pre-training on the unlabelled patches of the chosen splits: by default the two target
 *   hospitals (`val_unlabeled` = hospital 1, `test_unlabeled` = hospital 2), i.e. the domains the model is evaluated
 *   on, never their labels. Which unlabelled splits ExPLoRA itself pre-trained on is not published (UNCONFIRMED); WILDS
 *   allows all three (`train_unlabeled` = hospitals 0, 3, 4).
 */
export const CAMELYON17_PROTOCOL = Object.freeze({
  trainHospitals: [0, 3, 4] as readonly number[],
  oodValHospital: CAMELYON17_VAL_CENTER,
  oodTestHospital: CAMELYON17_TEST_CENTER,
  pretrainSplits: ['val_unlabeled', 'test_unlabeled'] as readonly (keyof typeof CAMELYON17_UNLABELED_SPLITS)[],
});

export interface Camelyon17ProtocolDatasets {
  /** Unlabelled patches for extended pre-training (labels never read). */
  pretrain: Dataset;
  /** Labelled training patches (hospitals 0, 3, 4). */
  train: Dataset;
  /** In-distribution validation (hospitals 0, 3, 4, held-out patches). */
  idVal: Dataset;
  /** OOD validation hospital (1). */
  val: Dataset;
  /** OOD test hospital (2): the reported accuracy. */
  test: Dataset;
}

/**
 * Open the Camelyon17 protocol splits: labelled `root` (WILDS `camelyon17_v1.0`) and unlabelled `unlabeledRoot`
 * (`camelyon17_unlabeled_v1.0`). Checks the hospital of every sample of each split (an error names the split, the
 * sample's file and its hospital), so a metadata file with other split ids cannot silently leak the test hospital
 * into training.
 */
export async function camelyon17Protocol(
  root: string,
  unlabeledRoot: string,
  opt: { pretrainSplits?: readonly (keyof typeof CAMELYON17_UNLABELED_SPLITS)[] } = {},
): Promise<Camelyon17ProtocolDatasets> {
  const P = CAMELYON17_PROTOCOL;
  const splits = opt.pretrainSplits ?? P.pretrainSplits;
  if (splits.length === 0) throw new Error('camelyon17Protocol: pretrainSplits is empty');
  const all = await camelyon17(root);
  const unl = await camelyon17Unlabeled(unlabeledRoot);
  const check = (ds: Dataset, hospitals: readonly number[], what: string): Dataset => {
    for (let i = 0; i < ds.length; i++) {
      const inf = ds.info(i);
      const h = (inf.meta as { hospital: number }).hospital;
      if (!hospitals.includes(h)) throw new Error(`camelyon17Protocol: ${what} holds ${inf.path} from hospital ${h}; expected hospital(s) ${hospitals.join(', ')}`);
    }
    return ds;
  };
  const pick = (split: string): Dataset => splitSubset(all as RecordDataset<WildsRecord>, CAMELYON17_SPLITS, split);
  const ids = new Set<number>(splits.map((s) => {
    if (!(s in CAMELYON17_UNLABELED_SPLITS)) throw new Error(`camelyon17Protocol: unknown unlabelled split '${s}'; valid: ${Object.keys(CAMELYON17_UNLABELED_SPLITS).join(', ')}`);
    return CAMELYON17_UNLABELED_SPLITS[s];
  }));
  const pretrain = filterDataset(unl, (inf) => ids.has((inf.meta as { split: number }).split), `camelyon17_unlabeled:${splits.join('+')}`);
  const hosp = (s: keyof typeof CAMELYON17_UNLABELED_SPLITS): number[] =>
    s === 'val_unlabeled' ? [P.oodValHospital] : s === 'test_unlabeled' ? [P.oodTestHospital] : [...P.trainHospitals];
  return {
    pretrain: check(pretrain, splits.flatMap(hosp), 'the pre-training set'),
    train: check(pick('train'), P.trainHospitals, 'train'),
    idVal: check(pick('id_val'), P.trainHospitals, 'id_val'),
    val: check(pick('val'), [P.oodValHospital], 'val (OOD)'),
    test: check(pick('test'), [P.oodTestHospital], 'test (OOD)'),
  };
}
