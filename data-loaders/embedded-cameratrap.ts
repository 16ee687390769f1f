/**
 * Camera-trap-like images for the embedded iWildCam domain (pure JS, deterministic from an `Rng`).
 *
 * Every camera **location** has a fixed scene — horizon height, ground colour and texture, vegetation wall, tree trunks,
 * foreground bushes, a camera tint — and its own subset of the species (animals are local). An image is that scene at
 * a time of day: daylight colour images with a brightness and warmth that follow the hour and dappled light, or night
 * infrared images (grey, flash vignette, noisy, eye shine). Animals are drawn on the ground with perspective (smaller
 * higher up), facing left or right, sometimes cut by the frame or hidden behind a bush; bursts of three frames show
 * the same animal moving.
 *
 * Species follow a **long-tailed** distribution with sparse category ids as in iWildCam (0 = empty, the most frequent);
 * silhouettes differ by body shape, size, legs, tail, head and coat (plain, spotted, banded, white belly).
 */
import { Rng } from '../lib/rng';
import { Img, makeImg } from './image';
import { ValueNoise } from './embedded-render';
import { fbm01 } from './embedded-scenes';

export interface Species {
  name: string;
  /** iWildCam-style category id (sparse). */
  categoryId: number;
  /** relative frequency (long tail) */
  weight: number;
  /** body half-length / half-height (fractions of the body scale) */
  body: [number, number];
  /** overall size (fraction of image height at the bottom of the frame) */
  size: number;
  legs: number;
  legLen: number;
  tail: number;
  head: number;
  /** coat colour (daylight RGB) */
  color: [number, number, number];
  pattern: 'plain' | 'spots' | 'bands' | 'belly';
  upright: boolean;
}

/** The species (index 0 = empty frame), long-tailed weights. */
export const CAMERA_TRAP_SPECIES: readonly Species[] = [
  { name: 'empty', categoryId: 0, weight: 30, body: [0, 0], size: 0, legs: 0, legLen: 0, tail: 0, head: 0, color: [0, 0, 0], pattern: 'plain', upright: false },
  { name: 'deer', categoryId: 2, weight: 22, body: [1, 0.42], size: 0.42, legs: 4, legLen: 0.9, tail: 0.1, head: 0.32, color: [0.55, 0.38, 0.22], pattern: 'belly', upright: false },
  { name: 'peccary', categoryId: 3, weight: 14, body: [1, 0.55], size: 0.3, legs: 4, legLen: 0.35, tail: 0.05, head: 0.4, color: [0.28, 0.26, 0.25], pattern: 'plain', upright: false },
  { name: 'agouti', categoryId: 7, weight: 10, body: [1, 0.6], size: 0.18, legs: 4, legLen: 0.4, tail: 0, head: 0.38, color: [0.62, 0.45, 0.2], pattern: 'plain', upright: false },
  { name: 'curassow', categoryId: 10, weight: 7, body: [0.8, 0.6], size: 0.22, legs: 2, legLen: 0.7, tail: 0.6, head: 0.28, color: [0.08, 0.08, 0.1], pattern: 'plain', upright: false },
  { name: 'monkey', categoryId: 24, weight: 5, body: [0.45, 0.8], size: 0.26, legs: 2, legLen: 0.5, tail: 1.1, head: 0.35, color: [0.4, 0.3, 0.2], pattern: 'plain', upright: true },
  { name: 'armadillo', categoryId: 36, weight: 4, body: [1, 0.5], size: 0.16, legs: 4, legLen: 0.2, tail: 0.5, head: 0.25, color: [0.5, 0.45, 0.4], pattern: 'bands', upright: false },
  { name: 'ocelot', categoryId: 67, weight: 3, body: [1, 0.4], size: 0.26, legs: 4, legLen: 0.6, tail: 0.8, head: 0.3, color: [0.75, 0.6, 0.35], pattern: 'spots', upright: false },
  { name: 'tapir', categoryId: 71, weight: 3, body: [1, 0.55], size: 0.5, legs: 4, legLen: 0.5, tail: 0, head: 0.35, color: [0.18, 0.16, 0.16], pattern: 'plain', upright: false },
  { name: 'human', categoryId: 97, weight: 2, body: [0.3, 1], size: 0.55, legs: 2, legLen: 0.8, tail: 0, head: 0.3, color: [0.2, 0.35, 0.55], pattern: 'plain', upright: true },
];

/** A camera location's fixed scene. */
export interface CameraLocation {
  horizon: number;
  ground: [number, number, number];
  vegetation: [number, number, number];
  sky: number;
  trunks: Array<{ x: number; w: number; c: number }>;
  bushes: Array<{ x: number; y: number; r: number }>;
  tint: [number, number, number];
  /** species index → relative presence at this location (1 for empty) */
  presence: number[];
  groundNoise: ValueNoise;
  vegNoise: ValueNoise;
}

