/**
 * Procedural rendering of the embedded default datasets (pure JS, deterministic from an `Rng`).
 *
 * Satellite target domain ("EuroSAT-like"): a top-down scene is a per-pixel mixture of 10 land-cover endmembers whose
 * 13-band Sentinel-2 spectra (L1C digital numbers) follow textbook shapes — vegetation: low red, high NIR (red edge);
 * water: low and falling into NIR/SWIR; soil: rising to SWIR; urban: flat and bright. Each EuroSAT class is a spatial
 * layout of those covers (field stripes, canopy texture, a road band, big roofs, orchard dot grids, street grids, a
 * meandering river, a shoreline). Per image nuisances — illumination gain, haze, season (green → dry), white balance,
 * layout orientation/scale/position and sensor noise — make mean colour a weak cue, so the label lives in spatial
 * structure and band relations.
 *
 * Natural source domain: object-centric side views — sky gradient, horizon, textured ground with perspective, one
 * shaded object of 10 shape classes with random colour/texture/pose and a shadow, small clutter.
 */
import { Rng } from '../lib/rng';
import { Img, makeImg } from './image';

// ------------------------------------------------------------------------------------------------------------------
// noise

/** Value noise on a random lattice, smoothstep-interpolated; `fbm` sums octaves. Coordinates in [0, 1). */
export class ValueNoise {
  private readonly grids: Float32Array[] = [];
  constructor(
    rng: Rng,
    private readonly cells: number,
    private readonly octaves = 3,
  ) {
    for (let o = 0; o < octaves; o++) {
      const n = (cells << o) + 2;
      const g = new Float32Array(n * n);
      for (let i = 0; i < g.length; i++) g[i] = rng.next();
      this.grids.push(g);
    }
  }
  private at(o: number, x: number, y: number): number {
    const n = (this.cells << o) + 2;
    const fx = x * (n - 2);
    const fy = y * (n - 2);
    const ix = Math.min(n - 2, Math.max(0, Math.floor(fx)));
    const iy = Math.min(n - 2, Math.max(0, Math.floor(fy)));
    let tx = fx - ix;
    let ty = fy - iy;
    tx = tx * tx * (3 - 2 * tx);
    ty = ty * ty * (3 - 2 * ty);
    const g = this.grids[o];
    const a = g[iy * n + ix];
    const b = g[iy * n + ix + 1];
    const c = g[(iy + 1) * n + ix];
    const d = g[(iy + 1) * n + ix + 1];
    return a + (b - a) * tx + (c - a) * ty + (a - b - c + d) * tx * ty;
  }
  /** Fractal sum in [0, 1]. */
  fbm(x: number, y: number): number {
    let s = 0;
    let w = 1;
    let tot = 0;
    for (let o = 0; o < this.octaves; o++) {
      s += w * this.at(o, x, y);
      tot += w;
      w *= 0.5;
    }
    return s / tot;
  }
}

const smooth = (e0: number, e1: number, x: number): number => {
  const t = Math.min(1, Math.max(0, (x - e0) / (e1 - e0)));
  return t * t * (3 - 2 * t);
};

// ------------------------------------------------------------------------------------------------------------------
// satellite

/** Endmember names (index = position). */
export const ENDMEMBERS = ['water', 'forest', 'grass', 'crop', 'soil', 'dryveg', 'urban', 'roof', 'road', 'shadow'] as const;
const [WATER, FOREST, GRASS, CROP, SOIL, DRY, URBAN, ROOF, ROAD, SHADOW] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
const NE = ENDMEMBERS.length;

