/**
 * Pathology-like patches for the embedded Camelyon17 domain (pure JS, deterministic from an `Rng`).
 *
 * Tissue is drawn as two stain concentration maps — hematoxylin (nuclei, blue-purple) and eosin (stroma and
 * cytoplasm, pink) — and turned into transmitted RGB with the Beer–Lambert law, I = exp(−(c_H·OD_H + c_E·OD_E)), using
 * the Ruifrok–Johnston stain vectors. The **hospital** (scanner and staining protocol) is what changes the stain vectors,
 * the stain amounts, white balance, gamma and focus blur; the tissue itself is drawn from the same distribution in
 * every hospital, so a classifier that learned the colour of one hospital meets a real domain shift at another.
 *
 * Tissue: lymph-node background of small, round, densely packed, uniformly dark lymphocyte nuclei in a pink fibrous
 * stroma (sometimes fat cells); metastatic tumour as clusters of large irregular pale (vesicular) nuclei with a dark
 * rim and a nucleolus, with more purple cytoplasm. **Label** (as Camelyon17-WILDS): tumour iff tumour tissue lies in the
 * central third of the patch; 30 % of normal patches hold a tumour cluster away from the centre (hard negatives).
 */
import { Rng } from '../lib/rng';
import { Img, makeImg } from './image';
import { ValueNoise } from './embedded-render';
import { fbm01 } from './embedded-scenes';

/** Staining / scanning of one hospital. */
export interface HospitalStain {
  /** Optical-density vectors (RGB) of hematoxylin and eosin (normalised to unit length when used). */
  hematoxylin: [number, number, number];
  eosin: [number, number, number];
  /** Multipliers of the stain amounts. */
  hScale: number;
  eScale: number;
  /** White balance on R, G, B after absorption. */
  wb: [number, number, number];
  /** Display gamma (1 = none). */
  gamma: number;
  /** Gaussian focus blur σ in units of the patch side (0 = sharp). */
  blur: number;
}

/**
 * The five hospitals (Camelyon17 centers 0–4). Centers 1 and 2 are the WILDS OOD validation and test hospitals; 2 has
 * the strongest shift (bluish hematoxylin, weak orange eosin, darker, blurred).
 */
export const HOSPITAL_STAINS: readonly HospitalStain[] = [
  { hematoxylin: [0.65, 0.7, 0.29], eosin: [0.07, 0.99, 0.11], hScale: 1, eScale: 1, wb: [1, 1, 1], gamma: 1, blur: 0 },
  { hematoxylin: [0.52, 0.75, 0.41], eosin: [0.1, 0.97, 0.22], hScale: 1.15, eScale: 0.75, wb: [0.95, 1, 1.06], gamma: 1.08, blur: 0.006 },
  { hematoxylin: [0.48, 0.76, 0.44], eosin: [0.04, 0.88, 0.47], hScale: 1.35, eScale: 0.6, wb: [0.92, 0.97, 1.08], gamma: 1.15, blur: 0.012 },
  { hematoxylin: [0.69, 0.68, 0.24], eosin: [0.12, 0.98, 0.16], hScale: 0.85, eScale: 1.2, wb: [1.04, 1, 0.95], gamma: 0.95, blur: 0 },
  { hematoxylin: [0.62, 0.72, 0.31], eosin: [0.08, 0.96, 0.24], hScale: 1, eScale: 0.9, wb: [1.01, 0.99, 1.01], gamma: 1, blur: 0.006 },
];

const CENTER = 1 / 6; // the central third: |x − 0.5| < 1/6 and |y − 0.5| < 1/6

interface Nucleus {
  x: number;
  y: number;
  r: number;
  tumor: boolean;
  /** shape irregularity phases */
  a1: number;
  a2: number;
  e: number;
  rot: number;
}

