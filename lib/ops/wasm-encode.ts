/**
 * A minimal WebAssembly binary encoder for the kit's hand-written SIMD kernels (lib/ops/wasm-simd*.ts): LEB128,
 * sections, and expression helpers for the few instructions used (core 1.0 numeric/memory/control instructions and
 * the fixed-width SIMD opcodes after the 0xFD prefix, as in the WebAssembly SIMD binary encoding). Expressions are
 * byte arrays composed in stack order: `add(a, b)` = a, b, f32x4.add.
 */

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** A name (ASCII only: the kit's export and import names), length-prefixed. */
export function str(s: string): number[] {
  const b = Array.from(s, (c) => {
    const code = c.charCodeAt(0);
    if (code > 0x7f) throw new Error(`wasm-encode: non-ASCII name '${s}'`);
    return code;
  });
  return [...uleb(b.length), ...b];
}

export function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

export function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

export type Code = number[];
export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;

export const get = (i: number): Code => [0x20, ...uleb(i)];
export const set = (i: number, e: Code): Code => [...e, 0x21, ...uleb(i)];
export const i32c = (v: number): Code => [0x41, ...sleb(v)];
export const simd = (op: number): Code => [0xfd, ...uleb(op)];
/** v128.const with four equal lanes from 4 little-endian bytes of one lane. */
export function v128const(lane: (dv: DataView) => void): Code {
  const b = new Uint8Array(16);
  const dv = new DataView(b.buffer);
  for (let k = 0; k < 4; k++) lane(new DataView(b.buffer, 4 * k, 4));
  void dv;
  return [...simd(0x0c), ...b];
}

/**
 * Constants used inside loops live in v128 locals initialised once before the loop (a v128.const inside the loop
 * body is re-materialised on every iteration by V8). `pool.f(c)` / `pool.i(c)` return a local.get of the constant.
 */
export class Pool {
  private readonly map = new Map<string, { local: number; init: Code }>();
  constructor(private next: number) {}
  private get(key: string, init: () => Code): Code {
    let e = this.map.get(key);
    if (!e) {
      e = { local: this.next++, init: init() };
      this.map.set(key, e);
    }
    return get(e.local);
  }
  f(c: number): Code {
    return this.get(`f${c}`, () => v128const((dv) => dv.setFloat32(0, c, true)));
  }
  i(c: number): Code {
    return this.get(`i${c}`, () => v128const((dv) => dv.setInt32(0, c, true)));
  }
  /** Number of v128 locals used by constants. */
  get count(): number {
    return this.map.size;
  }
  /** Code that fills the constant locals. */
  init(): Code {
    return [...this.map.values()].flatMap((e) => set(e.local, e.init));
  }
}

export const bin = (op: number) => (a: Code, b: Code): Code => [...a, ...b, ...simd(op)];
export const add = bin(0xe4);
export const sub = bin(0xe5);
export const mul = bin(0xe6);
export const div = bin(0xe7);
export const pmax = bin(0xeb); // f32x4.pmax: b > a ? b : a (one maxps; no NaN canonicalisation needed here)
export const ge = bin(0x46); // f32x4.ge
export const and = bin(0x4e); // v128.and
export const iadd = bin(0xae); // i32x4.add
export const ishl = (a: Code, s: number): Code => [...a, ...i32c(s), ...simd(0xab)]; // i32x4.shl
export const bitselect = (a: Code, b: Code, c: Code): Code => [...a, ...b, ...c, ...simd(0x52)];

// scalar and lane helpers
export const f32c = (v: number): Code => {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setFloat32(0, v, true);
  return [0x43, ...b];
};
export const splat = (a: Code): Code => [...a, ...simd(0x13)]; // f32x4.splat
export const lane = (a: Code, i: number): Code => [...a, ...simd(0x1f), i]; // f32x4.extract_lane
/** Horizontal sum of the 4 lanes of a v128 local → f32. */
export const hsum = (v: number): Code => [...lane(get(v), 0), ...lane(get(v), 1), 0x92, ...lane(get(v), 2), 0x92, ...lane(get(v), 3), 0x92];
export const fadd = (a: Code, b: Code): Code => [...a, ...b, 0x92];
export const fdiv = (a: Code, b: Code): Code => [...a, ...b, 0x95];
export const fsqrt = (a: Code): Code => [...a, 0x91];
export const i32add = (a: Code, b: Code): Code => [...a, ...b, 0x6a];
export const i32shl2 = (a: Code): Code => [...a, ...i32c(2), 0x74];
export const u32ToF32 = (a: Code): Code => [...a, 0xb3]; // f32.convert_i32_u
export const f32load = (addr: Code): Code => [...addr, 0x2a, 2, 0];
export const f32store = (addr: Code, v: Code): Code => [...addr, ...v, 0x38, 2, 0];
export const vload = (addr: Code, offset = 0): Code => [...addr, ...simd(0x00), 0, ...uleb(offset)];
export const vstore = (addr: Code, v: Code, offset = 0): Code => [...addr, ...v, ...simd(0x0b), 0, ...uleb(offset)];
export const vzero = (): Code => v128const((dv) => dv.setFloat32(0, 0, true));

/**
 * `for (p = start; p < end; p += step) body` over i32 locals (byte pointers); extra pointers advance with p.
 * Uses one enclosing block + loop.
 */
export function forPtr(p: number, end: number, step: number, body: Code, also: number[] = []): Code {
  return [
    0x02, 0x40, 0x03, 0x40,
    ...get(p), ...get(end), 0x4f /* i32.ge_u */, 0x0d, 1,
    ...body,
    ...[p, ...also].flatMap((q) => set(q, i32add(get(q), i32c(step)))),
    0x0c, 0, 0x0b, 0x0b,
  ];
}

/** A function body from its locals ([count, type] runs) and code. */
export function funcBody(locals: Array<[number, number]>, code: Code): number[] {
  const body = [...vec(locals.map(([n, t]) => [...uleb(n), t])), ...code, 0x0b];
  return [...uleb(body.length), ...body];
}

/** A module importing `env.memory` with the given functions ([params, body]) exported under their names. */
export function moduleBytes(fns: Array<{ name: string; params: number[]; body: number[] }>): Uint8Array {
  const sigs: string[] = [];
  const typeIdx = fns.map((f) => {
    const key = f.params.join(',');
    let i = sigs.indexOf(key);
    if (i < 0) i = sigs.push(key) - 1;
    return i;
  });
  const types = sigs.map((k) => [0x60, ...vec(k.split(',').map((t) => [Number(t)])), 0]);
  const imports = [[...str('env'), ...str('memory'), 0x02, 0x00, ...uleb(0)]]; // memory, min 0, no max
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec(imports)),
    ...section(3, vec(typeIdx.map((i) => uleb(i)))),
    ...section(7, vec(fns.map((f, i) => [...str(f.name), 0x00, ...uleb(i)]))),
    ...section(10, vec(fns.map((f) => f.body))),
  ]);
}
