/**
 * Backend selection for the kit.
 *
 * `init()` picks, in order: the native TensorFlow backend through `@tensorflow/tfjs-node-gpu` (CUDA) — accepted only
 * when TensorFlow really registered a GPU device —, then WebGPU (`@tensorflow/tfjs-backend-webgpu` on Dawn, the
 * `webgpu` package; only a hardware adapter, lib/webgpu.ts), then native TensorFlow on the CPU
 * (`@tensorflow/tfjs-node`, or the CPU kernels of an installed tfjs-node-gpu without a GPU), then `wasm`
 * (`@tensorflow/tfjs-backend-wasm`, SIMD, the embedded default), then the plain JavaScript `cpu` backend. Nothing
 * happens at import time (the library is loaded through `require` by tslab, so there is no top-level await
 * anywhere): call `await init()` once before building models.
 *
 * A backend can be forced with `init({backend})` or the environment variable `VITPEFT_BACKEND`
 * (`tfjs-node-gpu | webgpu | tfjs-node | tensorflow | wasm | cpu`). A forced backend that fails to load is an error,
 * never a silent fallback; forcing `webgpu` also accepts a software adapter (Mesa llvmpipe: how CI tests it). Every
 * candidate that was tried is recorded with the reason it failed, see `backendReport()`.
 *
 * The CUDA path (environment/GPU.md): `npm install` tries `@tensorflow/tfjs-node-gpu` as an optional dependency; its
 * install script downloads libtensorflow, and where that host is unreachable npm drops the package silently. When it
 * is there, `init()` installs the `util.is*` polyfill Node ≥ 23 needs, loads it inside try/catch, runs a test op and
 * asks the binding whether TensorFlow registered a GPU device (lib/tensorflow-node.ts); without one the report names
 * the missing CUDA/cuDNN libraries. The WebGPU path is only probed where a GPU device node exists (/dev/dri/renderD*,
 * /dev/nvidia*, ...; always on macOS / Windows) or when forced, so CPU-only Linux machines never load Dawn.
 * On both GPU backends every op of the kit runs through the plain tfjs ops; the wasm custom kernels and fast paths
 * are registered for `wasm` alone.
 */
import * as tf from '@tensorflow/tfjs';
import * as os from 'os';
import * as fs from 'fs';
import { registerWasmKernels } from './wasm-kernels';
import { startTensorflow, TensorflowGpuReport, TensorflowDeps, REAL_TENSORFLOW_DEPS } from './tensorflow-node';
import { probeWebgpu, registerWebgpuBackend, describeAdapter, WebgpuAdapterReport, WebgpuProbe } from './webgpu';
import { fastPath } from './ops/fast';
import { FUSED_KERNELS } from './ops/wasm-fused';

/** The candidates, in the order `init()` tries them. */
export const BACKEND_CANDIDATES = ['tfjs-node-gpu', 'webgpu', 'tfjs-node', 'wasm', 'cpu'] as const;
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
  /** For a candidate that was used: how (e.g. tfjs-node served by tfjs-node-gpu's CPU kernels). */
  note?: string;
}