/** Render one patch at size S: `tumor` sets the label (tumour tissue in the central third), `hospital` the staining. */
export function renderPathologyPatch(tumor: boolean, hospital: number, S: number, rng: Rng, slideJitter: Rng | null = null): Img {
  const st = HOSPITAL_STAINS[hospital];
  if (!st) throw new Error(`renderPathologyPatch: hospital must be 0–${HOSPITAL_STAINS.length - 1}, got ${hospital}`);
  const lr = rng.fork('tissue');
  // tumour region: a noisy blob; for tumour patches it covers the centre, for hard negatives it stays outside the centre
  const hard = !tumor && lr.next() < 0.35;
  // normal look-alikes: a germinal centre (medium, paler nuclei) in 35 % of the normal patches, anywhere
  const germinal = !tumor && lr.next() < 0.35 ? { x: lr.uniform(0.2, 0.8), y: lr.uniform(0.2, 0.8), r: lr.uniform(0.2, 0.35) } : null;
  const blob = new ValueNoise(lr, 3, 2);
  let cx = 0.5;
  let cy = 0.5;
  let rad = 0;
  if (tumor) {
    // the region always holds the patch centre but may cover only part of the central third
    cx = lr.uniform(0.3, 0.7);
    cy = lr.uniform(0.3, 0.7);
    rad = Math.max(Math.hypot(cx - 0.5, cy - 0.5) + 0.08, lr.uniform(0.18, 0.45));
  } else if (hard) {
    const corner = lr.int(4);
    cx = corner % 2 ? lr.uniform(0.92, 1.1) : lr.uniform(-0.1, 0.08);
    cy = corner > 1 ? lr.uniform(0.92, 1.1) : lr.uniform(-0.1, 0.08);
    rad = lr.uniform(0.25, 0.4);
  }
  const inTumor = (x: number, y: number): boolean => rad > 0 && Math.hypot(x - cx, y - cy) < rad * (0.8 + 0.4 * fbm01(blob, x, y));
  // hard negatives: the region must stay out of the central third
  const inCentre = (x: number, y: number): boolean => Math.abs(x - 0.5) < CENTER && Math.abs(y - 0.5) < CENTER;
  const region = hard ? (x: number, y: number): boolean => !inCentre(x, y) && inTumor(x, y) : inTumor;
  // nuclei: dart throwing with minimum distances; lymphocytes small and dense, tumour nuclei large
  const nuclei: Nucleus[] = [];
  const lymphR = lr.uniform(0.028, 0.036);
  const density = lr.uniform(0.75, 1);
  const fat = !tumor && lr.next() < 0.25 ? Array.from({ length: 2 + lr.int(3) }, () => ({ x: lr.next(), y: lr.next(), r: lr.uniform(0.1, 0.18) })) : [];
  const inFat = (x: number, y: number): boolean => fat.some((f) => Math.hypot(x - f.x, y - f.y) < f.r);
  // dart throwing with a minimum distance, tested against the nuclei of the 3×3 neighbouring cells of a 4×4 grid
  // (cell 0.25 > the largest exclusion distance (0.085 + 0.085)·1.25)
  const PG = 4;
  const placed: Nucleus[][] = Array.from({ length: (PG + 2) * (PG + 2) }, () => []);
  const pcell = (v: number): number => Math.min(PG, Math.max(-1, Math.floor(v * PG))) + 1; // −0.05…1.05 → 0…PG+1
  for (let t = 0; t < 2500 && nuclei.length < 400; t++) {
    const x = lr.uniform(-0.05, 1.05);
    const y = lr.uniform(-0.05, 1.05);
    const tum = region(x, y);
    if (!tum && (inFat(x, y) || lr.next() > density)) continue;
    const inGerm = !tum && germinal !== null && Math.hypot(x - germinal.x, y - germinal.y) < germinal.r;
    const r = tum ? lr.uniform(0.045, 0.075) : inGerm ? lr.uniform(0.04, 0.055) : lymphR * lr.uniform(0.85, 1.15);
    const gap = tum ? 1.25 : 1.05;
    const cx0 = pcell(x);
    const cy0 = pcell(y);
    let clash = false;
    for (let gy = Math.max(0, cy0 - 1); gy <= Math.min(PG + 1, cy0 + 1) && !clash; gy++) {
      for (let gx = Math.max(0, cx0 - 1); gx <= Math.min(PG + 1, cx0 + 1) && !clash; gx++) {
        clash = placed[gy * (PG + 2) + gx].some((n) => Math.hypot(n.x - x, n.y - y) < (n.r + r) * gap);
      }
    }
    if (clash) continue;
    const nu: Nucleus = { x, y, r, tumor: tum || inGerm, a1: lr.uniform(0, 6.3), a2: lr.uniform(0, 6.3), e: tum ? lr.uniform(0.1, 0.3) : inGerm ? lr.uniform(0.05, 0.15) : 0.05, rot: lr.uniform(0, Math.PI) };
    nuclei.push(nu);
    placed[cy0 * (PG + 2) + cx0].push(nu);
  }
  // for rendering: the nuclei whose bounding box (1.5·r) touches each cell of a 16×16 grid
  const G = 16;
  const grid: Nucleus[][] = Array.from({ length: G * G }, () => []);
  const cellOf = (v: number): number => Math.min(G - 1, Math.max(0, Math.floor(v * G)));
  for (const n of nuclei) {
    const r = n.r * 1.5;
    for (let gy = cellOf(n.y - r); gy <= cellOf(n.y + r); gy++) for (let gx = cellOf(n.x - r); gx <= cellOf(n.x + r); gx++) grid[gy * G + gx].push(n);
  }
  const near = (x: number, y: number): Nucleus[] => grid[cellOf(y) * G + cellOf(x)];
  const fibers = new ValueNoise(lr, 12, 3);
  const fdir = lr.uniform(0, Math.PI);
  const fc = Math.cos(fdir);
  const fs = Math.sin(fdir);
  const jitter = slideJitter ?? rng.fork('slide');
  const hs = st.hScale * jitter.uniform(0.9, 1.1);
  const es = st.eScale * jitter.uniform(0.9, 1.1);
  const unit = (v: readonly number[]): number[] => {
    const n = Math.hypot(v[0], v[1], v[2]);
    return v.map((a) => a / n);
  };
  const H = unit(st.hematoxylin);
  const E = unit(st.eosin);
  const ss = 2;
  const img = makeImg(S, S, 3);
  for (let py = 0; py < S; py++) {
    for (let px = 0; px < S; px++) {
      const acc = [0, 0, 0];
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          const x = (px + (sx + 0.5) / ss) / S;
          const y = (py + (sy + 0.5) / ss) / S;
          // stroma: anisotropic fibres
          const f = fbm01(fibers, 0.5 + 0.7 * ((x - 0.5) * fc + (y - 0.5) * fs), 0.5 + 0.14 * (-(x - 0.5) * fs + (y - 0.5) * fc)); // elongated fibres
          let cE = 0.35 + 0.45 * f;
          let cH = 0.06;
          if (inFat(x, y)) {
            const edge = fat.some((q) => Math.abs(Math.hypot(x - q.x, y - q.y) - q.r) < 0.01);
            cE = edge ? 0.5 : 0.03;
            cH = 0.01;
          }
          if (region(x, y)) {
            cE = 0.55 + 0.2 * f; // tumour cytoplasm: denser, purplish
            cH = 0.25;
          }
          for (const n of near(x, y)) {
            const dx = x - n.x;
            const dy = y - n.y;
            if (Math.abs(dx) > n.r * 1.5 || Math.abs(dy) > n.r * 1.5) continue;
            const ang = Math.atan2(dy, dx);
            const u = dx * Math.cos(n.rot) + dy * Math.sin(n.rot);
            const v = -dx * Math.sin(n.rot) + dy * Math.cos(n.rot);
            const rr = n.r * (1 + n.e * 0.5 * Math.sin(2 * ang + n.a1) + n.e * 0.3 * Math.sin(3 * ang + n.a2));
            const d = Math.hypot(u, v * (1 + n.e)) / rr;
            if (d >= 1) continue;
            if (n.tumor) {
              // vesicular: pale centre, dark rim, one nucleolus
              const nucleolus = Math.hypot(dx - n.r * 0.2, dy + n.r * 0.15) < n.r * 0.18;
              cH = nucleolus ? 2.0 : d > 0.78 ? 1.5 : 0.75;
              cE = 0.2;
            } else {
              cH = 1.7;
              cE = 0.1;
            }
            break;
          }
          const od = [0, 1, 2].map((c) => hs * cH * H[c] + es * cE * E[c]);
          for (let c = 0; c < 3; c++) acc[c] += Math.exp(-od[c] * 1.1);
        }
      }
      for (let c = 0; c < 3; c++) img.data[(py * S + px) * 3 + c] = acc[c] / (ss * ss);
    }
  }
  const out = st.blur > 0 ? gaussianBlur(img, st.blur * S) : img;
  const noise = rng.fork('noise');
  const bright = jitter.uniform(0.96, 1.04);
  for (let i = 0; i < out.data.length; i++) {
    const c = i % 3;
    let v = Math.pow(Math.min(1, Math.max(0, out.data[i] * st.wb[c] * bright)), st.gamma) + noise.normal(0, 0.01);
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    out.data[i] = v;
  }
  return out;
}