/** 13-band spectra (B1…B12 incl. B8A) of the endmembers, L1C-like digital numbers. */
export const ENDMEMBER_SPECTRA: readonly (readonly number[])[] = [
  [1250, 1050, 850, 600, 450, 350, 320, 300, 280, 120, 10, 120, 80], // water
  [1150, 850, 750, 500, 950, 2000, 2500, 2600, 2800, 800, 12, 1400, 700], // forest
  [1250, 1000, 1050, 800, 1350, 2300, 2700, 2850, 2950, 850, 13, 2100, 1300], // grass
  [1250, 950, 1050, 650, 1250, 2700, 3300, 3450, 3550, 950, 14, 1900, 1000], // crop (green)
  [1400, 1250, 1400, 1650, 1900, 2050, 2200, 2300, 2450, 800, 16, 3100, 2600], // soil
  [1350, 1150, 1250, 1400, 1700, 2000, 2200, 2300, 2450, 820, 15, 2900, 2200], // dry vegetation
  [1450, 1400, 1450, 1550, 1650, 1750, 1850, 1900, 1950, 700, 18, 2200, 2000], // urban
  [1700, 1850, 1900, 1950, 2050, 2100, 2150, 2200, 2250, 800, 20, 2500, 2300], // bright roof
  [1350, 1150, 1150, 1200, 1250, 1300, 1350, 1400, 1450, 600, 15, 1650, 1550], // road / asphalt
  [1100, 650, 500, 350, 450, 650, 750, 800, 850, 400, 8, 450, 300], // shadow
];
/** Haze (path radiance) shape over the 13 bands, strongest in the blue. */
const HAZE = [700, 550, 420, 320, 260, 200, 160, 130, 120, 60, 3, 60, 40];

/** A rendered satellite scene: raw 13-band DNs and its RGB rendering in [0, 1]. */
export interface SatelliteScene {
  ms: Img;
  rgb: Img;
}

/** Per-image rendering nuisances. */
interface Nuisance {
  gain: number;
  haze: number;
  season: number;
  wb: [number, number, number];
}

type Mix = Float32Array; // S*S*NE abundances

/** Rotated, shifted coordinates of a unit-square point. */
function frame(rng: Rng): (x: number, y: number) => [number, number] {
  const th = rng.uniform(0, Math.PI);
  const c = Math.cos(th);
  const s = Math.sin(th);
  const ox = rng.next();
  const oy = rng.next();
  return (x, y) => [(x - 0.5) * c - (y - 0.5) * s + ox, (x - 0.5) * s + (y - 0.5) * c + oy];
}

/** Fill a mixture by evaluating `f(x, y, w)` at supersampled pixel positions (w: abundances to write, sums to 1). */
function renderMix(S: number, ss: number, f: (x: number, y: number, w: Float32Array) => void): Mix {
  const mix = new Float32Array(S * S * NE);
  const w = new Float32Array(NE);
  for (let py = 0; py < S; py++) {
    for (let px = 0; px < S; px++) {
      const o = (py * S + px) * NE;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          w.fill(0);
          f((px + (sx + 0.5) / ss) / S, (py + (sy + 0.5) / ss) / S, w);
          let tot = 0;
          for (let k = 0; k < NE; k++) tot += w[k];
          for (let k = 0; k < NE; k++) mix[o + k] += w[k] / (tot * ss * ss);
        }
      }
    }
  }
  return mix;
}

/** A random background cover mixture (fields/meadow/bare soil) as weights. */
function backgroundCover(rng: Rng): number[] {
  const w = new Array(NE).fill(0);
  w[GRASS] = rng.next();
  w[CROP] = rng.next() * 0.8;
  w[SOIL] = rng.next() * 0.6;
  w[DRY] = rng.next() * 0.6;
  return w;
}

function addW(w: Float32Array, cover: readonly number[], a: number): void {
  for (let k = 0; k < NE; k++) w[k] += a * cover[k];
}

