/**
 * Helpers shared by the format modules: directory listing with clear errors, list files (`path label` lines), and
 * path resolution.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';

/** Entries of a directory (sorted by code point, as Python's `sorted`); a missing directory is an error naming it. */
export async function listDir(dir: string, what = 'directory'): Promise<{ dirs: string[]; files: string[] }> {
  let ents: import('fs').Dirent[];
  try {
    ents = await fsp.readdir(dir, { withFileTypes: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`missing ${what}: ${dir}`);
    throw new Error(`cannot list ${what} ${dir}: ${(e as Error).message}`);
  }
  const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  const dirs = ents.filter((e) => e.isDirectory()).map((e) => e.name).sort(cmp);
  const files = ents.filter((e) => e.isFile()).map((e) => e.name).sort(cmp);
  return { dirs, files };
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
    if (parts.length > 2) throw new Error(`${file}: line ${k + 1}: expected 'path label', got ${parts.length} fields: '${line}'`);
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