/** Separable Gaussian blur (σ in pixels, reflect borders) of an RGB image. */
function gaussianBlur(img: Img, sigma: number): Img {
  const r = Math.max(1, Math.ceil(2.5 * sigma));
  const k: number[] = [];
  let tot = 0;
  for (let i = -r; i <= r; i++) {
    const v = Math.exp(-(i * i) / (2 * sigma * sigma));
    k.push(v);
    tot += v;
  }
  for (let i = 0; i < k.length; i++) k[i] /= tot;
  const { height: H, width: W, channels: C } = img;
  const refl = (i: number, n: number): number => (i < 0 ? -i - 1 : i >= n ? 2 * n - i - 1 : i);
  const tmp = makeImg(H, W, C);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++)
      for (let c = 0; c < C; c++) {
        let s = 0;
        for (let j = -r; j <= r; j++) s += k[j + r] * img.data[(y * W + refl(x + j, W)) * C + c];
        tmp.data[(y * W + x) * C + c] = s;
      }
  const out = makeImg(H, W, C);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++)
      for (let c = 0; c < C; c++) {
        let s = 0;
        for (let j = -r; j <= r; j++) s += k[j + r] * tmp.data[(refl(y + j, H) * W + x) * C + c];
        out.data[(y * W + x) * C + c] = s;
      }
  return out;
}
