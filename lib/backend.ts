/**
 * Backend selection for the kit.
 *
 * `init()` picks, in order: the native TensorFlow backend through `@tensorflow/tfjs-node-gpu` (CUDA), then through
 * `@tensorflow/tfjs-node` (native CPU), then `wasm` (`@tensorflow/tfjs-backend-wasm`, SIMD, the embedded default), then
 * the plain JavaScript `cpu` backend. Nothing happens at import time (the library is loaded through `require` by
 * tslab, so there is no top-level await anywhere): call `await init()` once before building models.
 *
 * A backend can be forced with `init({backend})` or the environment variable `VITPEFT_BACKEND`
 * (`tfjs-node-gpu | tfjs-node | tensorflow | wasm | cpu`). A forced backend that fails to load is an error, never a
 * silent fallback. Every candidate that was tried is recorded with the reason it failed, see `backendReport()`.
 *
 * The GPU path: `npm install` tries `@tensorflow/tfjs-node-gpu` as an optional dependency. Its install script downloads
 * libtensorflow (CUDA) from Google's storage; where that host is unreachable npm drops the package silently and the kit
 * falls back to wasm. On a CUDA machine (see environment/GPU.md) the package installs, `init()` loads it inside
 * try/catch, and every op of the kit runs through the plain tfjs ops on the `tensorflow` backend (the wasm-only custom
 * kernels are registered for `wasm` alone).
 */
import * as tf from '@tensorflow/tfjs';
import * as os from 'os';
import { execFileSync } from 'child_process';
import { registerWasmKernels } from './wasm-kernels';
import { fastPath } from './ops/fast';
import { FUSED_KERNELS } from './ops/wasm-fused';
import { guardWasmMalloc } from './ops/wasm-heap';

/** The candidates, in the order `init()` tries them. */
export const BACKEND_CANDIDATES = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as const;
export type BackendCandidate = (typeof BACKEND_CANDIDATES)[number];
/** What may be forced: a candidate, or `tensorflow` (= the first native package that loads). */
export type BackendChoice = BackendCandidate | 'tensorflow';

export interface InitOptions {
  /** Force one backend; default: `process.env.VITPEFT_BACKEND`, else the first candidate that works. */
  backend?: BackendChoice;
  /** Print one line naming the backend in use (default false). */
  verbose?: boolean;
}

export interface CandidateResult {
  candidate: BackendCandidate;
  ok: boolean;
  /** Why it was not used (load error, not installed, shim...). Empty when ok. */
  reason: string;
}

export interface BackendReport {
  /** tfjs backend name in use: 'tensorflow' | 'wasm' | 'cpu'. */
  backend: string;
  /** The candidate that provided it. */
  via: BackendCandidate;
  forced: BackendChoice | null;
  candidates: CandidateResult[];
  versions: Record<string, string>;
  /** Threads the backend computes with (wasm in Node: 1; tensorflow: intra-op threads as reported, else cores). */
  threads: number;
  simd: boolean | null;
  gpu: string | null;
  node: string;
  platform: string;
  cpus: number;
  cpuModel: string;
  customKernels: string[];
  /** Which implementation the ViT's hot ops use (lib/ops/fast.ts): the wasm fused kernels, or the plain ops and why. */
  fastOps: string;
}

let report: BackendReport | null = null;
let pending: Promise<BackendReport> | null = null;

function pkgVersion(name: string): string | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require(`${name}/package.json`).version as string;
  } catch {
    return null;
  }
}

function describeError(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  if (/Cannot find module/.test(msg) && /tfjs-node/.test(msg)) return 'not installed';
  return msg.split('\n')[0];
}

function gpuName(): string | null {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], {
      timeout: 5000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const names = out.toString().trim().split('\n').filter(Boolean);
    return names.length ? names.join(', ') : null;
  } catch {
    return null;
  }
}

async function tryCandidate(c: BackendCandidate): Promise<string> {
  switch (c) {
    case 'tfjs-node-gpu':
    case 'tfjs-node': {
      const pkg = `@tensorflow/${c}`;
      const version = pkgVersion(pkg);
      if (version === null) throw new Error('not installed');
      if (version.endsWith('-shim')) {
        throw new Error(`the installed ${pkg} is the danfojs-node shim (${version}), no native binding`);
      }
      require(pkg); // registers the 'tensorflow' backend on the shared tfjs-core engine
      if (!tf.findBackendFactory('tensorflow')) throw new Error(`${pkg} loaded but registered no 'tensorflow' backend`);
      if (!(await tf.setBackend('tensorflow'))) throw new Error("tf.setBackend('tensorflow') returned false");
      return 'tensorflow';
    }
    case 'wasm': {
      require('@tensorflow/tfjs-backend-wasm');
      if (!(await tf.setBackend('wasm'))) throw new Error("tf.setBackend('wasm') returned false");
      return 'wasm';
    }
    case 'cpu': {
      if (!(await tf.setBackend('cpu'))) throw new Error("tf.setBackend('cpu') returned false");
      return 'cpu';
    }
    default: {
      const never: never = c;
      throw new Error(`unknown candidate ${String(never)}`);
    }
  }
}

