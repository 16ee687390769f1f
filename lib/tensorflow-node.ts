/**
 * The native TensorFlow backend through `@tensorflow/tfjs-node-gpu` / `@tensorflow/tfjs-node` 4.22, made to fail
 * loudly instead of silently (used by `init()`, lib/backend.ts):
 *
 * - **`util.is*` polyfill.** tfjs-node 4.22 calls `util.isNullOrUndefined` and `util.isArray` (op attributes, TopK).
 *   Node 23 removed most legacy `util.is*` functions, so there the first op throws `(0, util_1.isNullOrUndefined) is
 *   not a function` (upstream fix tensorflow/tfjs#8425 merged, never released). `installUtilIsPolyfill` puts back the
 *   missing ones with Node's documented semantics before the package loads; existing functions are left alone.
 * - **A test op.** Loading the package proves nothing about running it: `startTensorflow` runs a small op and reads it
 *   back before the backend is accepted.
 * - **Is the GPU really used?** TensorFlow lists its devices when the binding starts and falls back to the CPU
 *   silently when CUDA / cuDNN libraries are missing. The binding reports the outcome (`isUsingGpuDevice`, from
 *   `TFE_ContextListDevices` in tfjs-node's `tfjs_backend.cc`); `nvidia-smi` only says a driver sees a GPU. When no
 *   GPU device was registered, `findSharedLibraries` looks for the libraries libtensorflow 2.9.1 opens (CUDA 11.2 /
 *   cuDNN 8.1 sonames) in `LD_LIBRARY_PATH` and the `ldconfig` cache, and the message names the missing ones.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync } from 'child_process';

type UtilLike = Record<string, unknown> & { types?: { isDate?(v: unknown): boolean; isRegExp?(v: unknown): boolean; isNativeError?(v: unknown): boolean } };

/** The legacy `util.is*` functions (Node docs, DEP0044–DEP0058) with their documented semantics. */
function legacyIs(util: UtilLike): Record<string, (v: unknown) => boolean> {
  return {
    isArray: (v) => Array.isArray(v),
    isBoolean: (v) => typeof v === 'boolean',
    isBuffer: (v) => Buffer.isBuffer(v),
    isDate: (v) => (util.types?.isDate ? util.types.isDate(v) : v instanceof Date),
    isError: (v) => (util.types?.isNativeError ? util.types.isNativeError(v) : false) || v instanceof Error,
    isFunction: (v) => typeof v === 'function',
    isNull: (v) => v === null,
    isNullOrUndefined: (v) => v === null || v === undefined,
    isNumber: (v) => typeof v === 'number',
    isObject: (v) => v !== null && typeof v === 'object',
    isPrimitive: (v) => v === null || (typeof v !== 'object' && typeof v !== 'function'),
    isRegExp: (v) => (util.types?.isRegExp ? util.types.isRegExp(v) : v instanceof RegExp),
    isString: (v) => typeof v === 'string',
    isSymbol: (v) => typeof v === 'symbol',
    isUndefined: (v) => v === undefined,
  };
}

/**
 * Put back the legacy `util.is*` functions a Node version removed (Node ≥ 23), on the shared `util` module object, so
 * that a CommonJS package calling `util.isNullOrUndefined(x)` works. Functions that exist are not replaced.
 * @returns the names installed (empty on Node ≤ 22)
 */
export function installUtilIsPolyfill(util: UtilLike = require('util') as UtilLike): string[] {
  const installed: string[] = [];
  for (const [name, fn] of Object.entries(legacyIs(util))) {
    if (typeof util[name] !== 'function') {
      Object.defineProperty(util, name, { value: fn, writable: true, configurable: true, enumerable: true });
      installed.push(name);
    }
  }
  return installed;
}

/** The shared libraries libtensorflow 2.9.1 (inside tfjs-node-gpu 4.22) opens for its GPU device: CUDA 11.2, cuDNN 8.1. */
export const TF29_GPU_LIBRARIES: readonly string[] = [
  'libcuda.so.1', // driver
  'libcudart.so.11.0',
  'libcublas.so.11',
  'libcublasLt.so.11',
  'libcufft.so.10',
  'libcurand.so.10',
  'libcusolver.so.11',
  'libcusparse.so.11',
  'libcudnn.so.8',
];

