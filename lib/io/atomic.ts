/**
 * Crash- and full-disk-safe file writing, used by every writer of the kit (checkpoints, run records, dataset caches,
 * sidecars).
 *
 * `writeFileAtomic(file, data)`: the bytes go to a temporary file in the same folder, every byte count the OS returns
 * is checked (a short write on a full disk is an error, never a truncated file), the file is fsynced and its size
 * checked, then it is renamed over `file` and the folder is fsynced. On any failure the temporary file is removed and
 * `file` is left exactly as it was: a reader sees the old complete file or the new complete file, never a mix.
 *
 * A process killed during a save leaves its temporary file behind. Temporary files are named
 * `.<file name>.<host>.<pid>.<random>.vitpeft-tmp`; the next save to the same path (or `removeOrphanTemps(file)`)
 * deletes those whose writer is provably gone: same host, a process id that no longer exists (or our own id with a
 * file older than this process), a regular file. Nothing else is ever deleted.
 *
 * `appendFileChecked(file, text)`: an append (JSONL logs) that is all-or-nothing on a full disk: a failed append
 * truncates the file back to its previous length (and with `jsonl`, a torn last line of a killed writer is cut first).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { createHash } from 'crypto';

/** The `write(2)` the writers use: returns the number of bytes written (fewer than asked on a nearly full disk). */
export type WriteFn = (fd: number, buf: Uint8Array, offset: number, length: number, position: number | null) => number;

export interface AtomicWriteOptions {
  /** Replacement for `fs.writeSync` (fault injection in tests: short counts, ENOSPC). */
  write?: WriteFn;
  /** File mode of the new file before the umask (default 0o666, as `fs.writeFileSync`). */
  mode?: number;
}

const SUFFIX = '.vitpeft-tmp';
const HOST = os.hostname().replace(/[^A-Za-z0-9-]/g, '_') || 'host';
/** When this process started (ms since the epoch): a temporary file of our own pid older than this is not ours. */
const STARTED_MS = Date.now() - process.uptime() * 1000;

/** The part of a temporary file's name that identifies its target (long names are shortened with a hash). */
function stem(base: string): string {
  if (Buffer.byteLength(base) <= 120) return base;
  return `${base.slice(0, 60)}~${createHash('sha256').update(base).digest('hex').slice(0, 16)}`;
}

/** A fresh temporary path next to `file` (absolute). */
export function tempPathFor(file: string): string {
  const abs = path.resolve(file);
  const rand = Math.random().toString(36).slice(2, 10).padEnd(8, '0');
  return path.join(path.dirname(abs), `.${stem(path.basename(abs))}.${tempOwnerTag()}.${rand}${SUFFIX}`);
}

/** True if process `pid` exists (EPERM: exists, owned by someone else). */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** `<host>.<pid>`: the owner part of the kit's temporary names (files here, folders in data-loaders/embedded.ts). */
export function tempOwnerTag(): string {
  return `${HOST}.${process.pid}`;
}

/**
 * True when the writer `{host, pid}` of a temporary file or folder last modified at `mtimeMs` is provably gone: same
 * host, and either another process id that no longer exists, or our own id on a file older than this process.
 */
export function writerGone(owner: { host: string; pid: number }, mtimeMs: number): boolean {
  if (owner.host !== HOST) return false;
  return owner.pid === process.pid ? mtimeMs < STARTED_MS - 1000 : !pidAlive(owner.pid);
}

/** Owner of a temporary file name of ours, or null when the name is not one of ours for `base`. */
function parseTemp(name: string, base: string): { host: string; pid: number } | null {
  const pre = `.${stem(base)}.`;
  if (!name.startsWith(pre) || !name.endsWith(SUFFIX)) return null;
  const m = /^([A-Za-z0-9_-]+)\.(\d+)\.([a-z0-9]{8})$/.exec(name.slice(pre.length, name.length - SUFFIX.length));
  return m ? { host: m[1], pid: Number(m[2]) } : null;
}

/**
 * Delete the temporary files that killed saves to `file` left behind (see the module comment for the rule that makes
 * sure a file is ours and its writer gone). Returns the paths removed. Never throws for a file it cannot inspect.
 */
export function removeOrphanTemps(file: string): string[] {
  const abs = path.resolve(file);
  const dir = path.dirname(abs);
  const base = path.basename(abs);
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const owner = parseTemp(name, base);
    if (!owner) continue;
    const p = path.join(dir, name);
    try {
      const st = fs.lstatSync(p);
      if (!st.isFile() || !writerGone(owner, st.mtimeMs)) continue;
      fs.unlinkSync(p);
      removed.push(p);
    } catch {
      /* vanished meanwhile or not ours to touch */
    }
  }
  return removed;
}

