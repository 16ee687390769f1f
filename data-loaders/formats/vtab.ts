/**
 * VTAB-1k as prepared for NOAH / Consolidator / PYRA: `vtab-1k/<task>/{train800,val200,train800val200,test}.txt`,
 * lines `images/<split>/<idx>.jpg <label>` split on a single space, paths relative to the task folder. 19 tasks in
 * three groups; the builder's folder names differ from the scripts' keys for some tasks (`cifar` vs `cifar100`,
 * `oxford_iiit_pet` vs `oxford_pet`), so every task lists the folder names it is found under.
 */
import * as path from 'path';
import { RecordDataset, SampleInfo } from '../dataset';
import { loadImage } from '../decode';
import { checkLabel, exists, readListFile } from './common';

export type VtabGroup = 'natural' | 'specialized' | 'structured';

export interface VtabTask {
  /** Canonical key (the training scripts' `--data-set`). */
  name: string;
  group: VtabGroup;
  numClasses: number;
  /** Folder names the task may have on disk, first = canonical. */
  folders: readonly string[];
}

/** The 19 VTAB-1k tasks with groups and class counts. */
export const VTAB_TASKS: readonly VtabTask[] = [
  { name: 'cifar100', group: 'natural', numClasses: 100, folders: ['cifar100', 'cifar'] },
  { name: 'caltech101', group: 'natural', numClasses: 102, folders: ['caltech101'] },
  { name: 'dtd', group: 'natural', numClasses: 47, folders: ['dtd'] },
  { name: 'oxford_flowers102', group: 'natural', numClasses: 102, folders: ['oxford_flowers102', 'flowers102'] },
  { name: 'oxford_pet', group: 'natural', numClasses: 37, folders: ['oxford_pet', 'oxford_iiit_pet'] },
  { name: 'svhn', group: 'natural', numClasses: 10, folders: ['svhn'] },
  { name: 'sun397', group: 'natural', numClasses: 397, folders: ['sun397'] },
  { name: 'patch_camelyon', group: 'specialized', numClasses: 2, folders: ['patch_camelyon'] },
  { name: 'eurosat', group: 'specialized', numClasses: 10, folders: ['eurosat'] },
  { name: 'resisc45', group: 'specialized', numClasses: 45, folders: ['resisc45'] },
  { name: 'diabetic_retinopathy', group: 'specialized', numClasses: 5, folders: ['diabetic_retinopathy'] },
  { name: 'clevr_count', group: 'structured', numClasses: 8, folders: ['clevr_count'] },
  { name: 'clevr_dist', group: 'structured', numClasses: 6, folders: ['clevr_dist'] },
  { name: 'dmlab', group: 'structured', numClasses: 6, folders: ['dmlab'] },
  { name: 'kitti', group: 'structured', numClasses: 4, folders: ['kitti'] },
  { name: 'dsprites_loc', group: 'structured', numClasses: 16, folders: ['dsprites_loc'] },
  { name: 'dsprites_ori', group: 'structured', numClasses: 16, folders: ['dsprites_ori'] },
  { name: 'smallnorb_azi', group: 'structured', numClasses: 18, folders: ['smallnorb_azi'] },
  { name: 'smallnorb_ele', group: 'structured', numClasses: 9, folders: ['smallnorb_ele'] },
];

export const VTAB_SPLITS = ['train800', 'val200', 'train800val200', 'test'] as const;
export type VtabSplit = (typeof VTAB_SPLITS)[number];

/** A task by canonical name or any folder alias. */
export function vtabTask(name: string): VtabTask {
  const t = VTAB_TASKS.find((x) => x.name === name || x.folders.includes(name));
  if (!t) throw new Error(`unknown VTAB-1k task '${name}'; valid: ${VTAB_TASKS.map((x) => x.name).join(', ')}`);
  return t;
}

/** The VTAB average: the mean of the three group means (not the mean over 19 tasks). Missing tasks are an error. */
export function vtabAverage(acc: Readonly<Record<string, number>>): { natural: number; specialized: number; structured: number; average: number } {
  const groups: Record<VtabGroup, number[]> = { natural: [], specialized: [], structured: [] };
  for (const t of VTAB_TASKS) {
    const v = acc[t.name] ?? t.folders.map((f) => acc[f]).find((x) => x !== undefined);
    if (v === undefined) throw new Error(`vtabAverage: no result for task '${t.name}'`);
    groups[t.group].push(v);
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const natural = mean(groups.natural);
  const specialized = mean(groups.specialized);
  const structured = mean(groups.structured);
  return { natural, specialized, structured, average: (natural + specialized + structured) / 3 };
}

/** Load one VTAB-1k task split from `root` (the `vtab-1k` folder). */
export async function vtab1k(root: string, task: string, split: VtabSplit = 'train800val200'): Promise<RecordDataset<SampleInfo>> {
  const t = vtabTask(task);
  if (!(VTAB_SPLITS as readonly string[]).includes(split)) throw new Error(`vtab1k: unknown split '${split}'; valid: ${VTAB_SPLITS.join(', ')}`);
  let dir: string | null = null;
  for (const f of t.folders) {
    if (await exists(path.join(root, f))) {
      dir = path.join(root, f);
      break;
    }
  }
  if (!dir) throw new Error(`missing VTAB-1k task folder for '${t.name}' under ${root} (tried ${t.folders.join(', ')})`);
  const list = path.join(dir, `${split}.txt`);
  const entries = await readListFile(list, 'space');
  const recs: SampleInfo[] = entries.map((e) => {
    if (e.label === undefined) throw new Error(`${list}: line ${e.line}: missing label`);
    checkLabel(e.label, t.numClasses, `${list}: line ${e.line}`);
    return { path: path.join(dir!, e.path), label: e.label };
  });
  return new RecordDataset(
    `vtab1k:${t.name}:${split}`,
    recs,
    async (r) => ({ image: await loadImage(r.path!, { bands: 3 }), label: r.label, path: r.path }),
    Array.from({ length: t.numClasses }, (_, k) => String(k)),
    list,
  );
}