export interface LibrarySearch {
  /** LD_LIBRARY_PATH (default: the process's). */
  ldLibraryPath?: string;
  /** Output of `ldconfig -p` (default: run it; '' when it cannot run). */
  ldconfig?: () => string;
  /** File test (default fs.existsSync). */
  exists?: (file: string) => boolean;
  /** CPU architecture whose ldconfig entries count (default process.arch). */
  arch?: string;
  /** Extra directories searched last (default: /usr/local/cuda/lib64, /usr/local/nvidia/lib64, /usr/lib/x86_64-linux-gnu). */
  extraDirs?: readonly string[];
}

function runLdconfig(): string {
  for (const bin of ['/sbin/ldconfig', '/usr/sbin/ldconfig', 'ldconfig']) {
    try {
      return execFileSync(bin, ['-p'], { timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    } catch {
      /* next */
    }
  }
  return '';
}

/**
 * Where the dynamic loader would find each library: `LD_LIBRARY_PATH` first, then the `ldconfig` cache, then a few
 * usual CUDA directories. @returns found (name → path) and missing names, in the order given.
 */
export function findSharedLibraries(names: readonly string[], s: LibrarySearch = {}): { found: Map<string, string>; missing: string[] } {
  const exists = s.exists ?? ((f: string) => fs.existsSync(f));
  const dirs = (s.ldLibraryPath ?? process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean);
  const cache = new Map<string, string>();
  // ldconfig tags 64-bit entries "(libc6,x86-64)" / "(libc6,AArch64)"; plain "(libc6)" ones are 32-bit there
  const abi = (s.arch ?? process.arch) === 'x64' ? /x86-64/ : (s.arch ?? process.arch) === 'arm64' ? /AArch64/ : /./;
  for (const line of (s.ldconfig ?? runLdconfig)().split('\n')) {
    const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)\s*$/.exec(line);
    if (m && !cache.has(m[1]) && abi.test(m[2])) cache.set(m[1], m[3]);
  }
  const extra = s.extraDirs ?? ['/usr/local/cuda/lib64', '/usr/local/nvidia/lib64', '/usr/lib/x86_64-linux-gnu'];
  const found = new Map<string, string>();
  const missing: string[] = [];
  for (const n of names) {
    const inPath = dirs.map((d) => path.join(d, n)).find(exists);
    const hit = inPath ?? cache.get(n) ?? extra.map((d) => path.join(d, n)).find(exists);
    if (hit) found.set(n, hit);
    else missing.push(n);
  }
  return { found, missing };
}

/** GPU names the NVIDIA driver reports (`nvidia-smi`), or null. Only a hint: it says nothing about TensorFlow. */
export function nvidiaSmiNames(): string | null {
  try {
    const out = execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
    const names = out.toString().trim().split('\n').filter(Boolean);
    return names.length ? names.join(', ') : null;
  } catch {
    return null;
  }
}

/** What `init()` found out about the native TensorFlow backend. */
export interface TensorflowGpuReport {
  /** The package that provided the backend. */
  package: string;
  /** TensorFlow registered a GPU device (the binding's own answer). */
  gpuDevice: boolean;
  /** GPU-library sonames not found (only searched when the GPU package registered no GPU). */
  missingLibraries: string[];
  /** `nvidia-smi` GPU names (a hint only), or null. */
  driverGpus: string | null;
  /** Legacy `util.is*` functions the polyfill installed (Node ≥ 23). */
  polyfilled: string[];
  /** One sentence for the report; for a GPU package without a GPU device it names what is missing. */
  message: string;
}

/** The message for a GPU package whose TensorFlow registered no GPU device. */
export function noGpuMessage(pkgVersion: string, missing: readonly string[], driverGpus: string | null): string {
  const head = `TensorFlow (libtensorflow 2.9.1 in tfjs-node-gpu ${pkgVersion}) registered no GPU device and computes on the CPU`;
  if (missing.length) {
    return `${head}: missing ${missing.join(', ')} (it needs CUDA 11.2 and cuDNN 8.1 libraries; searched LD_LIBRARY_PATH and the ldconfig cache)` +
      (driverGpus ? `; the driver sees ${driverGpus}` : '') + '. Install them, or use environment/Dockerfile.gpu';
  }
  return `${head}, although every CUDA/cuDNN library it opens was found` +
    (driverGpus ? ` and the driver sees ${driverGpus}` : ' and nvidia-smi sees no GPU') +
    ': check CUDA_VISIBLE_DEVICES, the driver version (CUDA 11.x needs ≥ 450.80) and TensorFlow\'s log on stderr';
}

/** What `startTensorflow` needs from outside (tests pass stubs). */
export interface TensorflowDeps {
  version(pkg: string): string | null;
  load(pkg: string): void;
  libraries(names: readonly string[]): { found: Map<string, string>; missing: string[] };
  driverGpus(): string | null;
  polyfill(): string[];
}

export const REAL_TENSORFLOW_DEPS: TensorflowDeps = {
  version(pkg) {
    try {
      return (require(`${pkg}/package.json`) as { version: string }).version;
    } catch {
      return null;
    }
  },
  load(pkg) {
    require(pkg);
  },
  libraries: (names) => findSharedLibraries(names),
  driverGpus: nvidiaSmiNames,
  polyfill: () => installUtilIsPolyfill(),
};

/**
 * Load `pkg` (tfjs-node-gpu or tfjs-node), switch to its `tensorflow` backend, run a test op and ask the binding
 * whether TensorFlow registered a GPU device. For the GPU package without one, the report's message names the missing
 * CUDA/cuDNN libraries (the caller decides whether that is acceptable).
 * Throws with a reason on any failure (not installed, the danfojs shim, load error, failing test op).
 */
export async function startTensorflow(pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node', deps: TensorflowDeps = REAL_TENSORFLOW_DEPS): Promise<TensorflowGpuReport> {
  const version = deps.version(pkg);
  if (version === null) throw new Error('not installed');
  if (version.endsWith('-shim')) throw new Error(`the installed ${pkg} is the danfojs-node shim (${version}), no native binding`);
  const polyfilled = deps.polyfill();
  deps.load(pkg); // registers the 'tensorflow' backend on the shared tfjs-core engine
  if (!tf.findBackendFactory('tensorflow')) throw new Error(`${pkg} loaded but registered no 'tensorflow' backend`);
  if (!(await tf.setBackend('tensorflow'))) throw new Error("tf.setBackend('tensorflow') returned false");
  const got = tf.tidy(() => tf.add(tf.tensor1d([1, 2, 3]), tf.scalar(0.5)).dataSync());
  if (!(got[0] === 1.5 && got[1] === 2.5 && got[2] === 3.5)) throw new Error(`test op 1 + 0.5 gave ${Array.from(got).join(', ')}`);
  const backend = tf.backend() as unknown as { isUsingGpuDevice?: boolean; isGPUPackage?: boolean };
  const gpuDevice = backend.isUsingGpuDevice === true;
  const gpuPackage = pkg === '@tensorflow/tfjs-node-gpu' || backend.isGPUPackage === true;
  const driverGpus = deps.driverGpus();
  let missing: string[] = [];
  let message: string;
  if (gpuDevice) {
    message = `TensorFlow registered a GPU device${driverGpus ? ` (${driverGpus})` : ''}`;
  } else if (gpuPackage) {
    missing = deps.libraries(TF29_GPU_LIBRARIES).missing;
    message = noGpuMessage(version, missing, driverGpus);
  } else {
    message = 'TensorFlow CPU build (no GPU expected)';
  }
  return { package: `${pkg.replace('@tensorflow/', '')}@${version}`, gpuDevice, missingLibraries: missing, driverGpus, polyfilled, message };
}
