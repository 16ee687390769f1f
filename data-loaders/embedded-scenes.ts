/**
 * Procedural top-down scenes for the beyond-RGB embedded domains (pure JS, deterministic from an `Rng`), in the same
 * 13-band Sentinel-2-like digital numbers as the embedded satellite domain (`embedded-render.ts`):
 *
 * - **Multi-date sites** (`renderSiteDates`): one fMoW-like site seen at several dates. The layout is fixed per site;
 *   the date changes the season (vegetation green in summer, dry / bare in winter; crops follow their own planting
 *   calendar), the illumination (sun elevation from month and hour), haze, a ±1 px misregistration, and for some
 *   classes the content: a construction site progresses from bare soil and machinery to slabs to roofs over the years,
 *   a flooded road is under water on one date only, a car park fills and empties, a pond shrinks in the dry season.
 * - **Building chips** (`renderBuildingChip`): SpaceNet-like urban chips with building footprints (rotated rectangles
 *   and L shapes; bright, dark and tile roofs) as polygons, streets, trees with shadows, lawns, bare lots and concrete
 *   pads. Dark roofs look like asphalt and concrete pads like bright roofs in RGB; they differ in the SWIR bands, so the
 *   13-band chip carries information the RGB rendering lacks.
 */
import { Rng } from '../lib/rng';
import { Img, makeImg } from './image';
import { ENDMEMBER_SPECTRA, ValueNoise, satelliteRgb } from './embedded-render';

// ------------------------------------------------------------------------------------------------------------------
// covers and spectra

/** Covers used by the scenes: the 10 satellite endmembers plus solar panels, dark roofs, tile roofs, concrete, machinery. */
export const SCENE_COVERS = [
  'water', 'forest', 'grass', 'crop', 'soil', 'dryveg', 'urban', 'roof', 'road', 'shadow',
  'panel', 'darkroof', 'tile', 'concrete', 'machinery',
] as const;
const [WATER, FOREST, GRASS, CROP, SOIL, DRY, URBAN, ROOF, ROAD, SHADOW, PANEL, DARKROOF, TILE, CONCRETE, MACHINE] = SCENE_COVERS.map((_, i) => i);
const NC = SCENE_COVERS.length;

/** 13-band spectra (B1…B12 incl. B8A) of the extra covers (L1C-like digital numbers). */
const EXTRA_SPECTRA: readonly (readonly number[])[] = [
  [1150, 700, 600, 500, 500, 520, 540, 560, 580, 300, 10, 700, 600], // solar panel: dark, flat, no red edge
  [1250, 950, 900, 880, 920, 960, 1000, 1020, 1050, 480, 12, 820, 700], // dark roof: asphalt-like RGB, low SWIR
  [1350, 1100, 1150, 1500, 1750, 1850, 1900, 1950, 2000, 700, 15, 2400, 2100], // tile roof: red
  [1650, 1800, 1880, 1960, 2100, 2250, 2350, 2400, 2500, 820, 18, 3300, 2900], // concrete / bare pad: roof-like RGB, high SWIR
  [1300, 900, 1500, 1700, 1800, 1850, 1900, 1900, 1950, 700, 15, 2100, 1800], // machinery (yellow)
];

/** Spectra of every scene cover (index = position in `SCENE_COVERS`). */
export const SCENE_SPECTRA: readonly (readonly number[])[] = [...ENDMEMBER_SPECTRA, ...EXTRA_SPECTRA];

const HAZE = [700, 550, 420, 320, 260, 200, 160, 130, 120, 60, 3, 60, 40];

/** Abundance writer: adds cover weights at a point (x, y in [0, 1)). */
export type CoverFn = (x: number, y: number, w: Float32Array) => void;

/** Per-pixel abundances [S·S·NC] of `f` evaluated at `ss`×`ss` sub-samples per pixel (normalised per sub-sample). */
export function renderCovers(S: number, ss: number, f: CoverFn): Float32Array {
  const mix = new Float32Array(S * S * NC);
  const w = new Float32Array(NC);
  for (let py = 0; py < S; py++) {
    for (let px = 0; px < S; px++) {
      const o = (py * S + px) * NC;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          w.fill(0);
          f((px + (sx + 0.5) / ss) / S, (py + (sy + 0.5) / ss) / S, w);
          let tot = 0;
          for (let k = 0; k < NC; k++) tot += w[k];
          if (tot <= 0) {
            w[GRASS] = 1;
            tot = 1;
          }
          for (let k = 0; k < NC; k++) mix[o + k] += w[k] / (tot * ss * ss);
        }
      }
    }
  }
  return mix;
}