/** Draw a location from its own stream. */
export function cameraLocation(rng: Rng): CameraLocation {
  const g = rng.uniform(0.25, 0.5);
  const hue = rng.next();
  return {
    horizon: rng.uniform(0.22, 0.45),
    ground: [g * rng.uniform(1.05, 1.35), g * rng.uniform(0.85, 1.1), g * rng.uniform(0.5, 0.8)],
    vegetation: [rng.uniform(0.08, 0.25), rng.uniform(0.2, 0.45) * (hue < 0.5 ? 1 : 0.8), rng.uniform(0.06, 0.2)],
    sky: rng.next() < 0.4 ? rng.uniform(0.1, 0.35) : 0,
    trunks: Array.from({ length: 1 + rng.int(3) }, () => ({ x: rng.next(), w: rng.uniform(0.03, 0.08), c: rng.uniform(0.2, 0.45) })),
    bushes: Array.from({ length: rng.int(3) }, () => ({ x: rng.next() < 0.5 ? rng.uniform(0, 0.2) : rng.uniform(0.8, 1), y: rng.uniform(0.75, 1), r: rng.uniform(0.1, 0.2) })),
    tint: [rng.uniform(0.92, 1.08), rng.uniform(0.95, 1.05), rng.uniform(0.9, 1.1)],
    presence: CAMERA_TRAP_SPECIES.map((_, i) => (i === 0 ? 1 : rng.next() < 0.75 ? rng.uniform(0.5, 1.5) : 0)),
    groundNoise: new ValueNoise(rng, 10, 3),
    vegNoise: new ValueNoise(rng, 16, 3),
  };
}

/** Draw a species index for a location (long-tailed weights × local presence). */
export function drawSpecies(loc: CameraLocation, rng: Rng): number {
  const w = CAMERA_TRAP_SPECIES.map((s, i) => s.weight * loc.presence[i]);
  const tot = w.reduce((a, b) => a + b, 0);
  let u = rng.next() * tot;
  for (let i = 0; i < w.length; i++) {
    u -= w[i];
    if (u < 0) return i;
  }
  return 0;
}

/** Where the animal of a burst stands and how it moves between frames. */
export interface AnimalPose {
  /** ground contact point (unit coordinates) */
  x: number;
  y: number;
  facing: 1 | -1;
  /** per-frame displacement */
  dx: number;
  scaleJitter: number;
}

export function animalPose(loc: CameraLocation, rng: Rng): AnimalPose {
  return {
    x: rng.uniform(0.05, 0.95),
    y: rng.uniform(loc.horizon + 0.2, 1.02),
    facing: rng.next() < 0.5 ? 1 : -1,
    dx: rng.uniform(0.02, 0.08) * (rng.next() < 0.5 ? 1 : -1),
    scaleJitter: rng.uniform(0.85, 1.15),
  };
}

/** Coverage of the animal at (x, y): 0 none, 1 body, 2 eye (for night eye shine); `shade` gets the coat shading. */
function animalAt(sp: Species, cx: number, cy: number, scale: number, facing: number, x: number, y: number, out: { shade: number }): number {
  const s = scale;
  const bx = sp.body[0] * s * 0.5;
  const by = sp.body[1] * s * 0.5;
  const legH = sp.legLen * by * 1.6;
  const bodyY = cy - legH - by; // body centre above the legs
  const u = (x - cx) * facing;
  const v = y - bodyY;
  // body
  const eb = (u / bx) ** 2 + (v / by) ** 2;
  if (eb < 1) {
    out.shade = 0.8 + 0.35 * (-v / by);
    if (sp.pattern === 'belly' && v > by * 0.35) out.shade = 1.9;
    if (sp.pattern === 'spots' && Math.sin(u * 60 / s) * Math.sin(v * 60 / s) > 0.55) out.shade = 0.35;
    if (sp.pattern === 'bands' && Math.sin(u * 40 / s) > 0.5) out.shade = 0.6;
    return 1;
  }
  // head, forward and up (upright species: on top)
  const hr = sp.head * s * 0.5;
  const hx = sp.upright ? 0 : bx * 0.95;
  const hy = sp.upright ? -by - hr * 0.8 : -by * 0.6;
  const dh = Math.hypot(u - hx, v - hy);
  if (dh < hr) {
    out.shade = 0.9;
    const ex = hx + hr * (sp.upright ? 0.3 : 0.45);
    const ey = hy - hr * 0.25;
    if (Math.hypot(u - ex, v - ey) < hr * 0.2) return 2;
    return 1;
  }
  // legs
  for (let k = 0; k < sp.legs; k++) {
    const lx = sp.legs === 2 ? (k === 0 ? -0.25 : 0.25) * bx : (-0.7 + (1.4 * k) / (sp.legs - 1)) * bx;
    if (Math.abs(u - lx) < s * 0.025 + bx * 0.04 && v > by * 0.5 && v < by + legH) {
      out.shade = 0.7;
      return 1;
    }
  }
  // tail (backwards)
  if (sp.tail > 0) {
    const tx = -bx - sp.tail * s * 0.5 * (sp.upright ? 0.6 : 1);
    if (u < -bx * 0.8 && u > tx && Math.abs(v - (sp.upright ? by * 0.6 : -by * 0.1) + (u + bx) * (sp.upright ? 0.3 : 0.15)) < s * 0.02 + 0.003) {
      out.shade = 0.75;
      return 1;
    }
  }
  return 0;
}