function resolveForced(opt: InitOptions): BackendChoice | null {
  const raw = opt.backend ?? process.env.VITPEFT_BACKEND ?? '';
  if (!raw) return null;
  const valid: readonly string[] = [...BACKEND_CANDIDATES, 'tensorflow'];
  if (!valid.includes(raw)) {
    const src = opt.backend ? 'init({backend})' : 'VITPEFT_BACKEND';
    throw new Error(`${src}: unknown backend '${raw}'; valid: ${valid.join(', ')}`);
  }
  return raw as BackendChoice;
}

async function doInit(opt: InitOptions): Promise<BackendReport> {
  const forced = resolveForced(opt);
  const order: BackendCandidate[] =
    forced === null
      ? [...BACKEND_CANDIDATES]
      : forced === 'tensorflow'
        ? ['tfjs-node-gpu', 'tfjs-node']
        : [forced];
  const candidates: CandidateResult[] = [];
  let chosen: { name: string; via: BackendCandidate } | null = null;
  for (const c of order) {
    try {
      const name = await tryCandidate(c);
      candidates.push({ candidate: c, ok: true, reason: '' });
      chosen = { name, via: c };
      break;
    } catch (e) {
      candidates.push({ candidate: c, ok: false, reason: describeError(e) });
    }
  }
  if (!chosen) {
    const lines = candidates.map((r) => `${r.candidate}: ${r.reason}`).join('; ');
    throw new Error(`init(): no backend could be started${forced ? ` (forced '${forced}')` : ''}: ${lines}`);
  }
  const customKernels = chosen.name === 'wasm' ? registerWasmKernels() : [];
  if (chosen.name === 'wasm') guardWasmMalloc(tf.backend()); // an allocation the heap cannot hold throws instead of corrupting
  const fp = fastPath(); // on wasm: installs the fused kernels and the kernel replacements (lib/ops/fast.ts)
  const fastOps = fp.path === 'wasm-fused' ? `wasm-fused: BatchMatMul (2-D XNNPACK), Slice, SplitV, Identity, ${FUSED_KERNELS.join(', ')}` : `plain (${fp.reason})`;
  quietCpuBanner();
  const versions: Record<string, string> = { 'tfjs-core': tf.version_core };
  for (const p of ['@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    const v = pkgVersion(p);
    if (v) versions[p.replace('@tensorflow/', '')] = v;
  }
  let threads = 1;
  let simd: boolean | null = null;
  if (chosen.name === 'wasm') {
    const wasm = require('@tensorflow/tfjs-backend-wasm') as { getThreadsCount(): number };
    threads = wasm.getThreadsCount();
    simd = (await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')) as boolean;
  } else if (chosen.name === 'tensorflow') {
    threads = os.cpus().length;
  }
  const cpuList = os.cpus();
  report = {
    backend: chosen.name,
    via: chosen.via,
    forced,
    candidates,
    versions,
    threads,
    simd,
    gpu: chosen.via === 'tfjs-node-gpu' ? gpuName() : null,
    node: process.version,
    platform: `${os.platform()}-${os.arch()}`,
    cpus: cpuList.length,
    cpuModel: cpuList[0]?.model ?? 'unknown',
    customKernels,
    fastOps,
  };
  if (opt.verbose) console.log(`vitpeft: backend ${report.backend} via ${report.via}`);
  return report;
}

/** The cpu backend prints an "install tfjs-node" banner on first use; the kit reports its backend itself. */
function quietCpuBanner(): void {
  try {
    const cpu = tf.findBackend('cpu') as unknown as { firstUse?: boolean } | null;
    if (cpu) cpu.firstUse = false;
  } catch {
    /* no cpu backend registered */
  }
}

/**
 * Choose and start a backend (idempotent: a second call returns the first report unless a different backend is forced).
 * @returns the backend report (also available later through `backendReport()`).
 */
export async function init(opt: InitOptions = {}): Promise<BackendReport> {
  const forced = resolveForced(opt);
  if (report && (forced === null || forced === report.via || (forced === 'tensorflow' && report.backend === 'tensorflow'))) {
    return report;
  }
  if (pending && forced === null) return pending;
  report = null;
  pending = doInit(opt);
  try {
    return await pending;
  } finally {
    pending = null;
  }
}

/** The report of the last `init()`. Throws if `init()` has not completed. */
export function backendReport(): BackendReport {
  if (!report) throw new Error('backendReport(): call `await init()` first');
  return report;
}

/** True once `init()` has completed. */
export function isInitialised(): boolean {
  return report !== null && tf.getBackend() === report.backend;
}