/** The class layouts, by EuroSAT class name. */
const LAYOUTS: Record<string, (rng: Rng) => (x: number, y: number, w: Float32Array) => void> = {
  AnnualCrop(rng) {
    const fr = frame(rng);
    const width = rng.uniform(0.07, 0.16);
    const covers = Array.from({ length: 16 }, () => {
      const w = new Array(NE).fill(0);
      const k = rng.int(4);
      w[[CROP, SOIL, DRY, GRASS][k]] = 1;
      w[CROP] += rng.next() * 0.3;
      return w;
    });
    const rowPeriod = rng.uniform(0.02, 0.035);
    return (x, y, w) => {
      const [u, v] = fr(x, y);
      const strip = Math.floor(u / width + 64) % 16;
      addW(w, covers[strip], 1);
      const rows = 0.5 + 0.5 * Math.sin((2 * Math.PI * v) / rowPeriod);
      w[SOIL] += 0.35 * rows * covers[strip][CROP];
      const edge = Math.abs(((u / width) % 1) + (u < 0 ? 1 : 0) - 0.5);
      if (edge > 0.46) w[GRASS] += 0.8;
    };
  },
  Forest(rng) {
    const n = new ValueNoise(rng, 6 + rng.int(6), 3);
    const gaps = new ValueNoise(rng, 3, 2);
    const dens = rng.uniform(0.35, 0.6);
    return (x, y, w) => {
      const t = n.fbm(x, y);
      w[FOREST] += 1;
      w[SHADOW] += dens * smooth(0.45, 0.65, t);
      const g = gaps.fbm(x, y);
      w[GRASS] += 1.5 * smooth(0.62, 0.75, g);
    };
  },
  HerbaceousVegetation(rng) {
    const a = new ValueNoise(rng, 4 + rng.int(4), 3);
    const b = new ValueNoise(rng, 5 + rng.int(4), 3);
    const shrubs = new ValueNoise(rng, 12, 1);
    return (x, y, w) => {
      const p = a.fbm(x, y);
      const q = b.fbm(x, y);
      w[GRASS] += 0.4 + smooth(0.35, 0.6, p);
      w[DRY] += 0.3 + smooth(0.4, 0.65, q);
      w[SOIL] += 0.5 * smooth(0.55, 0.7, 1 - p);
      w[FOREST] += 1.2 * smooth(0.68, 0.8, shrubs.fbm(x, y));
    };
  },
  Highway(rng) {
    const bg = backgroundCover(rng);
    const n = new ValueNoise(rng, 3, 2);
    const fr = frame(rng);
    const width = rng.uniform(0.035, 0.07);
    const second = rng.next() < 0.35;
    const fr2 = frame(rng);
    const off = rng.uniform(-0.15, 0.15);
    return (x, y, w) => {
      addW(w, bg, 1);
      w[SOIL] += 0.5 * n.fbm(x, y);
      const [u] = fr(x, y);
      const d = Math.abs(u - Math.floor(u) - 0.5 + off);
      if (d < width) w[ROAD] += 6;
      else if (d < width * 1.8) w[URBAN] += 1.5;
      if (second) {
        const [u2] = fr2(x, y);
        if (Math.abs(u2 - Math.floor(u2) - 0.5) < width * 0.7) w[ROAD] += 6;
      }
    };
  },
  Industrial(rng) {
    const fr = frame(rng);
    const boxes = Array.from({ length: 2 + rng.int(4) }, () => ({
      u: rng.uniform(-0.3, 0.9),
      v: rng.uniform(-0.3, 0.9),
      a: rng.uniform(0.18, 0.4),
      b: rng.uniform(0.12, 0.3),
      roof: rng.next() < 0.6 ? ROOF : URBAN,
    }));
    const n = new ValueNoise(rng, 4, 2);
    const veg = rng.uniform(0, 0.4);
    return (x, y, w) => {
      const [u, v] = fr(x, y);
      w[URBAN] += 0.8;
      w[ROAD] += 0.6;
      w[GRASS] += veg * smooth(0.55, 0.7, n.fbm(x, y));
      for (const bx of boxes) {
        if (u > bx.u && u < bx.u + bx.a && v > bx.v && v < bx.v + bx.b) w[bx.roof] += 8;
        else if (u > bx.u && u < bx.u + bx.a && v >= bx.v + bx.b && v < bx.v + bx.b + 0.03) w[SHADOW] += 3;
      }
    };
  },
  Pasture(rng) {
    const n = new ValueNoise(rng, 2, 2);
    const hedge = rng.next() < 0.4;
    const fr = frame(rng);
    const dry = rng.uniform(0.1, 0.5);
    return (x, y, w) => {
      const t = n.fbm(x, y);
      w[GRASS] += 1.2;
      w[DRY] += dry * t;
      w[CROP] += 0.3 * (1 - t);
      if (hedge) {
        const [u] = fr(x, y);
        if (Math.abs(u - Math.floor(u) - 0.5) < 0.018) w[FOREST] += 4;
      }
    };
  },
  PermanentCrop(rng) {
    const fr = frame(rng);
    const period = rng.uniform(0.055, 0.09);
    const radius = rng.uniform(0.25, 0.38) * period;
    const ground = rng.next() < 0.5 ? SOIL : DRY;
    const vineyard = rng.next() < 0.3;
    return (x, y, w) => {
      const [u, v] = fr(x, y);
      w[ground] += 1;
      w[GRASS] += 0.3;
      const du = ((u / period) % 1 + 1) % 1 - 0.5;
      const dv = ((v / period) % 1 + 1) % 1 - 0.5;
      const inside = vineyard ? Math.abs(du) * period < radius * 0.7 : Math.hypot(du, dv) * period < radius;
      if (inside) w[FOREST] += 3;
    };
  },
  Residential(rng) {
    const fr = frame(rng);
    const block = rng.uniform(0.14, 0.22);
    const street = rng.uniform(0.018, 0.028);
    const house = rng.uniform(0.035, 0.055);
    const pitch = house * rng.uniform(1.5, 2.0);
    const garden = new ValueNoise(rng, 8, 2);
    const roofMix = rng.uniform(0.3, 0.9);
    return (x, y, w) => {
      const [u, v] = fr(x, y);
      const bu = ((u / block) % 1 + 1) % 1;
      const bv = ((v / block) % 1 + 1) % 1;
      if (bu * block < street || bv * block < street) {
        w[ROAD] += 1;
        return;
      }
      w[GRASS] += 0.6;
      w[FOREST] += 0.5 * smooth(0.55, 0.7, garden.fbm(x, y));
      const hu = ((u / pitch) % 1 + 1) % 1;
      const hv = ((v / pitch) % 1 + 1) % 1;
      if (hu * pitch < house && hv * pitch < house) {
        w[ROOF] += 3 * roofMix;
        w[URBAN] += 3 * (1 - roofMix);
      } else w[URBAN] += 0.3;
    };
  },
  River(rng) {
    const bg = backgroundCover(rng);
    const fr = frame(rng);
    const width = rng.uniform(0.035, 0.08);
    const amp = rng.uniform(0.05, 0.18);
    const freq = rng.uniform(0.6, 1.6);
    const ph = rng.uniform(0, 2 * Math.PI);
    const bank = rng.uniform(0.5, 2);
    return (x, y, w) => {
      const [u, v] = fr(x, y);
      addW(w, bg, 1);
      const c = 0.5 + amp * Math.sin(2 * Math.PI * freq * v + ph);
      const d = Math.abs(u - Math.floor(u) - c);
      if (d < width) w[WATER] += 8;
      else if (d < width * 1.6) w[FOREST] += bank;
    };
  },
  SeaLake(rng) {
    const n = new ValueNoise(rng, 2 + rng.int(3), 3);
    const level = rng.uniform(0.35, 0.75);
    const shore = backgroundCover(rng);
    const turb = new ValueNoise(rng, 3, 2);
    const tAmt = rng.uniform(0, 0.25);
    return (x, y, w) => {
      const t = n.fbm(x, y);
      const wet = smooth(level - 0.04, level + 0.04, 1 - t + 0.25);
      w[WATER] += 6 * wet;
      w[SOIL] += 6 * wet * tAmt * turb.fbm(x, y);
      addW(w, shore, 1 - wet);
    };
  },
};

