/**
 * Helpers shared by the format modules: directory listing with clear errors, list files (`path label` lines), and
 * path resolution.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { fmtValue } from '../../lib/check';

const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Entries of a directory (sorted by code point, as Python's `sorted`); a missing directory is an error naming it.
 * Symbolic links are followed (as `os.scandir(...).is_dir()` and torchvision do): a link to a folder is listed under
 * `dirs`, a link to a file under `files`, and a broken link is an error naming it and its target.
 */
export async function listDir(dir: string, what = 'directory'): Promise<{ dirs: string[]; files: string[] }> {
  let ents: import('fs').Dirent[];
  try {
    ents = await fsp.readdir(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`missing ${what}: ${dir}`);
    throw new Error(`cannot list ${what} ${dir}: ${(e as Error).message}`);
  }
  const dirs: string[] = [];
  const files: string[] = [];
  for (const e of ents) {
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      const p = path.join(dir, e.name);
      const st = await fsp.stat(p).catch(() => null);
      if (!st) {
        const to = await fsp.readlink(p).catch(() => '?');
        throw new Error(`${p}: broken symbolic link (→ ${to}) in ${what} ${dir}`);
      }
      isDir = st.isDirectory();
      isFile = st.isFile();
    }
    if (isDir) dirs.push(e.name);
    else if (isFile) files.push(e.name);
  }
  return { dirs: dirs.sort(byCodePoint), files: files.sort(byCodePoint) };
}

/**
 * Every file under `dir`, recursively, following symbolic links, in torchvision's `make_dataset` order
 * (`sorted(os.walk(dir, followlinks=True))`, then the file names sorted): grouped by folder, folders sorted by path.
 * A link back to an enclosing folder (a loop) is an error naming the link; os.walk would recurse until the path is
 * too long.
 */
export async function walkFiles(dir: string, what = 'directory'): Promise<string[]> {
  const groups: Array<[string, string[]]> = [];
  const visit = async (d: string, ancestors: string[]): Promise<void> => {
    const real = await fsp.realpath(d);
    const loop = ancestors.indexOf(real);
    if (loop >= 0) {
      throw new Error(`${d}: symbolic link loop (it resolves to ${real}, a folder that encloses it); remove the link or point it elsewhere`);
    }
    const { dirs, files } = await listDir(d, what);
    groups.push([d, files.map((f) => path.join(d, f))]);
    for (const sub of dirs) await visit(path.join(d, sub), [...ancestors, real]);
  };
  await visit(dir, []);
  return groups.sort((a, b) => byCodePoint(a[0], b[0])).flatMap(([, f]) => f);
}

/** True if `p` exists. */
export async function exists(p: string): Promise<boolean> {
  try {
    await fsp.stat(p);
    return true;
  } catch {
    return false;
  }
}

/** `p` if absolute, else relative to `root`. */
export function resolveUnder(root: string, p: string): string {
  return path.isAbsolute(p) ? p : path.join(root, p);
}

/** One line of a list file. */
export interface ListEntry {
  path: string;
  /** Integer label when the line has one. */
  label?: number;
  /** 1-based line number in the file. */
  line: number;
}

/**
 * Read a list file of `path label` lines (SatMAE EuroSAT, VTAB-1k) or bare `path` lines (torchgeo split files).
 * `sep: 'space'` splits on a single space (VTAB-1k's loader does `line.split(' ')`), `'whitespace'` on any run.
 * Blank lines are skipped; a non-integer label or extra fields are errors naming the file and line; an empty list is
 * an error ("empty split").
 */
export async function readListFile(file: string, sep: 'space' | 'whitespace' = 'whitespace'): Promise<ListEntry[]> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`missing list file: ${file}`);
    throw new Error(`cannot read list file ${file}: ${(e as Error).message}`);
  }
  const out: ListEntry[] = [];
  text.split(/\r?\n/).forEach((raw, k) => {
    const line = raw.trim();
    if (!line) return;
    const parts = sep === 'space' ? line.split(' ') : line.split(/\s+/);
    if (parts.length > 2) throw new Error(`${file}: line ${k + 1}: expected 'path label', got ${fmtValue(parts.length)} fields: '${line}'`);
    const e: ListEntry = { path: parts[0], line: k + 1 };
    if (parts.length === 2) {
      if (!/^-?\d+$/.test(parts[1])) throw new Error(`${file}: line ${k + 1}: label '${parts[1]}' is not an integer`);
      e.label = parseInt(parts[1], 10);
    }
    out.push(e);
  });
  if (out.length === 0) throw new Error(`${file}: empty split (no entries)`);
  return out;
}

/** Throw unless `label` ∈ [0, n) (`where` names file:line or row). */
export function checkLabel(label: number, n: number, where: string): void {
  if (!Number.isInteger(label) || label < 0 || label >= n) {
    throw new Error(`${where}: label ${label} out of range [0, ${n})`);
  }
}
