/**
 * The WebGPU backend in Node: `@tensorflow/tfjs-backend-webgpu` driven by Dawn through the `webgpu` npm package
 * (both optional dependencies). Nothing here runs unless `init()` tries the `webgpu` candidate (lib/backend.ts).
 *
 * Adapter search (`probeWebgpu`), in order, stopping at the first hardware adapter:
 * 1. Dawn's default backend (Vulkan on Linux, Metal on macOS, D3D12 on Windows), core feature level;
 * 2. Dawn's OpenGL ES backend in compatibility mode (headless EGL: `EGL_PLATFORM=surfaceless` is set when unset).
 * `VITPEFT_WEBGPU_DAWN` (e.g. `backend=vulkan`, `backend=opengles`; comma-separated Dawn flags) replaces the list by
 * that one attempt. A software adapter (Mesa llvmpipe / lavapipe, SwiftShader, or one Dawn flags as fallback) is
 * reported and skipped unless explicitly allowed (`init({backend: 'webgpu'})` / `VITPEFT_BACKEND=webgpu`): on a CPU
 * it runs at about the plain cpu backend's speed, far behind wasm.
 *
 * The device is requested with the adapter's own `maxStorageBuffersPerShaderStage` (the default 8 caps tfjs's AddN
 * at 7 inputs), and `AddN` is re-registered for webgpu to sum in chunks that fit the limit (tfjs-backend-webgpu 4.22
 * binds every input of AddN at once and fails with an invalid pipeline beyond it; its Concat already chunks).
 *
 * Synchronous reads (`dataSync`, `arraySync`, `bufferSync` of a tensor computed on the GPU) cannot work in Node:
 * tfjs-backend-webgpu implements them through the browser's `OffscreenCanvas`, and WebGPU has no blocking read-back.
 * They fail with an error that says to use `await t.data()` / `await t.array()`. Every forward and backward op of the
 * kit runs without reading back; code that reads a number must read it asynchronously on this backend.
 */
import * as tf from '@tensorflow/tfjs';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

/** What the report shows about a WebGPU adapter. */
export interface WebgpuAdapterReport {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Dawn's `isFallbackAdapter` (a CPU implementation standing in for a GPU). */
  fallback: boolean;
  /** Fallback, or a known software rasteriser by name (llvmpipe, lavapipe, softpipe, SwiftShader, ...). */
  software: boolean;
  featureLevel: 'core' | 'compatibility';
  /** The Dawn flags the instance was created with (`[]` = Dawn's default backend). */
  dawnFlags: string[];
  /** The adapter's limits (name → value). */
  limits: Record<string, number>;
}

/** One attempt of the adapter search and what came of it. */
export interface WebgpuProbeAttempt {
  dawnFlags: string[];
  featureLevel: 'core' | 'compatibility';
  /** The adapter found, or null. */
  adapter: WebgpuAdapterReport | null;
  /** Why no adapter (null adapter, load error). Empty when one was found. */
  reason: string;
}

export interface WebgpuProbe {
  attempts: WebgpuProbeAttempt[];
  /** The adapter chosen: the first hardware one, else (when software is allowed) the first software one. */
  chosen: WebgpuAdapterReport | null;
}

const SOFTWARE_RE = /llvmpipe|lavapipe|softpipe|swiftshader|software rasteri[sz]er|microsoft basic render/i;

/** Whether adapter info describes a software implementation (fallback flag or a known software rasteriser). */
export function isSoftwareAdapter(info: { vendor?: string; architecture?: string; device?: string; description?: string; fallback?: boolean }): boolean {
  if (info.fallback) return true;
  return SOFTWARE_RE.test([info.vendor, info.architecture, info.device, info.description].filter(Boolean).join(' '));
}

/** One line naming an adapter, e.g. `llvmpipe-llvm-15-0-6-256-bits (OpenGL ES 3.2 Mesa 22.3.6; software)`. */
export function describeAdapter(a: WebgpuAdapterReport): string {
  const name = [a.vendor, a.architecture, a.device].filter(Boolean).join(' ') || 'unnamed adapter';
  const extra = [a.description, a.software ? 'software' : 'hardware', a.featureLevel, a.dawnFlags.length ? a.dawnFlags.join(',') : 'dawn default'];
  return `${name} (${extra.filter(Boolean).join('; ')})`;
}

/** Minimal typings of what the kit uses from `webgpu` (Dawn for Node) and the WebGPU objects. */
interface GpuAdapterLike {
  info?: { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean };
  isFallbackAdapter?: boolean;
  limits: Record<string, number>;
  features: { has(name: string): boolean };
  requestDevice(desc?: { requiredFeatures?: string[]; requiredLimits?: Record<string, number> }): Promise<GpuDeviceLike>;
}
interface GpuDeviceLike {
  limits: Record<string, number>;
}
interface GpuLike {
  requestAdapter(o?: { powerPreference?: string; featureLevel?: string }): Promise<GpuAdapterLike | null>;
}
interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