/** The satellite classes in label order (= EuroSAT). */
export const SATELLITE_CLASSES = Object.keys(LAYOUTS);

/**
 * Options of the satellite rendering (defaults reproduce the original scenes byte for byte):
 * - `composite`: the 3-band image written as the RGB JPEG — `'rgb'` true colour (B4, B3, B2), or `'nir-false-color'`
 *   (B8, B4, B3), the standard colour-infrared composite of remote sensing (vegetation red, water black): a larger
 *   photometric shift from the natural source domain, with the same scenes and labels.
 * - `nuisance`: scale of the per-image nuisances (illumination gain, haze, season, white balance) around their neutral
 *   values: 1 = default ranges, 0 = none, 2 = twice as wide (gain clamped at ≥ 0.2).
 */
export interface SatelliteRenderOptions {
  composite?: SatelliteComposite;
  nuisance?: number;
}

export type SatelliteComposite = 'rgb' | 'nir-false-color';
export const SATELLITE_COMPOSITES: readonly SatelliteComposite[] = ['rgb', 'nir-false-color'];

/** Render one satellite scene of class `cls` at size S (2× supersampled below 64 px). */
export function renderSatellite(cls: string, S: number, rng: Rng, opts: SatelliteRenderOptions = {}): SatelliteScene {
  const layout = LAYOUTS[cls];
  if (!layout) throw new Error(`renderSatellite: unknown class '${cls}'; valid: ${SATELLITE_CLASSES.join(', ')}`);
  const composite = opts.composite ?? 'rgb';
  if (!SATELLITE_COMPOSITES.includes(composite)) throw new Error(`renderSatellite: composite must be one of ${SATELLITE_COMPOSITES.join(', ')}, got '${String(composite)}'`);
  const k = opts.nuisance ?? 1;
  if (!(k >= 0 && k <= 4)) throw new Error(`renderSatellite: nuisance must be a number in [0, 4], got ${String(k)}`);
  const f = layout(rng.fork('layout'));
  const mix = renderMix(S, S >= 64 ? 1 : 2, f);
  const nz = rng.fork('nuisance');
  const drawn: Nuisance = {
    gain: nz.uniform(0.65, 1.4),
    haze: nz.uniform(0, 0.7),
    season: nz.uniform(0, 0.7),
    wb: [nz.uniform(0.9, 1.1), nz.uniform(0.92, 1.08), nz.uniform(0.9, 1.1)],
  };
  // scaled around the neutral values (exactly the drawn values at k = 1)
  const around = (v: number, neutral: number): number => (k === 1 ? v : neutral + k * (v - neutral));
  const nu: Nuisance = {
    gain: Math.max(0.2, around(drawn.gain, 1)),
    haze: around(drawn.haze, 0),
    season: Math.min(1, around(drawn.season, 0)),
    wb: [around(drawn.wb[0], 1), around(drawn.wb[1], 1), around(drawn.wb[2], 1)],
  };
  const ms = makeImg(S, S, 13);
  const noise = rng.fork('noise');
  // vegetation spectra drift toward dry vegetation with the season
  const spectra = ENDMEMBER_SPECTRA.map((sp, k) =>
    k === FOREST || k === GRASS || k === CROP
      ? sp.map((v, b) => (1 - nu.season * (k === FOREST ? 0.4 : 1)) * v + nu.season * (k === FOREST ? 0.4 : 1) * ENDMEMBER_SPECTRA[DRY][b])
      : sp,
  );
  for (let p = 0; p < S * S; p++) {
    for (let b = 0; b < 13; b++) {
      let v = 0;
      for (let k = 0; k < NE; k++) v += mix[p * NE + k] * spectra[k][b];
      v = nu.gain * v + nu.haze * HAZE[b] + noise.normal(0, b === 10 ? 1 : 35);
      if (b === 3) v *= nu.wb[0];
      else if (b === 2) v *= nu.wb[1];
      else if (b === 1) v *= nu.wb[2];
      ms.data[p * 13 + b] = Math.max(1, Math.round(v));
    }
  }
  return { ms, rgb: satelliteRgb(ms, composite) };
}

