/**
 * Hugging Face hub downloads into the standard local cache (the layout huggingface_hub and transformers/timm use, so
 * files are shared with Python tools; huggingface_hub `file_download.py` / `constants.py`):
 *
 *   <cache>/models--<org>--<name>/blobs/<etag>                      the file, named by its hash
 *                                 snapshots/<commit>/<filename>      relative symlink → ../../blobs/<etag>
 *                                 refs/<revision>                    the commit a branch/tag resolved to
 *   <cache> = $HF_HUB_CACHE | $HUGGINGFACE_HUB_CACHE | ($HF_HOME | $XDG_CACHE_HOME/huggingface | ~/.cache/huggingface)/hub
 *
 * Protocol (as `hf_hub_download`): `HEAD <endpoint>/<repo>/resolve/<revision>/<filename>` with
 * `Accept-Encoding: identity`, following relative redirects only; the commit comes from `X-Repo-Commit`, the blob
 * name from `X-Linked-Etag` (LFS files: their sha256) or `ETag` (git files: their git blob sha1), the size from
 * `X-Linked-Size` or `Content-Length`. An LFS HEAD answers with a redirect to the CDN, downloaded without the token
 * when the host differs.
 *
 * Beyond huggingface_hub: downloads resume from `blobs/<etag>.incomplete` with an HTTP `Range` request (a 200 answer
 * restarts the file), and every download is verified before it enters the cache — size, and the content hash the
 * etag names (sha256 for LFS, git's `sha1("blob <size>\0" + bytes)` otherwise); a mismatch deletes the partial file
 * and is an error naming both values. `HF_HUB_OFFLINE=1` (or `offline: true`) never touches the network and serves
 * from the cache; a network failure falls back to the cache too. `HF_ENDPOINT` overrides the endpoint; the token
 * comes from `token`, `$HF_TOKEN` or the token file (`$HF_TOKEN_PATH`, `$HF_HOME/token`).
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as http from 'http';
import * as https from 'https';
import * as crypto from 'crypto';

export interface HubOptions {
  /** Hub endpoint (default `$HF_ENDPOINT` or https://huggingface.co). */
  endpoint?: string;
  /** Cache folder (default: the huggingface_hub cache, see above). */
  cacheDir?: string;
  /** Branch, tag or commit (default 'main'). */
  revision?: string;
  /** Access token; `false` sends none. Default `$HF_TOKEN`, then the token file. */
  token?: string | false;
  /** Never use the network (default `$HF_HUB_OFFLINE` / `$TRANSFORMERS_OFFLINE`). */
  offline?: boolean;
  /** Per-request timeout in ms (default 30 s; a stalled body also times out). */
  timeoutMs?: number;
  /** Download progress (bytes done, bytes total). */
  onProgress?: (done: number, total: number) => void;
}

/** A file resolved in the cache. */
export interface HubFile {
  repoId: string;
  filename: string;
  /** Path inside `snapshots/<commit>/` (a symlink to the blob). */
  path: string;
  commit: string;
  etag: string;
  size: number;
  /** 'cache' (nothing downloaded), 'download', or 'resumed' (continued a partial download). */
  source: 'cache' | 'download' | 'resumed';
  /** What was checked: 'sha256' / 'git-sha1' (content hash = etag) or 'size' only (unrecognised etag). */
  verified: 'sha256' | 'git-sha1' | 'size' | 'cached';
}

const truthy = (v: string | undefined): boolean => !!v && ['1', 'on', 'yes', 'true'].includes(v.toLowerCase());

/** The huggingface_hub cache folder from the environment. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE;
  return path.join(hfHome(env), 'hub');
}

function hfHome(env: NodeJS.ProcessEnv): string {
  return env.HF_HOME ?? path.join(env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'huggingface');
}

/** The token huggingface_hub would send: `$HF_TOKEN`, else the token file. */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.HF_TOKEN) return env.HF_TOKEN.trim();
  const file = env.HF_TOKEN_PATH ?? path.join(hfHome(env), 'token');
  try {
    const t = fs.readFileSync(file, 'utf8').trim();
    return t || null;
  } catch {
    return null;
  }
}

/** `models--org--name` (huggingface_hub `repo_folder_name`). */
export function repoFolderName(repoId: string): string {
  return ['models', ...repoId.split('/')].join('--');
}

function checkRepoId(repoId: string): void {
  if (!/^[A-Za-z0-9][\w.-]*(\/[\w.-]+)?$/.test(repoId) || repoId.includes('..') || repoId.includes('--')) {
    throw new Error(`hub: '${repoId}' is not a valid repo id ('org/name')`);
  }
}

function checkFilename(filename: string): void {
  const parts = filename.split('/');
  if (!filename || filename.startsWith('/') || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new Error(`hub: '${filename}' is not a valid file path inside a repo`);
  }
}