/**
 * Render one frame of size S at `hour` (0–23): the location's scene, optionally an animal of species `sp` (index into
 * `CAMERA_TRAP_SPECIES`, 0 = none) at `pose` shifted by `frame`·dx.
 */
export function renderCameraTrapFrame(loc: CameraLocation, sp: number, pose: AnimalPose | null, frame: number, hour: number, S: number, rng: Rng): Img {
  const night = hour < 6 || hour >= 19;
  const daylight = night ? 0 : Math.max(0.35, Math.sin((Math.PI * (hour - 6)) / 13));
  const warm = night ? 0 : 1 - daylight; // dawn/dusk warmer
  const dapple = new ValueNoise(rng.fork('dapple'), 5, 2);
  const species = CAMERA_TRAP_SPECIES[sp];
  const scale = pose ? species.size * Math.max(0.25, (pose.y - loc.horizon) / (1 - loc.horizon)) * pose.scaleJitter : 0;
  const ax = pose ? pose.x + frame * pose.dx : 0;
  const img = makeImg(S, S, 3);
  const ss = 2;
  const shade = { shade: 1 };
  for (let py = 0; py < S; py++) {
    for (let px = 0; px < S; px++) {
      let r = 0;
      let g = 0;
      let b = 0;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          const x = (px + (sx + 0.5) / ss) / S;
          const y = (py + (sy + 0.5) / ss) / S;
          let c: [number, number, number];
          if (y < loc.horizon) {
            const t = fbm01(loc.vegNoise, x, y);
            const gap = loc.sky > 0 && t > 1 - loc.sky;
            c = gap ? [0.75, 0.8, 0.85] : [loc.vegetation[0] * (0.6 + t), loc.vegetation[1] * (0.6 + t), loc.vegetation[2] * (0.6 + t)];
          } else {
            const depth = (y - loc.horizon) / (1 - loc.horizon);
            const t = fbm01(loc.groundNoise, 0.5 + (x - 0.5) * (0.4 + 0.6 * depth), depth); // coarser texture far away
            const k = 0.7 + 0.6 * t;
            c = [loc.ground[0] * k, loc.ground[1] * k, loc.ground[2] * k];
          }
          for (const tr of loc.trunks) if (Math.abs(x - tr.x) < tr.w / 2 && y < loc.horizon + 0.1) c = [tr.c, tr.c * 0.85, tr.c * 0.7];
          let eye = false;
          if (pose && sp > 0) {
            const a = animalAt(species, ax, pose.y, scale, pose.facing, x, y, shade);
            if (a > 0) {
              const k = shade.shade;
              c = [species.color[0] * k, species.color[1] * k, species.color[2] * k];
              eye = a === 2;
            }
          }
          for (const bu of loc.bushes) {
            if (Math.hypot(x - bu.x, (y - bu.y) * 1.4) < bu.r * (0.8 + 0.4 * fbm01(loc.vegNoise, x, 1 - y))) c = [loc.vegetation[0] * 0.9, loc.vegetation[1] * 1.1, loc.vegetation[2] * 0.8];
          }
          if (night) {
            // infrared: grey, flash vignette, eye shine
            const lum = 0.3 * c[0] + 0.55 * c[1] + 0.15 * c[2];
            const vig = Math.exp(-((x - 0.5) ** 2 + (y - 0.6) ** 2) * 3.5);
            const v = eye ? 1 : Math.min(1, lum * 1.8 * vig + 0.03);
            r += v;
            g += v;
            b += v;
          } else {
            const light = daylight * (0.75 + 0.5 * fbm01(dapple, x, y));
            r += c[0] * light * (1 + 0.25 * warm) * loc.tint[0];
            g += c[1] * light * loc.tint[1];
            b += c[2] * light * (1 - 0.25 * warm) * loc.tint[2];
          }
        }
      }
      const o = (py * S + px) * 3;
      img.data[o] = r / (ss * ss);
      img.data[o + 1] = g / (ss * ss);
      img.data[o + 2] = b / (ss * ss);
    }
  }
  const noise = rng.fork('noise');
  const sd = night ? 0.05 : 0.015;
  for (let i = 0; i < img.data.length; i += 3) {
    const n = noise.normal(0, sd);
    for (let c = 0; c < 3; c++) {
      const v = img.data[i + c] + (night ? n : noise.normal(0, sd));
      img.data[i + c] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
  }
  return img;
}
