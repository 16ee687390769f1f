/**
 * GPU backends without a GPU: the tfjs-node(-gpu) hardening (util.is* polyfill, test op, "did TensorFlow register a
 * GPU device" with the missing CUDA/cuDNN libraries named) against stub packages and a stub native backend, init()'s
 * fall-through from a GPU package without a GPU, and the WebGPU probe's pure parts (device nodes, software adapters,
 * Dawn flag sets). The real WebGPU backend is tested in test/webgpu.test.ts.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import {
  installUtilIsPolyfill,
  findSharedLibraries,
  startTensorflow,
  noGpuMessage,
  TensorflowDeps,
  TF29_GPU_LIBRARIES,
} from '../lib/tensorflow-node';
import { init, backendReport, restoreBackend, BackendReport, gpuDeviceNodes, setTensorflowDepsForTesting, describeProbe } from '../lib/backend';
import { isSoftwareAdapter, dawnAttempts, describeAdapter, WebgpuAdapterReport } from '../lib/webgpu';

const NODE23_REMOVED = ['isBoolean', 'isBuffer', 'isDate', 'isError', 'isFunction', 'isNull', 'isNullOrUndefined', 'isNumber', 'isObject', 'isPrimitive', 'isRegExp', 'isString', 'isSymbol', 'isUndefined', 'isArray'];

describe('tfjs-node(-gpu) hardening: util.is* polyfill', () => {
  it('installs exactly the missing functions with Node semantics and leaves existing ones alone', () => {
    const mine = (v: unknown) => v === 42;
    const util: Record<string, unknown> = { isNumber: mine, types: require('util').types };
    const installed = installUtilIsPolyfill(util);
    assert.deepEqual(installed.sort(), NODE23_REMOVED.filter((n) => n !== 'isNumber').sort());
    assert.equal(util.isNumber, mine, 'an existing function is kept');
    const f = util as Record<string, (v: unknown) => boolean>;
    assert.equal(f.isNullOrUndefined(null), true);
    assert.equal(f.isNullOrUndefined(undefined), true);
    assert.equal(f.isNullOrUndefined(0), false);
    assert.equal(f.isArray([1]), true);
    assert.equal(f.isArray({ length: 1 }), false);
    assert.equal(f.isObject({}), true);
    assert.equal(f.isObject(null), false);
    assert.equal(f.isPrimitive('s'), true);
    assert.equal(f.isPrimitive(() => 1), false);
    assert.equal(f.isDate(new Date()), true);
    assert.equal(f.isRegExp(/x/), true);
    assert.equal(f.isError(new TypeError('x')), true);
    assert.equal(f.isBuffer(Buffer.alloc(1)), true);
    assert.equal(f.isBuffer(new Uint8Array(1)), false);
    assert.equal(f.isSymbol(Symbol('s')), true);
    assert.deepEqual(installUtilIsPolyfill(util), [], 'idempotent');
  });

  it('makes a module that calls util.isNullOrUndefined work where Node removed it (Node ≥ 23, simulated)', () => {
    const util = require('util') as Record<string, unknown>;
    const saved = new Map<string, PropertyDescriptor | undefined>();
    for (const n of NODE23_REMOVED) {
      saved.set(n, Object.getOwnPropertyDescriptor(util, n));
      delete util[n];
    }
    const stubPath = path.join(__dirname, 'fixtures', 'util-is-stub.js');
    try {
      delete require.cache[stubPath];
      const stub = require(stubPath) as { createTensorsTypeOpAttr(n: string, t: unknown): { list: boolean } };
      assert.throws(() => stub.createTensorsTypeOpAttr('T', [1]), /isNullOrUndefined\) is not a function/, 'the stub fails like tfjs-node 4.22 on Node 23');
      const installed = installUtilIsPolyfill();
      assert.ok(installed.includes('isNullOrUndefined') && installed.includes('isArray'));
      assert.deepEqual(stub.createTensorsTypeOpAttr('T', [1]), { name: 'T', list: true });
      assert.throws(() => stub.createTensorsTypeOpAttr('T', null), /Invalid input tensors value/);
    } finally {
      for (const n of NODE23_REMOVED) {
        delete util[n];
        const d = saved.get(n);
        if (d) Object.defineProperty(util, n, d);
      }
      delete require.cache[stubPath];
    }
  });
});

describe('tfjs-node-gpu hardening: CUDA / cuDNN libraries', () => {
  const LDCONFIG = [
    '1234 libs found in cache `/etc/ld.so.cache\'',
    '\tlibcudart.so.11.0 (libc6,x86-64) => /usr/local/cuda/lib64/libcudart.so.11.0',
    '\tlibcublas.so.11 (libc6,x86-64) => /usr/local/cuda/lib64/libcublas.so.11',
    '\tlibcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1',
    '\tlibcuda.so.1 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libcuda.so.1',
  ].join('\n');

  it('finds libraries in LD_LIBRARY_PATH first, then the ldconfig cache (64-bit entries), and names the missing ones', () => {
    const files = new Set(['/opt/cudnn/lib/libcudnn.so.8', '/opt/cudnn/lib/libcublas.so.11']);
    const r = findSharedLibraries(TF29_GPU_LIBRARIES, { ldLibraryPath: '/nowhere:/opt/cudnn/lib', ldconfig: () => LDCONFIG, exists: (f) => files.has(f), extraDirs: [] });
    assert.equal(r.found.get('libcudnn.so.8'), '/opt/cudnn/lib/libcudnn.so.8');
    assert.equal(r.found.get('libcublas.so.11'), '/opt/cudnn/lib/libcublas.so.11', 'LD_LIBRARY_PATH wins over the cache');
    assert.equal(r.found.get('libcudart.so.11.0'), '/usr/local/cuda/lib64/libcudart.so.11.0');
    assert.equal(r.found.get('libcuda.so.1'), '/usr/lib/x86_64-linux-gnu/libcuda.so.1', 'the i386 entry is not taken');
    assert.deepEqual(r.missing, ['libcublasLt.so.11', 'libcufft.so.10', 'libcurand.so.10', 'libcusolver.so.11', 'libcusparse.so.11']);
  });

  it('the no-GPU message names the missing libraries, or says what else to check', () => {
    const m = noGpuMessage('4.22.0', ['libcudnn.so.8', 'libcublasLt.so.11'], 'NVIDIA H200');
    assert.match(m, /registered no GPU device and computes on the CPU: missing libcudnn\.so\.8, libcublasLt\.so\.11 \(it needs CUDA 11\.2 and cuDNN 8\.1/);
    assert.match(m, /the driver sees NVIDIA H200/);
    assert.match(noGpuMessage('4.22.0', [], null), /every CUDA\/cuDNN library it opens was found and nvidia-smi sees no GPU: check CUDA_VISIBLE_DEVICES/);
  });
});

/** A stand-in for tfjs-node's native backend: the cpu backend's kernels under the name 'tensorflow'. */
function fakeTensorflow(opts: { gpu: boolean; brokenAdd?: boolean }): () => void {
  assert.equal(tf.findBackendFactory('tensorflow'), null, 'no real tensorflow backend here');
  const Cpu = (tf.findBackend('cpu') as unknown as { constructor: new () => tf.KernelBackend }).constructor;
  const names: string[] = [];
  for (const k of tf.getKernelsForBackend('cpu')) {
    if (opts.brokenAdd && k.kernelName === 'Add') continue;
    tf.registerKernel({ ...k, backendName: 'tensorflow' });
    names.push(k.kernelName);
  }
  if (opts.brokenAdd) {
    const add = tf.getKernel('Add', 'cpu')!;
    tf.registerKernel({ kernelName: 'Add', backendName: 'tensorflow', kernelFunc: (a) => add.kernelFunc({ ...a, inputs: { a: a.inputs.a, b: a.inputs.a } }) });
    names.push('Add');
  }
  tf.registerBackend('tensorflow', () => Object.assign(new Cpu(), { isUsingGpuDevice: opts.gpu, isGPUPackage: true, firstUse: false }));
  return () => {
    tf.removeBackend('tensorflow');
    for (const n of names) tf.unregisterKernel(n, 'tensorflow');
  };
}