/** Dawn instances and adapters stay referenced for the process's life (a collected instance loses its devices). */
const keep: { gpu: GpuLike; adapter: GpuAdapterLike | null }[] = [];
let chosenAdapter: { adapter: GpuAdapterLike; report: WebgpuAdapterReport } | null = null;

function loadDawn(): DawnModule {
  // `webgpu` is an ES module; Node ≥ 20.19 loads it through require (no top-level await in it).
  return require('webgpu') as DawnModule;
}

/** Which Dawn flag sets to try: `VITPEFT_WEBGPU_DAWN` or the default list (see the module note). */
export function dawnAttempts(env: NodeJS.ProcessEnv = process.env): { flags: string[]; featureLevel: 'core' | 'compatibility' }[] {
  const raw = env.VITPEFT_WEBGPU_DAWN;
  if (raw !== undefined && raw.trim() !== '') {
    const flags = raw.split(',').map((s) => s.trim()).filter(Boolean);
    const gl = flags.some((f) => /^backend=(opengl|opengles)$/.test(f));
    return [{ flags, featureLevel: gl ? 'compatibility' : 'core' }];
  }
  return [
    { flags: [], featureLevel: 'core' },
    { flags: ['backend=opengles'], featureLevel: 'compatibility' },
  ];
}

/** Headless EGL needs a platform and a runtime dir; set them for Dawn's GL backend when the user has not. */
function prepareGlEnv(): void {
  if (!process.env.EGL_PLATFORM) process.env.EGL_PLATFORM = 'surfaceless';
  if (!process.env.XDG_RUNTIME_DIR) {
    const dir = path.join(os.tmpdir(), `vitpeft-xdg-${process.getuid ? process.getuid() : 'user'}`);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env.XDG_RUNTIME_DIR = dir;
  }
}

function adapterReport(a: GpuAdapterLike, flags: string[], featureLevel: 'core' | 'compatibility'): WebgpuAdapterReport {
  const info = a.info ?? {};
  const limits: Record<string, number> = {};
  for (const k in a.limits) {
    const v = a.limits[k];
    if (typeof v === 'number') limits[k] = v;
  }
  const r = {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    fallback: Boolean(info.isFallbackAdapter ?? a.isFallbackAdapter ?? false),
  };
  return { ...r, software: isSoftwareAdapter(r), featureLevel, dawnFlags: [...flags], limits };
}

/**
 * Search for a WebGPU adapter (see the module note). Loads Dawn; never throws for a missing package or adapter (the
 * attempts say why).
 * @param allowSoftware choose a software adapter when no hardware one is found
 */
export async function probeWebgpu(opts: { allowSoftware?: boolean } = {}): Promise<WebgpuProbe> {
  const attempts: WebgpuProbeAttempt[] = [];
  let dawn: DawnModule;
  try {
    dawn = loadDawn();
  } catch (e) {
    const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
    return { attempts: [{ dawnFlags: [], featureLevel: 'core', adapter: null, reason: /Cannot find (module|package)/.test(msg) ? 'webgpu (Dawn for Node) not installed' : msg }], chosen: null };
  }
  let software: { adapter: GpuAdapterLike; report: WebgpuAdapterReport } | null = null;
  for (const at of dawnAttempts()) {
    try {
      if (at.flags.some((f) => /^backend=(opengl|opengles)$/.test(f))) prepareGlEnv();
      const gpu = dawn.create(at.flags);
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance', featureLevel: at.featureLevel });
      keep.push({ gpu, adapter });
      if (!adapter) {
        attempts.push({ dawnFlags: at.flags, featureLevel: at.featureLevel, adapter: null, reason: 'no adapter' });
        continue;
      }
      const report = adapterReport(adapter, at.flags, at.featureLevel);
      attempts.push({ dawnFlags: at.flags, featureLevel: at.featureLevel, adapter: report, reason: '' });
      if (!report.software) {
        chosenAdapter = { adapter, report };
        return { attempts, chosen: report };
      }
      software = software ?? { adapter, report };
    } catch (e) {
      attempts.push({ dawnFlags: at.flags, featureLevel: at.featureLevel, adapter: null, reason: e instanceof Error ? e.message.split('\n')[0] : String(e) });
    }
  }
  if (software && opts.allowSoftware) {
    chosenAdapter = software;
    return { attempts, chosen: software.report };
  }
  chosenAdapter = null;
  return { attempts, chosen: null };
}

/** The message of a synchronous read on webgpu in Node. */
export const WEBGPU_SYNC_READ_ERROR =
  'webgpu backend in Node: a synchronous read (dataSync / arraySync / bufferSync) of a tensor computed on the GPU is ' +
  "impossible here (tfjs-backend-webgpu reads synchronously through the browser's OffscreenCanvas); " +
  'use `await t.data()` / `await t.array()`';