/** Rendering conditions of one acquisition. */
export interface Acquisition {
  /** Illumination gain (sun elevation, exposure). */
  gain: number;
  /** Haze amount (blue-heavy path radiance). */
  haze: number;
  /** 0 = full green vegetation, 1 = dry / dormant. */
  dryness: number;
  /** White balance on B4, B3, B2. */
  wb: [number, number, number];
  /** Sensor noise std (DN). */
  noise: number;
}

/** Abundances → 13-band DN image with the acquisition's nuisances (vegetation drifts toward dry with `dryness`). */
export function coversToBands(mix: Float32Array, S: number, acq: Acquisition, noise: Rng): Img {
  const spectra = SCENE_SPECTRA.map((sp, k) =>
    k === FOREST || k === GRASS || k === CROP
      ? sp.map((v, b) => {
          const d = acq.dryness * (k === FOREST ? 0.35 : 1);
          return (1 - d) * v + d * ENDMEMBER_SPECTRA[DRY][b];
        })
      : sp,
  );
  const ms = makeImg(S, S, 13);
  for (let p = 0; p < S * S; p++) {
    for (let b = 0; b < 13; b++) {
      let v = 0;
      for (let k = 0; k < NC; k++) {
        const a = mix[p * NC + k];
        if (a) v += a * spectra[k][b];
      }
      v = acq.gain * v + acq.haze * HAZE[b] + noise.normal(0, b === 10 ? 1 : acq.noise);
      if (b === 3) v *= acq.wb[0];
      else if (b === 2) v *= acq.wb[1];
      else if (b === 1) v *= acq.wb[2];
      ms.data[p * 13 + b] = Math.max(1, Math.round(v));
    }
  }
  return ms;
}

/** `n.fbm` at a point clamped into the noise's [0, 1) domain (value noise extrapolates badly outside it). */
export function fbm01(n: ValueNoise, x: number, y: number): number {
  return n.fbm(x < 0 ? 0 : x > 0.9999 ? 0.9999 : x, y < 0 ? 0 : y > 0.9999 ? 0.9999 : y);
}

const smooth = (e0: number, e1: number, x: number): number => {
  const t = Math.min(1, Math.max(0, (x - e0) / (e1 - e0)));
  return t * t * (3 - 2 * t);
};

/** A rotation + offset of the unit square (layout frame). */
function frame(rng: Rng): (x: number, y: number) => [number, number] {
  const th = rng.uniform(0, Math.PI);
  const c = Math.cos(th);
  const s = Math.sin(th);
  const ox = rng.next();
  const oy = rng.next();
  return (x, y) => [(x - 0.5) * c - (y - 0.5) * s + ox, (x - 0.5) * s + (y - 0.5) * c + oy];
}

const frac = (v: number): number => v - Math.floor(v);

// ------------------------------------------------------------------------------------------------------------------
// multi-date sites

/** The fMoW categories of the multi-date domain (labels index `FMOW_CLASSES`). */
export const TEMPORAL_SITE_CLASSES = [
  'construction_site',
  'crop_field',
  'flooded_road',
  'lake_or_pond',
  'park',
  'parking_lot_or_garage',
  'single-unit_residential',
  'solar_farm',
] as const;
export type TemporalSiteClass = (typeof TEMPORAL_SITE_CLASSES)[number];

/** One acquisition date of a site: calendar values and the site-relative state the date implies. */
export interface SiteDate {
  year: number;
  /** 1–12 */
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  /** 'YYYY-MM-DDTHH:MM:SSZ' (fMoW style). */
  timestamp: string;
}

/** Vegetation dryness of a month (northern mid-latitudes): 0 in July, 1 in January, 0.5 in April and October. */
export function seasonalDryness(month: number): number {
  return 0.5 - 0.5 * Math.cos((2 * Math.PI * (month - 7)) / 12);
}

