/**
 * ImageFolder (torchvision): `root/<class>/[sub/...]<file>`; classes are the sub-folder names sorted by code point, label =
 * position; the files of a class are found recursively in torchvision's order (folders sorted by path, then file
 * names), following symbolic links to folders and files as torchvision does (a link loop or a broken link is an error
 * naming it). A class folder without any image file is an error (as torchvision).
 */
import * as path from 'path';
import { RecordDataset, SampleInfo } from '../dataset';
import { DecodeOptions, IMAGE_EXTENSIONS, loadImage } from '../decode';
import { listDir, walkFiles } from './common';
import { checkKeys, fmtValue } from '../../lib/check';

export interface ImageFolderOptions {
  /** Accepted extensions, lower case with dot (default: .jpg .jpeg .png .webp .tif .tiff). */
  extensions?: readonly string[];
  /** Explicit class order; folders outside it are an error ("unknown class"), missing folders too. */
  classes?: readonly string[];
  decode?: DecodeOptions;
  name?: string;
}

/** Build an ImageFolder dataset (scans the folders once). */
export async function imageFolder(root: string, opt: ImageFolderOptions = {}): Promise<RecordDataset<SampleInfo>> {
  checkKeys('ImageFolderOptions', opt, ['extensions', 'classes', 'decode', 'name']);
  for (const e of opt.extensions ?? []) {
    if (typeof e !== 'string' || !/^\.[^./\\]+$/.test(e)) throw new Error(`ImageFolderOptions.extensions: expected entries like '.png' (with the dot), got ${fmtValue(e)}`);
  }
  if (opt.classes) {
    const seen = new Set<string>();
    for (const c of opt.classes) {
      if (typeof c !== 'string' || c === '') throw new Error(`ImageFolderOptions.classes: expected folder names, got ${fmtValue(c)}`);
      if (seen.has(c)) throw new Error(`ImageFolderOptions.classes: '${c}' is listed twice (labels would shift)`);
      seen.add(c);
    }
  }
  const exts = new Set((opt.extensions ?? IMAGE_EXTENSIONS).map((e) => e.toLowerCase()));
  const { dirs } = await listDir(root, 'ImageFolder root');
  if (dirs.length === 0) throw new Error(`${root}: no class folders (ImageFolder expects root/<class>/<image>)`);
  let classes: string[];
  if (opt.classes) {
    classes = [...opt.classes];
    for (const d of dirs) {
      if (!classes.includes(d)) throw new Error(`${path.join(root, d)}: unknown class '${d}'; valid: ${classes.join(', ')}`);
    }
    for (const c of classes) if (!dirs.includes(c)) throw new Error(`missing class folder: ${path.join(root, c)}`);
  } else classes = dirs;
  const records: SampleInfo[] = [];
  for (let label = 0; label < classes.length; label++) {
    const dir = path.join(root, classes[label]);
    const imgs = (await walkFiles(dir, 'class folder')).filter((f) => exts.has(path.extname(f).toLowerCase()));
    if (imgs.length === 0) {
      throw new Error(`${dir}: class '${classes[label]}' has no image file (extensions: ${[...exts].join(' ')})`);
    }
    for (const f of imgs) records.push({ path: f, label });
  }
  return new RecordDataset(
    opt.name ?? `imagefolder:${path.basename(root)}`,
    records,
    async (r) => ({ image: await loadImage(r.path!, opt.decode), label: r.label, path: r.path }),
    classes,
    root,
  );
}