/** `mkdir -p dir`, with an error naming the folder and why (a file in the way, permissions) instead of a bare EEXIST. */
export function ensureDir(dir: string, what = 'folder'): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way of the folder path' : describe(e);
    throw new Error(`${what} ${dir}: cannot create the folder (${why})`);
  }
}

function describe(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code ? `${err.code}: ${err.message.replace(/^[A-Z]+: /, '')}` : String(err?.message ?? e);
}

/** Write all of `buf` at `fd`, checking every count; throws naming `file` and how far it got. */
function writeAll(fd: number, buf: Uint8Array, write: WriteFn, file: string): void {
  let off = 0;
  while (off < buf.length) {
    let n: number;
    try {
      n = write(fd, buf, off, buf.length - off, off);
    } catch (e) {
      throw new Error(`${file}: write failed after ${off} of ${buf.length} bytes (${describe(e)})`);
    }
    if (!Number.isInteger(n) || n <= 0 || n > buf.length - off) {
      throw new Error(
        `${file}: short write: ${off} of ${buf.length} bytes written, then the system wrote ${String(n)} (disk full?)`,
      );
    }
    off += n;
  }
}

function fsyncDir(dir: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* folders cannot be fsynced on some platforms (Windows); the rename itself is still atomic */
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

/**
 * Write `data` to `file` atomically (temporary file, checked writes, fsync, size check, rename, folder fsync). On
 * failure the error names the file and what failed, the temporary file is gone and `file` is unchanged.
 */
export function writeFileAtomic(file: string, data: Uint8Array | string, opt: AtomicWriteOptions = {}): void {
  const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  const abs = path.resolve(file);
  const dir = path.dirname(abs);
  ensureDir(dir, `${file}: its folder`);
  removeOrphanTemps(abs);
  const tmp = tempPathFor(abs);
  let fd: number | null = null;
  try {
    fd = fs.openSync(tmp, 'wx', opt.mode ?? 0o666); // 'wx': never clobber an existing file
    writeAll(fd, buf, opt.write ?? fs.writeSync, file);
    fs.fsyncSync(fd);
    const size = fs.fstatSync(fd).size;
    if (size !== buf.length) throw new Error(`${file}: wrote ${buf.length} bytes but the file has ${size}`);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, abs);
  } catch (e) {
    if (fd !== null) {
      try {
        fs.closeSync(fd);
      } catch {
        /* already closed */
      }
    }
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* never created or already gone */
    }
    const msg = (e as Error).message.startsWith(file) ? (e as Error).message : `${file}: cannot save (${describe(e)})`;
    throw new Error(`${msg}; the previous ${path.basename(file)} (if any) is unchanged`);
  }
  fsyncDir(dir);
}

export interface AppendOptions extends Pick<AtomicWriteOptions, 'write'> {
  /**
   * The file is JSON lines: an unterminated last line (a writer killed mid-append) is cut off before appending, so the
   * torn fragment cannot glue onto the new line (readers skip a torn last line, never a torn line in the middle).
   */
  jsonl?: boolean;
}

/**
 * Append `text` to `file` (created if missing) all-or-nothing: every byte count is checked and a failed append
 * (full disk) truncates the file back to its previous length before the error is thrown.
 */
export function appendFileChecked(file: string, text: string, opt: AppendOptions = {}): void {
  const buf = Buffer.from(text, 'utf8');
  const fd = fs.openSync(file, 'a+');
  try {
    let start = fs.fstatSync(fd).size;
    if (opt.jsonl && start > 0) start = cutTornLine(fd, start);
    try {
      writeAll(fd, buf, opt.write ?? ((f, b, o, l) => fs.writeSync(f, b, o, l)), file);
    } catch (e) {
      try {
        fs.ftruncateSync(fd, start);
      } catch {
        /* nothing more we can do; the error below still reports the failed append */
      }
      throw new Error(`${(e as Error).message}; the append was rolled back to ${start} bytes`);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Truncate an unterminated last line of a `size`-byte file open at `fd`; returns the new size. */
function cutTornLine(fd: number, size: number): number {
  const chunk = Buffer.alloc(Math.min(size, 64 * 1024));
  let end = size;
  while (end > 0) {
    const n = Math.min(chunk.length, end);
    fs.readSync(fd, chunk, 0, n, end - n);
    const nl = chunk.subarray(0, n).lastIndexOf(0x0a);
    if (nl >= 0) {
      end = end - n + nl + 1;
      break;
    }
    end -= n;
  }
  if (end !== size) fs.ftruncateSync(fd, end);
  return end;
}