interface SiteState {
  dryness: number;
  /** years since the start of the site's time span, normalised to [0, 1] over it */
  t: number;
  month: number;
  hour: number;
  /** index of the date in the site's sorted list */
  k: number;
  /** the date is the site's event date (flood) */
  event: boolean;
}

type SiteLayout = (st: SiteState) => CoverFn;

function background(rng: Rng): number[] {
  const w = new Array(NC).fill(0);
  w[GRASS] = 0.6 + rng.next();
  w[SOIL] = rng.next() * 0.5;
  w[DRY] = rng.next() * 0.5;
  return w;
}

function addCover(w: Float32Array, c: readonly number[], a: number): void {
  for (let k = 0; k < NC; k++) w[k] += a * c[k];
}

/** Field strips with their own planting calendars (crop green in its season, bare soil otherwise). */
function stripFields(rng: Rng): { at: (u: number, month: number, w: Float32Array) => void } {
  const width = rng.uniform(0.08, 0.16);
  const phases = Array.from({ length: 12 }, () => ({ start: 3 + rng.int(4), len: 3 + rng.int(3), kind: rng.next() < 0.7 ? CROP : GRASS }));
  return {
    at(u, month, w) {
      const s = Math.floor(u / width + 64) % 12;
      const ph = phases[s];
      const inSeason = month >= ph.start && month < ph.start + ph.len;
      if (inSeason) w[ph.kind] += 1;
      else if (month >= ph.start + ph.len && month < ph.start + ph.len + 2) w[DRY] += 1; // stubble after harvest
      else w[SOIL] += 1;
      if (Math.abs(frac(u / width) - 0.5) > 0.46) w[GRASS] += 0.6; // field margins
    },
  };
}