const COMMIT = /^[0-9a-f]{40}$/;

interface Head {
  status: number;
  headers: http.IncomingHttpHeaders;
  url: string;
}

function header(h: http.IncomingHttpHeaders, name: string): string | undefined {
  const v = h[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

function request(method: 'HEAD' | 'GET', url: string, headers: Record<string, string>, timeoutMs: number): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : u.protocol === 'http:' ? http : null;
    if (!lib) {
      reject(new Error(`hub: unsupported URL scheme in ${url}`));
      return;
    }
    const req = lib.request(u, { method, headers, timeout: timeoutMs });
    req.on('response', resolve);
    req.on('timeout', () => req.destroy(new Error(`hub: ${method} ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** HEAD with relative redirects followed (repo renames), absolute ones (CDN) returned as they are. */
async function head(url: string, headers: Record<string, string>, timeoutMs: number): Promise<Head> {
  let current = url;
  for (let hop = 0; hop < 10; hop++) {
    const res = await request('HEAD', current, headers, timeoutMs);
    res.resume();
    const loc = header(res.headers, 'location');
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && loc && loc.startsWith('/')) {
      current = new URL(loc, current).toString();
      continue;
    }
    return { status, headers: res.headers, url: current };
  }
  throw new Error(`hub: too many redirects for ${url}`);
}

function httpError(status: number, h: http.IncomingHttpHeaders, repoId: string, filename: string, revision: string): Error {
  const code = header(h, 'x-error-code');
  const msg = header(h, 'x-error-message');
  const what = `'${filename}' of '${repoId}' (revision '${revision}')`;
  if (status === 401 || status === 403) return new Error(`hub: ${what}: HTTP ${status}${code ? ` ${code}` : ''} — a private or gated repo needs a token (HF_TOKEN or the token option)${msg ? `: ${msg}` : ''}`);
  if (status === 404 && code === 'RepoNotFound') return new Error(`hub: repository '${repoId}' not found (or private: set HF_TOKEN)`);
  if (status === 404 && code === 'RevisionNotFound') return new Error(`hub: revision '${revision}' not found in '${repoId}'`);
  if (status === 404) return new Error(`hub: ${what} does not exist (HTTP 404${code ? ` ${code}` : ''})`);
  return new Error(`hub: ${what}: HTTP ${status}${msg ? ` (${msg})` : ''}`);
}

/** A 404 for a file (not a repo / revision problem): callers may try another file name. */
export class HubEntryNotFound extends Error {}

function normalizeEtag(e: string | undefined): string | undefined {
  return e?.replace(/^W\//, '').replace(/^"|"$/g, '');
}

function writeAtomic(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.${crypto.randomBytes(4).toString('hex')}.tmp`;
  fs.writeFileSync(tmp, text);
  fs.renameSync(tmp, file);
}

/** Create `link` → `target` as a relative symlink (replacing an old one); copies where symlinks are unavailable. */
function symlinkRelative(target: string, link: string): void {
  fs.mkdirSync(path.dirname(link), { recursive: true });
  try {
    fs.unlinkSync(link);
  } catch {
    /* absent */
  }
  try {
    fs.symlinkSync(path.relative(path.dirname(link), target), link);
  } catch {
    fs.copyFileSync(target, link);
  }
}

function hashFile(file: string, algo: 'sha256' | 'sha1', prefix?: Buffer): string {
  const h = crypto.createHash(algo);
  if (prefix) h.update(prefix);
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 22);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n <= 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Check a complete file against its etag: sha256 (LFS) or git blob sha1 (regular git files). */
function verify(file: string, etag: string, size: number, what: string): HubFile['verified'] {
  const got = fs.statSync(file).size;
  if (got !== size) throw new Error(`hub: ${what}: downloaded ${got} bytes, the hub announced ${size}`);
  if (/^[0-9a-f]{64}$/.test(etag)) {
    const h = hashFile(file, 'sha256');
    if (h !== etag) throw new Error(`hub: ${what}: sha256 ${h} does not match the hub's ${etag} (corrupted download)`);
    return 'sha256';
  }
  if (/^[0-9a-f]{40}$/.test(etag)) {
    const h = hashFile(file, 'sha1', Buffer.from(`blob ${size}\0`));
    if (h !== etag) throw new Error(`hub: ${what}: git blob sha1 ${h} does not match the hub's ${etag} (corrupted download)`);
    return 'git-sha1';
  }
  return 'size';
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** An exclusive lock file `<cache>/.locks/<repo>/<etag>.lock` (stale locks of dead processes are taken over). */
async function withLock<T>(lock: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  fs.mkdirSync(path.dirname(lock), { recursive: true });
  const t0 = Date.now();
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(fs.readFileSync(lock, 'utf8') || 0);
      if (!pid || !pidAlive(pid)) {
        fs.rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() - t0 > timeoutMs) throw new Error(`hub: another process (pid ${pid}) is downloading the same file (lock ${lock})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}

/** Stream a GET into `file` from byte `start` (Range when > 0). Returns the number of bytes the file now has. */
async function getInto(url: string, headers: Record<string, string>, file: string, start: number, total: number, opts: HubOptions, what: string): Promise<{ bytes: number; resumed: boolean }> {
  const h = { ...headers };
  if (start > 0) h.Range = `bytes=${start}-`;
  const res = await request('GET', url, h, opts.timeoutMs ?? 30000);
  const status = res.statusCode ?? 0;
  if (status >= 300 && status < 400 && header(res.headers, 'location')) {
    res.resume();
    const next = new URL(header(res.headers, 'location')!, url).toString();
    const sameHost = new URL(next).host === new URL(url).host;
    const nh = { ...headers };
    if (!sameHost) delete nh.Authorization;
    return getInto(next, nh, file, start, total, opts, what);
  }
  let resumed = false;
  let pos = start;
  if (status === 206 && start > 0) {
    const cr = header(res.headers, 'content-range');
    const m = cr ? /^bytes (\d+)-/.exec(cr) : null;
    if (!m || Number(m[1]) !== start) {
      res.resume();
      throw new Error(`hub: ${what}: asked for bytes from ${start}, the server sent '${cr ?? 'no Content-Range'}'`);
    }
    resumed = true;
  } else if (status === 200) {
    pos = 0; // the server ignored the Range: start over
  } else if (status === 416 && start > 0) {
    res.resume();
    return { bytes: start, resumed: true }; // nothing left to send: the partial file is complete (verified by the caller)
  } else {
    res.resume();
    throw new Error(`hub: ${what}: GET answered HTTP ${status}`);
  }
  const fd = fs.openSync(file, pos === 0 ? 'w' : 'r+');
  try {
    await new Promise<void>((resolve, reject) => {
      res.on('data', (chunk: Buffer) => {
        try {
          fs.writeSync(fd, chunk, 0, chunk.length, pos);
          pos += chunk.length;
          opts.onProgress?.(pos, total);
          if (pos > total) res.destroy(new Error(`hub: ${what}: the server sent more than the announced ${total} bytes`));
        } catch (e) {
          res.destroy(e as Error);
        }
      });
      res.on('end', () => resolve());
      res.on('error', reject);
      res.on('aborted', () => reject(new Error(`hub: ${what}: connection closed after ${pos} of ${total} bytes (run again to resume)`)));
      res.setTimeout(opts.timeoutMs ?? 30000, () => res.destroy(new Error(`hub: ${what}: download stalled at ${pos} of ${total} bytes (run again to resume)`)));
    });
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  if (pos < total) throw new Error(`hub: ${what}: connection closed after ${pos} of ${total} bytes (run again to resume)`);
  return { bytes: pos, resumed };
}

function fromCache(storage: string, repoId: string, filename: string, revision: string, why: string): HubFile {
  const commit = COMMIT.test(revision) ? revision : (() => {
    try {
      return fs.readFileSync(path.join(storage, 'refs', revision), 'utf8').trim();
    } catch {
      return null;
    }
  })();
  const ptr = commit ? path.join(storage, 'snapshots', commit, filename) : null;
  if (!ptr || !fs.existsSync(ptr)) {
    throw new Error(`hub: '${filename}' of '${repoId}' (revision '${revision}') is not in the cache at ${storage} and ${why}`);
  }
  const blob = fs.realpathSync(ptr);
  return { repoId, filename, path: ptr, commit: commit!, etag: path.basename(blob), size: fs.statSync(blob).size, source: 'cache', verified: 'cached' };
}

/**
 * Resolve one file of a hub model repo into the local cache and return its path (downloading, resuming and verifying
 * as needed). Throws `HubEntryNotFound` for a file the repo does not have.
 */
export async function hubDownload(repoId: string, filename: string, opts: HubOptions = {}): Promise<HubFile> {
  checkRepoId(repoId);
  checkFilename(filename);
  const revision = opts.revision ?? 'main';
  if (revision.includes('..') || revision.startsWith('/')) throw new Error(`hub: bad revision '${revision}'`);
  const cache = opts.cacheDir ?? hubCacheDir();
  const storage = path.join(cache, repoFolderName(repoId));
  const offline = opts.offline ?? (truthy(process.env.HF_HUB_OFFLINE) || truthy(process.env.TRANSFORMERS_OFFLINE));
  if (offline) return fromCache(storage, repoId, filename, revision, 'offline mode is on (HF_HUB_OFFLINE)');
  const endpoint = (opts.endpoint ?? process.env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const token = opts.token === false ? null : (opts.token ?? hubToken());
  const headers: Record<string, string> = { 'User-Agent': 'vitpeft/0.1 (+hub.ts)', 'Accept-Encoding': 'identity' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const url = `${endpoint}/${repoId}/resolve/${encodeURIComponent(revision)}/${filename.split('/').map(encodeURIComponent).join('/')}`;
  let meta: Head;
  try {
    meta = await head(url, headers, opts.timeoutMs ?? 30000);
  } catch (e) {
    return fromCache(storage, repoId, filename, revision, `the hub is unreachable (${(e as Error).message})`);
  }
  const status = meta.status;
  const redirect = status >= 300 && status < 400;
  if (status >= 400) {
    if (status === 404 && !['RepoNotFound', 'RevisionNotFound'].includes(header(meta.headers, 'x-error-code') ?? '')) {
      const c = header(meta.headers, 'x-repo-commit');
      if (c && COMMIT.test(c)) {
        const ne = path.join(storage, '.no_exist', c, filename);
        fs.mkdirSync(path.dirname(ne), { recursive: true });
        fs.writeFileSync(ne, '');
      }
      throw new HubEntryNotFound(httpError(status, meta.headers, repoId, filename, revision).message);
    }
    if (status >= 500) return fromCache(storage, repoId, filename, revision, `the hub answered HTTP ${status}`);
    throw httpError(status, meta.headers, repoId, filename, revision);
  }
  const commit = header(meta.headers, 'x-repo-commit');
  const etag = normalizeEtag(header(meta.headers, 'x-linked-etag') ?? header(meta.headers, 'etag'));
  const sizeStr = header(meta.headers, 'x-linked-size') ?? (redirect ? undefined : header(meta.headers, 'content-length'));
  const size = sizeStr === undefined ? NaN : Number(sizeStr);
  if (!commit || !COMMIT.test(commit)) throw new Error(`hub: ${url} has no X-Repo-Commit header (not a Hugging Face hub endpoint?)`);
  if (!etag || !/^[\w.-]+$/.test(etag)) throw new Error(`hub: ${url} has no usable ETag (got ${JSON.stringify(etag)})`);
  if (!Number.isInteger(size) || size < 0) throw new Error(`hub: ${url} announces no size (X-Linked-Size / Content-Length)`);
  const blob = path.join(storage, 'blobs', etag);
  const ptr = path.join(storage, 'snapshots', commit, filename);
  if (revision !== commit) writeAtomic(path.join(storage, 'refs', revision), commit);
  if (fs.existsSync(ptr) && fs.existsSync(blob)) return { repoId, filename, path: ptr, commit, etag, size, source: 'cache', verified: 'cached' };
  const what = `'${filename}' of '${repoId}'`;
  const lock = path.join(cache, '.locks', repoFolderName(repoId), `${etag}.lock`);
  return withLock(lock, 10 * 60 * 1000, async () => {
    if (fs.existsSync(blob)) {
      symlinkRelative(blob, ptr);
      return { repoId, filename, path: ptr, commit, etag, size, source: 'cache' as const, verified: 'cached' as const };
    }
    const partial = `${blob}.incomplete`;
    fs.mkdirSync(path.dirname(blob), { recursive: true });
    let start = 0;
    try {
      start = fs.statSync(partial).size;
    } catch {
      /* no partial file */
    }
    if (start > size) {
      fs.rmSync(partial, { force: true });
      start = 0;
    }
    const dl = redirect ? new URL(header(meta.headers, 'location')!, meta.url).toString() : meta.url;
    const h = { ...headers };
    if (new URL(dl).host !== new URL(meta.url).host) delete h.Authorization; // signed CDN URL: no token
    const got = start === size ? { bytes: size, resumed: true } : await getInto(dl, h, partial, start, size, opts, what);
    let verified: HubFile['verified'];
    try {
      verified = verify(partial, etag, size, what);
    } catch (e) {
      fs.rmSync(partial, { force: true });
      throw e;
    }
    fs.renameSync(partial, blob);
    symlinkRelative(blob, ptr);
    return { repoId, filename, path: ptr, commit, etag, size, source: got.resumed && start > 0 ? ('resumed' as const) : ('download' as const), verified };
  });
}

/** The first of `filenames` the repo has (e.g. ['model.safetensors', 'pytorch_model.bin']). */
export async function hubDownloadFirst(repoId: string, filenames: readonly string[], opts: HubOptions = {}): Promise<HubFile> {
  const missing: string[] = [];
  for (const f of filenames) {
    try {
      return await hubDownload(repoId, f, opts);
    } catch (e) {
      if (e instanceof HubEntryNotFound) {
        missing.push(f);
        continue;
      }
      if (/is not in the cache/.test((e as Error).message) && filenames.indexOf(f) < filenames.length - 1) {
        missing.push(f);
        continue;
      }
      throw e;
    }
  }
  throw new Error(`hub: '${repoId}' has none of ${filenames.join(', ')}`);
}