export interface BackendReport {
  /** tfjs backend name in use: 'tensorflow' | 'webgpu' | 'wasm' | 'cpu'. */
  backend: string;
  /** The candidate that provided it. */
  via: BackendCandidate;
  forced: BackendChoice | null;
  candidates: CandidateResult[];
  versions: Record<string, string>;
  /** CPU threads the backend computes with (wasm in Node: 1; tensorflow: cores; webgpu: 1, the JS thread driving it). */
  threads: number;
  simd: boolean | null;
  /**
   * The GPU the backend computes on, or null: for tensorflow the GPU TensorFlow registered (never inferred from
   * nvidia-smi alone), for webgpu a hardware adapter.
   */
  gpu: string | null;
  /** The WebGPU adapter the probe found (used, or skipped as software), or null when not probed / none found. */
  adapter: WebgpuAdapterReport | null;
  /** Native TensorFlow: the package, whether TensorFlow registered a GPU device, missing CUDA/cuDNN libraries. */
  tensorflow: TensorflowGpuReport | null;
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

/** GPU device nodes on Linux (DRM render nodes, NVIDIA, AMD KFD, WSL); other platforms always have a WebGPU API. */
export function gpuDeviceNodes(platform: string = process.platform, readdir: (d: string) => string[] = (d) => fs.readdirSync(d)): string[] {
  if (platform === 'darwin' || platform === 'win32') return [platform];
  const out: string[] = [];
  const list = (d: string): string[] => {
    try {
      return readdir(d);
    } catch {
      return [];
    }
  };
  for (const f of list('/dev/dri')) if (/^renderD\d+$/.test(f)) out.push(`/dev/dri/${f}`);
  for (const f of list('/dev')) if (/^nvidia\d+$/.test(f) || f === 'kfd' || f === 'dxg') out.push(`/dev/${f}`);
  return out;
}

/** Why a probe chose no adapter, in one line. */
export function describeProbe(p: WebgpuProbe): string {
  const parts = p.attempts.map((a) => {
    const where = a.dawnFlags.length ? a.dawnFlags.join(',') : 'dawn default';
    if (!a.adapter) return `${where}: ${a.reason}`;
    return `${where}: ${a.adapter.software ? 'software adapter skipped' : 'adapter'} ${describeAdapter(a.adapter)}`;
  });
  return parts.join('; ');
}

let tensorflowDeps: TensorflowDeps = REAL_TENSORFLOW_DEPS;

/**
 * Replace how `init()` loads and probes tfjs-node(-gpu) (tests with stub packages and libraries); `null` restores the
 * real loader.
 */
export function setTensorflowDepsForTesting(deps: TensorflowDeps | null): void {
  tensorflowDeps = deps ?? REAL_TENSORFLOW_DEPS;
}

/** State of one `init()` run shared between candidates. */
interface InitState {
  forced: BackendChoice | null;
  tensorflow: TensorflowGpuReport | null;
  /** tfjs-node-gpu loaded but without a GPU device: its CPU kernels can serve the tfjs-node candidate. */
  gpuPackageWithoutGpu: TensorflowGpuReport | null;
  adapter: WebgpuAdapterReport | null;
  note: string;
}

async function tryCandidate(c: BackendCandidate, st: InitState): Promise<string> {
  st.note = '';
  switch (c) {
    case 'tfjs-node-gpu': {
      const r = await startTensorflow('@tensorflow/tfjs-node-gpu', tensorflowDeps);
      if (!r.gpuDevice) {
        st.gpuPackageWithoutGpu = r; // its CPU kernels can still serve the tfjs-node candidate
        throw new Error(r.message);
      }
      st.tensorflow = r;
      return 'tensorflow';
    }
    case 'webgpu': {
      const forced = st.forced === 'webgpu';
      if (!forced) {
        const nodes = gpuDeviceNodes();
        if (nodes.length === 0) {
          throw new Error('no GPU device node (/dev/dri/renderD*, /dev/nvidia*, /dev/kfd, /dev/dxg): not probed (VITPEFT_BACKEND=webgpu forces it)');
        }
      }
      const probe = await probeWebgpu({ allowSoftware: forced });
      st.adapter = probe.chosen ?? probe.attempts.map((a) => a.adapter).find((a): a is WebgpuAdapterReport => a !== null) ?? null;
      if (!probe.chosen) {
        throw new Error(`no usable WebGPU adapter: ${describeProbe(probe)}${forced ? '' : ' (VITPEFT_BACKEND=webgpu accepts a software adapter)'}`);
      }
      registerWebgpuBackend();
      if (!(await tf.setBackend('webgpu'))) throw new Error("tf.setBackend('webgpu') returned false");
      // a test op big enough to run on the GPU (tfjs hands ops on small CPU-resident inputs to CPU kernels)
      const y = tf.tidy(() => tf.matMul(tf.ones([32, 32]), tf.fill([32, 32], 0.5)));
      const got = await y.data();
      y.dispose();
      if (!got.every((v) => v === 16)) throw new Error(`webgpu test op (ones · 0.5)[32×32] gave ${got[0]}, ${got[1]}, … (expected 16)`);
      return 'webgpu';
    }
    case 'tfjs-node': {
      try {
        st.tensorflow = await startTensorflow('@tensorflow/tfjs-node', tensorflowDeps);
      } catch (e) {
        if (!st.gpuPackageWithoutGpu) throw e;
        if (!(await tf.setBackend('tensorflow'))) throw e;
        st.tensorflow = st.gpuPackageWithoutGpu;
        st.note = `native TensorFlow CPU kernels of ${st.gpuPackageWithoutGpu.package} (no GPU device; @tensorflow/tfjs-node itself: ${describeError(e)})`;
      }
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
  const st: InitState = { forced, tensorflow: null, gpuPackageWithoutGpu: null, adapter: null, note: '' };
  for (const c of order) {
    try {
      const name = await tryCandidate(c, st);
      candidates.push(st.note ? { candidate: c, ok: true, reason: '', note: st.note } : { candidate: c, ok: true, reason: '' });
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
  const customKernels = chosen.name === 'wasm' ? registerWasmKernels() : chosen.name === 'webgpu' ? ['AddN (chunked to the storage-buffer limit)'] : [];
  const fp = fastPath(); // on wasm: installs the fused kernels and the kernel replacements (lib/ops/fast.ts)
  const fastOps = fp.path === 'wasm-fused' ? `wasm-fused: BatchMatMul (2-D XNNPACK), Slice, SplitV, Identity, ${FUSED_KERNELS.join(', ')}` : `plain (${fp.reason})`;
  quietCpuBanner();
  const versions: Record<string, string> = { 'tfjs-core': tf.version_core };
  for (const p of ['@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node', '@tensorflow/tfjs-backend-webgpu', 'webgpu']) {
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
    gpu:
      chosen.name === 'tensorflow'
        ? st.tensorflow?.gpuDevice
          ? st.tensorflow.driverGpus ?? 'GPU (TensorFlow device)'
          : null
        : chosen.name === 'webgpu' && st.adapter && !st.adapter.software
          ? describeAdapter(st.adapter)
          : null,
    adapter: st.adapter,
    tensorflow: chosen.name === 'tensorflow' ? st.tensorflow : null,
    node: process.version,
    platform: `${os.platform()}-${os.arch()}`,
    cpus: cpuList.length,
    cpuModel: cpuList[0]?.model ?? 'unknown',
    customKernels,
    fastOps,
  };
  if (opt.verbose) console.log(`vitpeft: backend ${report.backend} via ${report.via}${report.gpu ? ` on ${report.gpu}` : ''}`);
  // a CUDA package that fell back to the CPU is worth a line even when not verbose
  if (st.gpuPackageWithoutGpu && !forced) console.warn(`vitpeft: ${st.gpuPackageWithoutGpu.message}`);
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
 * Choose and start a backend (idempotent: a second call returns the first report unless a different backend is forced
 * or the active tfjs backend was switched since).
 * @returns the backend report (also available later through `backendReport()`).
 */
export async function init(opt: InitOptions = {}): Promise<BackendReport> {
  const forced = resolveForced(opt);
  const same = report && (forced === null || forced === report.via || (forced === 'tensorflow' && report.backend === 'tensorflow'));
  if (report && same && tf.getBackend() === report.backend) {
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

/**
 * Go back to a backend an earlier `init()` reported (after trying another one): switches tfjs to it and makes it the
 * current report again, so `backendReport()` and `isInitialised()` answer as before the detour.
 */
export async function restoreBackend(saved: BackendReport): Promise<BackendReport> {
  if (!(await tf.setBackend(saved.backend))) throw new Error(`restoreBackend: tf.setBackend('${saved.backend}') returned false`);
  report = saved;
  return saved;
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