const SITE_LAYOUTS: Record<TemporalSiteClass, (rng: Rng) => SiteLayout> = {
  construction_site(rng) {
    const bg = background(rng);
    const fr = frame(rng);
    const a = rng.uniform(0.35, 0.55);
    const b = rng.uniform(0.3, 0.5);
    const boxes = Array.from({ length: 2 + rng.int(3) }, () => ({ u: rng.uniform(0, 0.7), v: rng.uniform(0, 0.7), s: rng.uniform(0.15, 0.3), t: rng.uniform(0.15, 0.3), tile: rng.next() < 0.3 }));
    const machines = Array.from({ length: 4 }, () => ({ u: rng.next(), v: rng.next() }));
    const n = new ValueNoise(rng, 4, 2);
    return (st) => (x, y, w) => {
      const [u0, v0] = fr(x, y);
      const u = (frac(u0) - 0.5 + a / 2) / a;
      const v = (frac(v0) - 0.5 + b / 2) / b;
      if (u < 0 || u > 1 || v < 0 || v > 1) {
        addCover(w, bg, 1);
        return;
      }
      // progress: < 0.35 bare soil + machinery; 0.35–0.7 slabs (concrete) + machinery; > 0.7 roofs
      const p = st.t;
      w[SOIL] += 1 + 0.4 * fbm01(n, x, y);
      for (const bx of boxes) {
        if (u > bx.u && u < bx.u + bx.s && v > bx.v && v < bx.v + bx.t) {
          if (p > 0.7) w[bx.tile ? TILE : ROOF] += 6;
          else if (p > 0.35) w[CONCRETE] += 4;
        }
      }
      if (p < 0.8) for (const m of machines) if (Math.hypot(u - m.u, v - m.v) < 0.05) w[MACHINE] += 5;
    };
  },
  crop_field(rng) {
    const fr = frame(rng);
    const fields = stripFields(rng);
    const road = rng.next() < 0.5;
    const fr2 = frame(rng);
    return (st) => (x, y, w) => {
      const [u] = fr(x, y);
      fields.at(u, st.month, w);
      if (road) {
        const [r] = fr2(x, y);
        if (Math.abs(frac(r) - 0.5) < 0.035) w[ROAD] += 8;
      }
    };
  },
  flooded_road(rng) {
    const fr = frame(rng);
    const fields = stripFields(rng);
    const fr2 = frame(rng);
    const flood = new ValueNoise(rng, 3, 2);
    const level = rng.uniform(0.45, 0.6);
    return (st) => (x, y, w) => {
      const [u] = fr(x, y);
      fields.at(u, st.month, w);
      const [r] = fr2(x, y);
      const d = Math.abs(frac(r) - 0.5);
      if (d < 0.035) w[ROAD] += 8;
      if (st.event) {
        const wet = smooth(level - 0.05, level + 0.05, fbm01(flood, x, y) + 0.25 * (1 - d * 4));
        w[WATER] += 10 * wet;
        w[SOIL] += 3 * wet; // muddy water
      }
    };
  },
  lake_or_pond(rng) {
    const bg = background(rng);
    const n = new ValueNoise(rng, 2 + rng.int(2), 3);
    const level = rng.uniform(0.45, 0.6);
    const cx = rng.uniform(0.35, 0.65);
    const cy = rng.uniform(0.35, 0.65);
    const r = rng.uniform(0.2, 0.32);
    return (st) => (x, y, w) => {
      const shrink = 0.25 * st.dryness; // smaller in the dry season
      const d = Math.hypot(x - cx, y - cy) / r + 0.6 * (fbm01(n, x, y) - 0.5);
      const wet = smooth(level + 0.15 - shrink - 0.05, level + 0.15 - shrink + 0.05, 1 - d + 0.6);
      w[WATER] += 8 * wet;
      const rim = smooth(0.2, 0.5, 1 - Math.abs(1 - d));
      w[DRY] += 0.8 * rim * st.dryness;
      addCover(w, bg, 1 - wet);
    };
  },
  park(rng) {
    const trees = new ValueNoise(rng, 6, 2);
    const fr = frame(rng);
    const pond = rng.next() < 0.3;
    const cx = rng.next();
    const cy = rng.next();
    return () => (x, y, w) => {
      w[GRASS] += 1.2;
      const t = fbm01(trees, x, y);
      w[FOREST] += 3 * smooth(0.55, 0.65, t);
      w[SHADOW] += 0.8 * smooth(0.6, 0.7, t);
      const [u, v] = fr(x, y);
      if (Math.abs(frac(u * 2) - 0.5) < 0.02 || Math.abs(frac(v * 2) - 0.5) < 0.02) w[CONCRETE] += 2; // paths
      if (pond && Math.hypot(x - cx, y - cy) < 0.12) w[WATER] += 8;
    };
  },
  parking_lot_or_garage(rng) {
    const fr = frame(rng);
    const bg = background(rng);
    const rows = rng.uniform(0.1, 0.16);
    const slot = rng.uniform(0.05, 0.08);
    const occupancySeed = rng.next() * 1000;
    const garage = rng.next() < 0.4;
    return (st) => {
      // occupancy: busy around midday on weekdays (by date index parity), low otherwise
      const occ = Math.min(0.95, 0.2 + 0.6 * Math.exp(-(((st.hour - 12) / 3) ** 2)) + 0.15 * ((st.k % 2) * 2 - 1));
      return (x, y, w) => {
        const [u, v] = fr(x, y);
        const inLot = Math.abs(frac(u) - 0.5) < 0.4 && Math.abs(frac(v) - 0.5) < 0.4;
        if (!inLot) {
          addCover(w, bg, 1);
          return;
        }
        if (garage && Math.abs(frac(u) - 0.3) < 0.12 && Math.abs(frac(v) - 0.5) < 0.3) {
          w[CONCRETE] += 6; // multi-storey garage roof
          return;
        }
        w[ROAD] += 1;
        const ru = frac(u / rows);
        const sv = frac(v / slot);
        if (ru < 0.06) w[CONCRETE] += 0.8; // painted lines / kerbs
        const car = Math.floor(u / rows) * 131 + Math.floor(v / slot) * 17 + occupancySeed;
        const filled = frac(Math.sin(car) * 43758.5453) < occ;
        if (filled && ru > 0.15 && ru < 0.75 && sv > 0.2 && sv < 0.8) w[(Math.floor(car) % 3 === 0 ? ROOF : Math.floor(car) % 3 === 1 ? DARKROOF : TILE)] += 4;
      };
    };
  },
  'single-unit_residential'(rng) {
    const fr = frame(rng);
    const block = rng.uniform(0.16, 0.24);
    const street = rng.uniform(0.02, 0.03);
    const house = rng.uniform(0.04, 0.06);
    const pitch = house * rng.uniform(1.6, 2.1);
    const garden = new ValueNoise(rng, 8, 2);
    const roof = [ROOF, DARKROOF, TILE][rng.int(3)];
    return () => (x, y, w) => {
      const [u, v] = fr(x, y);
      const bu = frac(u / block);
      const bv = frac(v / block);
      if (bu * block < street || bv * block < street) {
        w[ROAD] += 1;
        return;
      }
      w[GRASS] += 0.7;
      w[FOREST] += 0.6 * smooth(0.55, 0.7, fbm01(garden, x, y));
      const hu = frac(u / pitch);
      const hv = frac(v / pitch);
      if (hu * pitch < house && hv * pitch < house) w[roof] += 4;
    };
  },
  solar_farm(rng) {
    const fr = frame(rng);
    const bg = background(rng);
    const period = rng.uniform(0.05, 0.08);
    const fill = rng.uniform(0.45, 0.65);
    const ground = rng.next() < 0.5 ? GRASS : SOIL;
    return () => (x, y, w) => {
      const [u, v] = fr(x, y);
      const inFarm = Math.abs(frac(u) - 0.5) < 0.42 && Math.abs(frac(v) - 0.5) < 0.42;
      if (!inFarm) {
        addCover(w, bg, 1);
        return;
      }
      w[ground] += 1;
      if (frac(v / period) < fill) w[PANEL] += 6;
      else if (frac(v / period) < fill + 0.08) w[SHADOW] += 2;
    };
  },
};

