/**
 * The kit's WebAssembly SIMD kernels, assembled into one module that imports the tfjs wasm backend's own
 * `WebAssembly.Memory`, so the kernels read and write tensor data in place (pointers are heap byte offsets).
 *
 * Emitted at run time by lib/ops/wasm-encode.ts (no toolchain, no binary in the repo); kernels in
 * lib/ops/wasm-simd-gelu.ts (GELU and its gradient) and lib/ops/wasm-simd-ln.ts (LayerNorm and its gradients).
 * Where WebAssembly SIMD is unavailable or the module does not validate, `simdKernels` returns null and callers use
 * their JS loops.
 */
import type { WasmMemoryLike } from './wasm-heap';
import { I32, moduleBytes } from './wasm-encode';
import { geluBody, geluGradBody } from './wasm-simd-gelu';
import { layerNormBody, layerNormGradBetaBody, layerNormGradGammaBody, layerNormGradXBody } from './wasm-simd-ln';

export interface SimdKernels {
  /** out = gelu(x) for n floats, n a multiple of 16. */
  gelu(x: number, out: number, n: number): void;
  /** out = dy·gelu'(x) for n floats, n a multiple of 16. */
  geluGrad(dy: number, x: number, out: number, n: number): void;
  /** LayerNorm of M rows of width D (a multiple of 4); writes mean and rstd per row. */
  layerNorm(x: number, gamma: number, beta: number, y: number, mean: number, rstd: number, M: number, D: number, eps: number): void;
  layerNormGradX(dy: number, x: number, gamma: number, mean: number, rstd: number, out: number, M: number, D: number): void;
  /** out += Σ_rows dy ⊙ x̂ */
  layerNormGradGamma(dy: number, x: number, mean: number, rstd: number, out: number, M: number, D: number): void;
  /** out += Σ_rows dy */
  layerNormGradBeta(dy: number, out: number, M: number, D: number): void;
}

/** The module bytes. */
export function simdModuleBytes(): Uint8Array {
  const ln = layerNormBody();
  const lnx = layerNormGradXBody();
  const lng = layerNormGradGammaBody();
  const lnb = layerNormGradBetaBody();
  return moduleBytes([
    { name: 'gelu', params: [I32, I32, I32], body: geluBody() },
    { name: 'geluGrad', params: [I32, I32, I32, I32], body: geluGradBody() },
    { name: 'layerNorm', params: ln.params, body: ln.body },
    { name: 'layerNormGradX', params: lnx.params, body: lnx.body },
    { name: 'layerNormGradGamma', params: lng.params, body: lng.body },
    { name: 'layerNormGradBeta', params: lnb.params, body: lnb.body },
  ]);
}

/** The global WebAssembly API (typed locally: tslab's TypeScript lib has no `WebAssembly` namespace). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

const cache = new WeakMap<WasmMemoryLike, SimdKernels | null>();

/**
 * The kernels instantiated over `memory` (once per memory), or null where WebAssembly SIMD is unavailable or the
 * module does not validate (the callers then use their JS loops).
 */
export function simdKernels(memory: WasmMemoryLike | undefined): SimdKernels | null {
  if (!memory) return null;
  if (cache.has(memory)) return cache.get(memory)!;
  let k: SimdKernels | null = null;
  try {
    const bytes = simdModuleBytes();
    if (WA.validate(bytes)) {
      const inst = new WA.Instance(new WA.Module(bytes), { env: { memory } });
      k = inst.exports as unknown as SimdKernels;
    }
  } catch {
    k = null;
  }
  cache.set(memory, k);
  return k;
}