function stubDeps(o: { versions: Record<string, string | null>; gpu: boolean; brokenAdd?: boolean; missing?: string[] }): TensorflowDeps & { loaded: string[] } {
  const loaded: string[] = [];
  let cleanup: (() => void) | null = null;
  const deps = {
    loaded,
    version: (p: string) => o.versions[p] ?? null,
    load: (p: string) => {
      loaded.push(p);
      if (!cleanup) cleanup = fakeTensorflow({ gpu: o.gpu, brokenAdd: o.brokenAdd });
    },
    libraries: (names: readonly string[]) => ({ found: new Map<string, string>(), missing: names.filter((n) => (o.missing ?? []).includes(n)) }),
    driverGpus: () => 'NVIDIA H200',
    polyfill: () => [],
    cleanup: () => cleanup?.(),
  };
  return deps;
}

describe('tfjs-node-gpu hardening: test op and GPU device check (stub native backend)', () => {
  let saved: BackendReport;
  beforeEach(() => {
    saved = backendReport();
  });
  afterEach(async () => {
    setTensorflowDepsForTesting(null);
    await restoreBackend(saved);
    assert.equal(tf.getBackend(), saved.backend);
  });

  it('a GPU package whose TensorFlow registered no GPU: reported with the missing libraries, not a GPU', async () => {
    const deps = stubDeps({ versions: { '@tensorflow/tfjs-node-gpu': '4.22.0' }, gpu: false, missing: ['libcudnn.so.8'] });
    try {
      const r = await startTensorflow('@tensorflow/tfjs-node-gpu', deps);
      assert.equal(r.gpuDevice, false);
      assert.deepEqual(r.missingLibraries, ['libcudnn.so.8']);
      assert.match(r.message, /registered no GPU device.*missing libcudnn\.so\.8.*the driver sees NVIDIA H200/);
      assert.equal(tf.getBackend(), 'tensorflow');
    } finally {
      await restoreBackend(saved);
      (deps as unknown as { cleanup(): void }).cleanup();
    }
  });

  it('a registered GPU device is reported as such; a wrong test-op result, the shim and a missing package are errors', async () => {
    let deps = stubDeps({ versions: { '@tensorflow/tfjs-node-gpu': '4.22.0' }, gpu: true });
    try {
      const r = await startTensorflow('@tensorflow/tfjs-node-gpu', deps);
      assert.equal(r.gpuDevice, true);
      assert.match(r.message, /registered a GPU device \(NVIDIA H200\)/);
    } finally {
      await restoreBackend(saved);
      (deps as unknown as { cleanup(): void }).cleanup();
    }
    deps = stubDeps({ versions: { '@tensorflow/tfjs-node-gpu': '4.22.0' }, gpu: true, brokenAdd: true });
    try {
      await assert.rejects(startTensorflow('@tensorflow/tfjs-node-gpu', deps), /test op 1 \+ 0\.5 gave 2, 4, 6/);
    } finally {
      await restoreBackend(saved);
      (deps as unknown as { cleanup(): void }).cleanup();
    }
    await assert.rejects(startTensorflow('@tensorflow/tfjs-node', stubDeps({ versions: { '@tensorflow/tfjs-node': '3.99.0-shim' }, gpu: false })), /danfojs-node shim/);
    await assert.rejects(startTensorflow('@tensorflow/tfjs-node-gpu', stubDeps({ versions: {}, gpu: false })), /^Error: not installed$/);
  });

  it('init(): tfjs-node-gpu without a GPU is rejected with the reason, and its CPU kernels serve the tfjs-node candidate', async () => {
    const deps = stubDeps({ versions: { '@tensorflow/tfjs-node-gpu': '4.22.0', '@tensorflow/tfjs-node': '3.99.0-shim' }, gpu: false, missing: ['libcudnn.so.8', 'libcufft.so.10'] });
    setTensorflowDepsForTesting(deps);
    const warn = console.warn;
    const warned: string[] = [];
    console.warn = (m: string) => warned.push(m);
    try {
      const r = await init({ backend: 'tensorflow' });
      assert.equal(r.backend, 'tensorflow');
      assert.equal(r.via, 'tfjs-node');
      assert.equal(r.gpu, null, 'no GPU claimed');
      assert.equal(r.tensorflow!.gpuDevice, false);
      assert.deepEqual(r.tensorflow!.missingLibraries, ['libcufft.so.10', 'libcudnn.so.8']);
      const [gpu, cpu] = r.candidates;
      assert.equal(gpu.ok, false);
      assert.match(gpu.reason, /missing libcufft\.so\.10, libcudnn\.so\.8/);
      assert.equal(cpu.ok, true);
      assert.match(cpu.note!, /CPU kernels of tfjs-node-gpu@4\.22\.0 .*danfojs-node shim/);
      // forced, the GPU package without a GPU is an error that names the libraries
      await assert.rejects(init({ backend: 'tfjs-node-gpu' }), /forced 'tfjs-node-gpu'\): tfjs-node-gpu: TensorFlow .* registered no GPU device .*missing libcufft\.so\.10, libcudnn\.so\.8/);
    } finally {
      console.warn = warn;
      setTensorflowDepsForTesting(null);
      await restoreBackend(saved);
      (deps as unknown as { cleanup(): void }).cleanup();
    }
  });
});