/**
 * 3-band rendering of a 13-band scene, clipped to [0, 1]: `'rgb'` = bands (B4, B3, B2) as (DN − 300) / 2300;
 * `'nir-false-color'` = (B8, B4, B3) with NIR as (DN − 300) / 3300 (its vegetation plateau is ~1.4× brighter).
 */
export function satelliteRgb(ms: Img, composite: SatelliteComposite = 'rgb'): Img {
  const S = ms.height * ms.width;
  const rgb = makeImg(ms.height, ms.width, 3);
  const bands = composite === 'rgb' ? [3, 2, 1] : [7, 3, 2];
  const span = composite === 'rgb' ? [2300, 2300, 2300] : [3300, 2300, 2300];
  for (let p = 0; p < S; p++) {
    for (let c = 0; c < 3; c++) {
      const v = (ms.data[p * ms.channels + bands[c]] - 300) / span[c];
      rgb.data[p * 3 + c] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
  }
  return rgb;
}

// ------------------------------------------------------------------------------------------------------------------
// natural

/** Object classes of the natural source domain (label order). */
export const NATURAL_CLASSES = ['ball', 'bar', 'box', 'cone', 'crescent', 'cross', 'flower', 'heart', 'ring', 'star'] as const;

/** Signed "inside" test of each shape in object coordinates (unit scale, before rotation). */
const SHAPES: Record<(typeof NATURAL_CLASSES)[number], (x: number, y: number) => boolean> = {
  ball: (x, y) => x * x + y * y < 1,
  bar: (x, y) => Math.abs(x) < 1 && Math.abs(y) < 0.3,
  box: (x, y) => Math.abs(x) < 0.78 && Math.abs(y) < 0.78,
  cone: (x, y) => y > -0.95 && y < 0.8 && Math.abs(x) < ((y + 0.95) / 1.75) * 0.95,
  crescent: (x, y) => x * x + y * y < 1 && (x - 0.45) ** 2 + (y + 0.2) ** 2 > 0.64,
  cross: (x, y) => (Math.abs(x) < 0.3 && Math.abs(y) < 0.95) || (Math.abs(y) < 0.3 && Math.abs(x) < 0.95),
  flower: (x, y) => Math.hypot(x, y) < 0.5 + 0.45 * Math.cos(6 * Math.atan2(y, x)),
  heart: (x, y) => {
    const yy = -y * 1.1 + 0.25;
    const xx = x * 1.1;
    return (xx * xx + yy * yy - 1) ** 3 - xx * xx * yy ** 3 < 0;
  },
  ring: (x, y) => {
    const r = x * x + y * y;
    return r < 1 && r > 0.36;
  },
  star: (x, y) => {
    const a = Math.atan2(y, x);
    const k = Math.abs(((a * 5) / (2 * Math.PI) + 100.25) % 1 - 0.5) * 2;
    return Math.hypot(x, y) < 0.42 + 0.55 * k ** 1.6;
  },
};

/** The natural domain's shape inside-tests in object coordinates (also drawn by the structured tasks). */
export const NATURAL_SHAPES: Readonly<Record<(typeof NATURAL_CLASSES)[number], (x: number, y: number) => boolean>> = SHAPES;

function hsv(h: number, s: number, v: number): [number, number, number] {
  const i = Math.floor(h * 6) % 6;
  const f = h * 6 - Math.floor(h * 6);
  const p = v * (1 - s);
  const q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  return ([[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]] as const)[i] as unknown as [number, number, number];
}

/** Render one natural-domain image of `cls` at size S (2× supersampled below 64 px), RGB in [0, 1]. */
export function renderNatural(cls: string, S: number, rng: Rng): Img {
  const shape = SHAPES[cls as (typeof NATURAL_CLASSES)[number]];
  if (!shape) throw new Error(`renderNatural: unknown class '${cls}'; valid: ${NATURAL_CLASSES.join(', ')}`);
  const horizon = rng.uniform(0.35, 0.7);
  const skyTop = hsv(rng.uniform(0.5, 0.7), rng.uniform(0.3, 0.8), rng.uniform(0.6, 1));
  const skyLow = hsv(rng.uniform(0.0, 0.15), rng.uniform(0.1, 0.5), rng.uniform(0.7, 1));
  const ground = hsv(rng.uniform(0.05, 0.4), rng.uniform(0.3, 0.8), rng.uniform(0.25, 0.7));
  const gNoise = new ValueNoise(rng, 6, 3);
  const stripes = rng.uniform(6, 18);
  const col = hsv(rng.next(), rng.uniform(0.5, 1), rng.uniform(0.55, 1));
  const col2 = hsv(rng.next(), rng.uniform(0.3, 1), rng.uniform(0.4, 1));
  const texture = rng.int(3); // 0 plain, 1 stripes, 2 dots
  const tFreq = rng.uniform(3, 7);
  const scale = rng.uniform(0.22, 0.36);
  const cx = rng.uniform(0.35, 0.65);
  const cy = Math.min(0.75, Math.max(0.3, horizon + rng.uniform(-0.15, 0.1)));
  const rot = cls === 'ball' ? 0 : rng.uniform(-Math.PI, Math.PI);
  const cr = Math.cos(rot);
  const sr = Math.sin(rot);
  const lx = rng.uniform(-0.8, 0.8);
  const clutter = Array.from({ length: rng.int(4) }, () => ({
    x: rng.next(),
    y: rng.uniform(horizon, 1),
    r: rng.uniform(0.02, 0.05),
    c: hsv(rng.next(), rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.9)),
  }));
  const out = makeImg(S, S, 3);
  const ss = S >= 64 ? 1 : 2;
  const noise = rng.fork('noise');
  const c = new Float64Array(3);
  for (let py = 0; py < S; py++) {
    for (let px = 0; px < S; px++) {
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          const x = (px + (sx + 0.5) / ss) / S;
          const y = (py + (sy + 0.5) / ss) / S;
          if (y < horizon) {
            const t = y / horizon;
            for (let k = 0; k < 3; k++) c[k] = skyTop[k] * (1 - t) + skyLow[k] * t;
          } else {
            const depth = (y - horizon) / (1 - horizon + 1e-6);
            const g = 0.75 + 0.5 * gNoise.fbm(x * (0.5 + depth), depth);
            const st = 0.9 + 0.1 * Math.sin((stripes * (x - 0.5)) / (0.15 + depth));
            // shadow under the object
            const dx = (x - cx - lx * 0.05) / (scale * 1.1);
            const dy = (y - (cy + scale * 0.9)) / (scale * 0.25);
            const sh = dx * dx + dy * dy < 1 ? 0.55 : 1;
            for (let k = 0; k < 3; k++) c[k] = ground[k] * g * st * (0.7 + 0.3 * depth) * sh;
          }
          for (const cl of clutter) {
            if ((x - cl.x) ** 2 + (y - cl.y) ** 2 < cl.r * cl.r) for (let k = 0; k < 3; k++) c[k] = cl.c[k];
          }
          const ox = (x - cx) / scale;
          const oy = (y - cy) / scale;
          const ux = cr * ox + sr * oy;
          const uy = -sr * ox + cr * oy;
          if (Math.abs(ux) < 1.5 && Math.abs(uy) < 1.5 && shape(ux, uy)) {
            let base = col;
            if (texture === 1 && Math.sin(tFreq * Math.PI * (ux + uy)) > 0) base = col2;
            if (texture === 2 && Math.hypot(((ux * tFreq) / 2) % 1, ((uy * tFreq) / 2) % 1) < 0.3) base = col2;
            const shade = 0.55 + 0.45 * Math.max(0, 1 - 0.5 * Math.hypot(ox + lx * 0.7, oy + 0.6));
            for (let k = 0; k < 3; k++) c[k] = base[k] * shade;
          }
          a0 += c[0];
          a1 += c[1];
          a2 += c[2];
        }
      }
      const acc = [a0, a1, a2];
      for (let k = 0; k < 3; k++) {
        const v = acc[k] / (ss * ss) + noise.normal(0, 0.015);
        out.data[(py * S + px) * 3 + k] = v < 0 ? 0 : v > 1 ? 1 : v;
      }
    }
  }
  return out;
}