interface TensorInfoLike {
  dataId: object;
  shape: number[];
  dtype: string;
}
interface WebgpuBackendLike {
  device: GpuDeviceLike;
  tensorMap?: { get(dataId: object): { values: unknown; dtype: string } | undefined };
  readSync(dataId: object): unknown;
  disposeData(dataId: object, force?: boolean): boolean;
}

let addNInstalled = false;

/**
 * Re-register `AddN` for webgpu: sum in chunks of at most `maxStorageBuffersPerShaderStage − 1` inputs with the
 * stock kernel (one binding is the output), then sum the partial results. Same values up to float summation order.
 */
export function installWebgpuAddN(): void {
  if (addNInstalled) return;
  const stock = tf.getKernel('AddN', 'webgpu');
  if (!stock) throw new Error("installWebgpuAddN: tfjs-backend-webgpu registered no 'AddN' kernel");
  const run = stock.kernelFunc as unknown as (a: { inputs: TensorInfoLike[]; backend: WebgpuBackendLike; attrs: object }) => TensorInfoLike;
  tf.unregisterKernel('AddN', 'webgpu');
  tf.registerKernel({
    kernelName: 'AddN',
    backendName: 'webgpu',
    kernelFunc: ((args: { inputs: unknown; backend: unknown; attrs?: object }) => {
      const backend = args.backend as WebgpuBackendLike;
      let xs = args.inputs as TensorInfoLike[];
      const limit = Math.max(2, (backend.device.limits.maxStorageBuffersPerShaderStage ?? 8) - 1);
      const temps: TensorInfoLike[] = [];
      while (xs.length > limit) {
        const next: TensorInfoLike[] = [];
        for (let i = 0; i < xs.length; i += limit) {
          const chunk = xs.slice(i, i + limit);
          if (chunk.length === 1) {
            next.push(chunk[0]);
          } else {
            const r = run({ inputs: chunk, backend, attrs: {} });
            temps.push(r);
            next.push(r);
          }
        }
        xs = next;
      }
      const out = run({ inputs: xs, backend, attrs: {} });
      for (const t of temps) backend.disposeData(t.dataId);
      return out;
    }) as unknown as tf.KernelFunc,
  });
  addNInstalled = true;
}

/** Make `navigator.gpu` answer with the chosen adapter (Node 20 has no `navigator`; Node ≥ 21 has one without `gpu`). */
function shimNavigator(adapter: GpuAdapterLike): void {
  const gpu = { requestAdapter: async () => adapter, getPreferredCanvasFormat: () => 'rgba8unorm' };
  const g = globalThis as unknown as { navigator?: object };
  if (!g.navigator) {
    Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  } else {
    Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true, writable: true });
  }
}

/**
 * Register the tfjs `webgpu` backend on the adapter chosen by the last `probeWebgpu` (the caller then calls
 * `tf.setBackend('webgpu')`). Also installs the AddN override and the synchronous-read error.
 */
export function registerWebgpuBackend(): WebgpuAdapterReport {
  if (!chosenAdapter) throw new Error('registerWebgpuBackend: no adapter chosen (call probeWebgpu first)');
  const { adapter, report } = chosenAdapter;
  const dawn = loadDawn();
  Object.assign(globalThis, dawn.globals); // GPUBufferUsage, GPUMapMode, ... used by tfjs-backend-webgpu
  shimNavigator(adapter);
  const pkg = require('@tensorflow/tfjs-backend-webgpu') as { WebGPUBackend: new (device: GpuDeviceLike, info: unknown) => WebgpuBackendLike };
  if (tf.findBackendFactory('webgpu')) tf.removeBackend('webgpu'); // the package registers its own when navigator.gpu exists
  tf.registerBackend(
    'webgpu',
    async () => {
      const lim = adapter.limits;
      const requiredLimits: Record<string, number> = {};
      for (const k of ['maxComputeWorkgroupStorageSize', 'maxComputeWorkgroupsPerDimension', 'maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupSizeX', 'maxComputeInvocationsPerWorkgroup', 'maxStorageBuffersPerShaderStage']) {
        if (typeof lim[k] === 'number') requiredLimits[k] = lim[k];
      }
      const requiredFeatures = adapter.features.has('timestamp-query') ? ['timestamp-query'] : [];
      const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
      const backend = new pkg.WebGPUBackend(device, adapter.info);
      const readSync = backend.readSync.bind(backend);
      backend.readSync = (dataId: object): unknown => {
        // data still on the CPU (uploaded, or read once already) can be returned; GPU results cannot (module note)
        const d = backend.tensorMap?.get(dataId);
        if (typeof (globalThis as { OffscreenCanvas?: unknown }).OffscreenCanvas === 'undefined' && d && d.values == null && d.dtype !== 'string' && d.dtype !== 'complex64') {
          throw new Error(WEBGPU_SYNC_READ_ERROR);
        }
        return readSync(dataId);
      };
      return backend as unknown as tf.KernelBackend;
    },
    0,
  );
  installWebgpuAddN();
  return report;
}