describe('webgpu probe helpers (no Dawn loaded)', () => {
  it('GPU device nodes: DRM render nodes, NVIDIA, AMD KFD, WSL; macOS / Windows always probe', () => {
    const tree: Record<string, string[]> = { '/dev/dri': ['card0', 'renderD128'], '/dev': ['null', 'nvidia0', 'nvidiactl', 'nvidia-uvm', 'kfd', 'tty'] };
    const readdir = (d: string) => {
      if (!tree[d]) throw new Error('ENOENT');
      return tree[d];
    };
    assert.deepEqual(gpuDeviceNodes('linux', readdir), ['/dev/dri/renderD128', '/dev/nvidia0', '/dev/kfd']);
    assert.deepEqual(gpuDeviceNodes('linux', () => []), []);
    assert.deepEqual(gpuDeviceNodes('darwin', readdir), ['darwin']);
  });

  it('software adapters are recognised by the fallback flag or by name', () => {
    assert.equal(isSoftwareAdapter({ device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'OpenGL ES 3.2 Mesa 22.3.6' }), true);
    assert.equal(isSoftwareAdapter({ vendor: 'mesa', device: 'llvmpipe (LLVM 15.0.6, 256 bits)' }), true);
    assert.equal(isSoftwareAdapter({ description: 'SwiftShader Device (Subzero)' }), true);
    assert.equal(isSoftwareAdapter({ vendor: 'nvidia', architecture: 'hopper', device: 'NVIDIA H200', fallback: true }), true);
    assert.equal(isSoftwareAdapter({ vendor: 'nvidia', architecture: 'hopper', device: 'NVIDIA H200', description: 'NVIDIA: 570.86' }), false);
  });

  it('Dawn flag sets: default then GL ES compatibility; VITPEFT_WEBGPU_DAWN replaces them', () => {
    assert.deepEqual(dawnAttempts({}), [
      { flags: [], featureLevel: 'core' },
      { flags: ['backend=opengles'], featureLevel: 'compatibility' },
    ]);
    assert.deepEqual(dawnAttempts({ VITPEFT_WEBGPU_DAWN: 'backend=vulkan, adapter=NVIDIA' }), [{ flags: ['backend=vulkan', 'adapter=NVIDIA'], featureLevel: 'core' }]);
    assert.deepEqual(dawnAttempts({ VITPEFT_WEBGPU_DAWN: 'backend=opengl' }), [{ flags: ['backend=opengl'], featureLevel: 'compatibility' }]);
  });

  it('the probe summary says which attempt found what', () => {
    const sw: WebgpuAdapterReport = { vendor: '', architecture: '', device: 'llvmpipe-llvm-15', description: 'OpenGL ES 3.2 Mesa 22.3.6', fallback: false, software: true, featureLevel: 'compatibility', dawnFlags: ['backend=opengles'], limits: {} };
    const s = describeProbe({ attempts: [
      { dawnFlags: [], featureLevel: 'core', adapter: null, reason: 'no adapter' },
      { dawnFlags: ['backend=opengles'], featureLevel: 'compatibility', adapter: sw, reason: '' },
    ], chosen: null });
    assert.equal(s, 'dawn default: no adapter; backend=opengles: software adapter skipped llvmpipe-llvm-15 (OpenGL ES 3.2 Mesa 22.3.6; software; compatibility; backend=opengles)');
    assert.equal(describeAdapter(sw), 'llvmpipe-llvm-15 (OpenGL ES 3.2 Mesa 22.3.6; software; compatibility; backend=opengles)');
  });

  it('on a machine without a GPU device node, init() never loads Dawn', function () {
    const r = backendReport();
    if (r.forced || gpuDeviceNodes().length > 0) this.skip();
    const w = r.candidates.find((c) => c.candidate === 'webgpu');
    if (!w) this.skip();
    assert.match(w!.reason, /no GPU device node .* not probed/);
    if (process.platform === 'linux') assert.ok(!fs.readFileSync('/proc/self/maps', 'utf8').includes('dawn.node'), 'dawn.node is not mapped into this process');
  });
});
