/**
 * Weight initialisers as the reference codebases define them, filled from a seeded `Rng` in JS so that the same seed
 * gives the same weights on every backend.
 *
 * - `truncNormal(std, a=-2, b=2)`: timm/DINOv2 `trunc_normal_` — note that `a`, `b` are *absolute* bounds (±2), not
 *   multiples of std, so with std 0.02 it is effectively an untruncated normal.
 * - `xavierUniform(fanIn, fanOut)`: U(±√(6/(fan_in+fan_out))), MAE's Linear init.
 * - `kaimingUniformA5(fanIn)`: PyTorch's default Linear/Conv init `kaiming_uniform_(a=√5)` = U(±1/√fan_in); also LoRA A.
 */
import { Rng } from './rng';

export type Init =
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'constant'; value: number }
  | { kind: 'normal'; std: number; mean?: number }
  | { kind: 'truncNormal'; std: number; a?: number; b?: number }
  | { kind: 'uniform'; bound: number }
  | { kind: 'xavierUniform'; fanIn: number; fanOut: number }
  | { kind: 'kaimingUniformA5'; fanIn: number };

/** Fill `out` with standard normals (Box-Muller, both values of each pair used). */
function fillNormal(out: Float32Array, rng: Rng): void {
  for (let i = 0; i < out.length; i += 2) {
    let u = rng.next();
    while (u <= 1e-12) u = rng.next();
    const r = Math.sqrt(-2 * Math.log(u));
    const th = 2 * Math.PI * rng.next();
    out[i] = r * Math.cos(th);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(th);
  }
}

/** Fill a new Float32Array of `size` values by `init`. */
export function fillInit(size: number, init: Init, rng: Rng): Float32Array {
  const out = new Float32Array(size);
  switch (init.kind) {
    case 'zeros':
      return out;
    case 'ones':
      return out.fill(1);
    case 'constant':
      return out.fill(init.value);
    case 'normal': {
      const m = init.mean ?? 0;
      fillNormal(out, rng);
      for (let i = 0; i < size; i++) out[i] = m + init.std * out[i];
      return out;
    }
    case 'truncNormal': {
      const a = init.a ?? -2;
      const b = init.b ?? 2;
      if (!(a < b)) throw new Error(`truncNormal: need a < b, got a=${a} b=${b}`);
      fillNormal(out, rng);
      for (let i = 0; i < size; i++) {
        let v = init.std * out[i];
        let tries = 0;
        while ((v < a || v > b) && tries++ < 1000) v = rng.normal(0, init.std); // rejection, as torch's inverse-CDF sampler stays in [a, b]
        out[i] = Math.min(b, Math.max(a, v));
      }
      return out;
    }
    case 'uniform': {
      for (let i = 0; i < size; i++) out[i] = rng.uniform(-init.bound, init.bound);
      return out;
    }
    case 'xavierUniform': {
      const bound = Math.sqrt(6 / (init.fanIn + init.fanOut));
      for (let i = 0; i < size; i++) out[i] = rng.uniform(-bound, bound);
      return out;
    }
    case 'kaimingUniformA5': {
      const bound = 1 / Math.sqrt(init.fanIn);
      for (let i = 0; i < size; i++) out[i] = rng.uniform(-bound, bound);
      return out;
    }
    default: {
      const never: never = init;
      throw new Error(`fillInit: unknown init ${JSON.stringify(never)}`);
    }
  }
}