/** Acquisition conditions of a date: sun elevation from month and hour, random haze, white balance, noise. */
function acquisitionOf(d: SiteDate, rng: Rng): Acquisition {
  const dayLength = 0.5 + 0.5 * (1 - seasonalDryness(d.month)); // longer, higher sun in summer
  const elev = Math.max(0.15, Math.sin(Math.PI * Math.min(1, Math.max(0, (d.hour - 6) / 12))) * (0.55 + 0.45 * dayLength));
  return {
    gain: 0.55 + 0.75 * elev * rng.uniform(0.9, 1.1),
    haze: rng.uniform(0, 0.6),
    dryness: seasonalDryness(d.month),
    wb: [rng.uniform(0.93, 1.07), rng.uniform(0.95, 1.05), rng.uniform(0.93, 1.07)],
    noise: 30,
  };
}

const pad = (v: number, n = 2): string => String(v).padStart(n, '0');

/**
 * The acquisition dates of a site: `n` distinct dates between `firstYear` and `lastYear`, sorted, daytime hours
 * (09–16), fMoW-style timestamps.
 */
export function siteDates(n: number, rng: Rng, firstYear = 2003, lastYear = 2017): SiteDate[] {
  const out: SiteDate[] = [];
  const seen = new Set<string>();
  while (out.length < n) {
    const year = firstYear + rng.int(lastYear - firstYear + 1);
    const month = 1 + rng.int(12);
    const day = 1 + rng.int(28);
    const key = `${year}-${month}-${day}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const hour = 9 + rng.int(8);
    const minute = rng.int(60);
    const second = rng.int(60);
    out.push({ year, month, day, hour, minute, second, timestamp: `${year}-${pad(month)}-${pad(day)}T${pad(hour)}:${pad(minute)}:${pad(second)}Z` });
  }
  const key = (d: SiteDate): number => ((d.year * 12 + d.month) * 31 + d.day) * 24 + d.hour;
  return out.sort((a, b) => key(a) - key(b));
}

/** A rendered date of a site. */
export interface SiteImage {
  date: SiteDate;
  /** 13-band DN */
  ms: Img;
  /** RGB rendering in [0, 1] (B4, B3, B2) */
  rgb: Img;
}

/**
 * Render a site of class `cls` at its dates (size S). The construction site's progress runs over the site's own time
 * span (first date bare soil, last date roofs), the flooded road floods on one date (never the first).
 */
export function renderSiteDates(cls: string, S: number, dates: readonly SiteDate[], rng: Rng): SiteImage[] {
  const make = SITE_LAYOUTS[cls as TemporalSiteClass];
  if (!make) throw new Error(`renderSiteDates: unknown class '${cls}'; valid: ${TEMPORAL_SITE_CLASSES.join(', ')}`);
  if (dates.length === 0) throw new Error('renderSiteDates: no dates');
  const layout = make(rng.fork('layout'));
  const t0 = dates[0].year + dates[0].month / 12;
  const t1 = dates[dates.length - 1].year + dates[dates.length - 1].month / 12;
  const eventK = dates.length > 1 ? 1 + rng.fork('event').int(dates.length - 1) : 0;
  const ss = S >= 64 ? 1 : 2;
  return dates.map((d, k) => {
    const r = rng.fork(`date-${k}`);
    const st: SiteState = {
      dryness: seasonalDryness(d.month),
      t: t1 > t0 ? (d.year + d.month / 12 - t0) / (t1 - t0) : 0,
      month: d.month,
      hour: d.hour,
      k,
      event: k === eventK,
    };
    const f = layout(st);
    // ±1 px misregistration between dates
    const dx = (r.int(3) - 1) / S;
    const dy = (r.int(3) - 1) / S;
    const mix = renderCovers(S, ss, (x, y, w) => f(x + dx, y + dy, w));
    const ms = coversToBands(mix, S, acquisitionOf(d, r), r.fork('noise'));
    return { date: d, ms, rgb: satelliteRgb(ms) };
  });
}

// ------------------------------------------------------------------------------------------------------------------
// building chips

/** A building footprint: closed ring of [x, y] points in unit-square coordinates. */
export type Footprint = Array<[number, number]>;

/** A rendered building chip: 13-band DN image, RGB rendering, footprints (unit coordinates) and the pixel mask. */
export interface BuildingChip {
  ms: Img;
  rgb: Img;
  footprints: Footprint[];
  /** 1 where a pixel centre is inside a footprint, else 0 (what `rasterizePolygons` gives for the GeoJSON) */
  mask: Img;
}

const BOXES = new WeakMap<Footprint, [number, number, number, number]>();

function insideRing(ring: Footprint, x: number, y: number): boolean {
  let box = BOXES.get(ring);
  if (!box) {
    box = [Infinity, Infinity, -Infinity, -Infinity];
    for (const [px, py] of ring) box = [Math.min(box[0], px), Math.min(box[1], py), Math.max(box[2], px), Math.max(box[3], py)];
    BOXES.set(ring, box);
  }
  if (x < box[0] || x > box[2] || y < box[1] || y > box[3]) return false;
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [xi, yi] = ring[i];
    const [xj, yj] = ring[j];
    if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function rotated(cx: number, cy: number, pts: Array<[number, number]>, th: number): Footprint {
  const c = Math.cos(th);
  const s = Math.sin(th);
  const ring = pts.map(([x, y]) => [cx + x * c - y * s, cy + x * s + y * c] as [number, number]);
  ring.push([ring[0][0], ring[0][1]]); // closed (GeoJSON)
  return ring;
}

/**
 * Render an urban chip of size S: 3–10 buildings on a street grid with lawns, trees and shadows, bare lots and
 * concrete pads. `density` ∈ [0, 1] scales how built-up it is.
 */
export function renderBuildingChip(S: number, rng: Rng, density = rng.uniform(0.3, 1)): BuildingChip {
  const lr = rng.fork('layout');
  const th = lr.uniform(0, Math.PI / 2);
  const street = lr.uniform(0.28, 0.45);
  const sw = lr.uniform(0.035, 0.055);
  const c = Math.cos(th);
  const s = Math.sin(th);
  const ox = lr.next();
  const oy = lr.next();
  const uv = (x: number, y: number): [number, number] => [(x - 0.5) * c - (y - 0.5) * s + ox, (x - 0.5) * s + (y - 0.5) * c + oy];
  const onStreet = (x: number, y: number): boolean => {
    const [u, v] = uv(x, y);
    return Math.abs(frac(u / street) - 0.5) * street < sw || Math.abs(frac(v / street) - 0.5) * street < sw;
  };
  const footprints: Footprint[] = [];
  const roofs: number[] = [];
  const nB = 3 + Math.round(density * 7);
  for (let tries = 0; footprints.length < nB && tries < 200; tries++) {
    const cx = lr.uniform(0.06, 0.94);
    const cy = lr.uniform(0.06, 0.94);
    const a = lr.uniform(0.035, 0.09);
    const b = lr.uniform(0.03, 0.07);
    const ang = th + (lr.next() < 0.8 ? 0 : lr.uniform(-0.4, 0.4));
    const lshape = lr.next() < 0.3;
    const pts: Array<[number, number]> = lshape
      ? [[-a, -b], [a, -b], [a, 0], [0, 0], [0, b], [-a, b]]
      : [[-a, -b], [a, -b], [a, b], [-a, b]];
    const ring = rotated(cx, cy, pts, ang);
    // keep off streets and other buildings (test a few points of the box)
    const probe = [[0, 0], [-a, -b], [a, -b], [a, b], [-a, b]].map(([x, y]) => [cx + x * Math.cos(ang) - y * Math.sin(ang), cy + x * Math.sin(ang) + y * Math.cos(ang)]);
    if (probe.some(([x, y]) => onStreet(x, y))) continue;
    if (footprints.some((f) => probe.some(([x, y]) => insideRing(f, x, y)) || f.some(([x, y]) => insideRing(ring, x, y)))) continue;
    footprints.push(ring);
    roofs.push([ROOF, DARKROOF, TILE][lr.int(3)]);
  }
  const trees = new ValueNoise(lr, 7, 2);
  const lots = new ValueNoise(lr, 3, 2);
  const pads = Array.from({ length: 1 + lr.int(3) }, () => ({ x: lr.next(), y: lr.next(), r: lr.uniform(0.04, 0.1) }));
  const pool = lr.next() < 0.3 ? { x: lr.next(), y: lr.next() } : null;
  const sun: [number, number] = [lr.uniform(0.01, 0.025), lr.uniform(0.01, 0.025)];
  const f: CoverFn = (x, y, w) => {
    for (let i = 0; i < footprints.length; i++) {
      if (insideRing(footprints[i], x, y)) {
        w[roofs[i]] += 1;
        return;
      }
    }
    if (onStreet(x, y)) {
      w[ROAD] += 1;
      return;
    }
    if (footprints.some((fp) => insideRing(fp, x - sun[0], y - sun[1]))) w[SHADOW] += 2; // building shadow
    w[GRASS] += 0.8;
    const t = fbm01(trees, x, y);
    w[FOREST] += 3 * smooth(0.6, 0.68, t);
    w[SOIL] += 1.2 * smooth(0.6, 0.7, fbm01(lots, x, y));
    w[URBAN] += 0.3;
    for (const p of pads) if (Math.hypot(x - p.x, y - p.y) < p.r) w[CONCRETE] += 6;
    if (pool && Math.abs(x - pool.x) < 0.02 && Math.abs(y - pool.y) < 0.015) w[WATER] += 8;
  };
  const mix = renderCovers(S, S >= 64 ? 1 : 2, f);
  const nz = rng.fork('acquisition');
  const acq: Acquisition = {
    gain: nz.uniform(0.7, 1.3),
    haze: nz.uniform(0, 0.6),
    dryness: nz.uniform(0, 0.8),
    wb: [nz.uniform(0.93, 1.07), nz.uniform(0.95, 1.05), nz.uniform(0.93, 1.07)],
    noise: 30,
  };
  const ms = coversToBands(mix, S, acq, rng.fork('noise'));
  const mask = makeImg(S, S, 1);
  for (let py = 0; py < S; py++) {
    for (let px = 0; px < S; px++) {
      const x = (px + 0.5) / S;
      const y = (py + 0.5) / S;
      mask.data[py * S + px] = footprints.some((fp) => insideRing(fp, x, y)) ? 1 : 0; // union of polygons, as the rasteriser
    }
  }
  return { ms, rgb: satelliteRgb(ms), footprints, mask };
}
