/**
 * Embedded STRUCTURED tasks (VTAB's third group: counting, orientation — CLEVR-count and dSprites-orientation in
 * spirit), rendered from a seed so every VTAB group has an offline task. Unlike the natural / satellite domains the
 * label is not what an object is but how many there are, or how one is turned: exactly what token merging can lose
 * (merged tokens blur counts and edges), so these tasks are where PYRA's re-activation should matter most.
 *
 * - `count`: 1–6 objects (the natural domain's shapes, random colour, scale, rotation, no overlap) on a noisy
 *   two-tone background; class = the count ('1'…'6').
 * - `objects` (for the NATURAL group, which needs a test split the natural domain's train / val lacks): the natural
 *   domain's ten shape classes rendered the same way, seeded apart from it, split 60 / 20 / 20.
 * - `orientation`: one elongated bar (random length, width, colour, position) on the same kind of background; class =
 *   its angle in [0°, 180°) in 8 bins of 22.5° ('000'…'157'). A bar is symmetric under 180°, so the bins are complete.
 *
 * On disk: ImageFolder `<cache>/structured-<task>-<seed>-<size>-<perClass>/{train,val,test}/<class>/<i>.png`, split
 * 60 / 20 / 20 per class like the satellite domain; generated once into a temporary folder whose rename publishes it
 * (`COMPLETE.json` last), reused afterwards. The existing embedded domains and their defaults are untouched.
 */
import { promises as fsp } from 'fs';
import * as path from 'path';
import { Rng } from '../lib/rng';
import { fmtValue } from '../lib/check';
import { ensureDir, tempOwnerTag } from '../lib/io/atomic';
import { Dataset } from './dataset';
import { encodeImage } from './encode';
import { imageFolder } from './formats/imagefolder';
import { Img, makeImg } from './image';
import { NATURAL_CLASSES, NATURAL_SHAPES, renderNatural } from './embedded-render';

export const STRUCTURED_TASKS = {
  objects: NATURAL_CLASSES,
  count: ['1', '2', '3', '4', '5', '6'],
  orientation: ['000', '022', '045', '067', '090', '112', '135', '157'],
} as const;
export type StructuredTask = keyof typeof STRUCTURED_TASKS;

/** Bumped whenever the renderer's output changes. */
const STRUCTURED_VERSION = 1;

function background(S: number, rng: Rng): { img: Img; put: (x: number, y: number, c: readonly number[], a: number) => void } {
  const img = makeImg(S, S, 3);
  const c0 = [rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.6), rng.uniform(0.1, 0.6)];
  const c1 = c0.map((v) => Math.min(1, v + rng.uniform(0.05, 0.25)));
  const split = rng.uniform(0.3, 0.7);
  const noise = rng.fork('noise');
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const base = y / S < split ? c0 : c1;
      for (let k = 0; k < 3; k++) img.data[(y * S + x) * 3 + k] = Math.min(1, Math.max(0, base[k] + noise.uniform(-0.06, 0.06)));
    }
  }
  const put = (x: number, y: number, c: readonly number[], a: number): void => {
    const i = (y * S + x) * 3;
    for (let k = 0; k < 3; k++) img.data[i + k] = (1 - a) * img.data[i + k] + a * c[k];
  };
  return { img, put };
}

/** Coverage (0…1, 3×3 supersampled) of a pixel by an inside-test in image units. */
function coverage(px: number, py: number, S: number, inside: (x: number, y: number) => boolean): number {
  let n = 0;
  for (let sy = 0; sy < 3; sy++) for (let sx = 0; sx < 3; sx++) if (inside((px + (sx + 0.5) / 3) / S, (py + (sy + 0.5) / 3) / S)) n++;
  return n / 9;
}

function brightColour(rng: Rng): number[] {
  const c = [rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0, 1)];
  c[rng.int(3)] = rng.uniform(0.85, 1);
  return c;
}

/** `count`: `n` (1–6) shapes that do not overlap. */
export function renderCount(n: number, S: number, rng: Rng): Img {
  if (!(Number.isInteger(n) && n >= 1 && n <= 6)) throw new Error(`renderCount: n must be an integer in [1, 6], got ${fmtValue(n)}`);
  const { img, put } = background(S, rng);
  const shapes = Object.values(NATURAL_SHAPES);
  const placed: Array<{ x: number; y: number; r: number }> = [];
  for (let tries = 0; placed.length < n; tries++) {
    if (tries > 5000) throw new Error(`renderCount: could not place ${n} objects at ${S} px`);
    const r = rng.uniform(0.07, 0.11);
    const o = { x: rng.uniform(r, 1 - r), y: rng.uniform(r, 1 - r), r };
    if (placed.some((p) => Math.hypot(p.x - o.x, p.y - o.y) < p.r + o.r + 0.03)) continue;
    placed.push(o);
    const shape = shapes[rng.int(shapes.length)];
    const rot = rng.uniform(-Math.PI, Math.PI);
    const [cr, sr] = [Math.cos(rot), Math.sin(rot)];
    const col = brightColour(rng);
    const inside = (x: number, y: number): boolean => {
      const dx = (x - o.x) / o.r;
      const dy = (y - o.y) / o.r;
      return shape(cr * dx + sr * dy, -sr * dx + cr * dy);
    };
    const [x0, x1] = [Math.max(0, Math.floor((o.x - o.r) * S)), Math.min(S - 1, Math.ceil((o.x + o.r) * S))];
    const [y0, y1] = [Math.max(0, Math.floor((o.y - o.r) * S)), Math.min(S - 1, Math.ceil((o.y + o.r) * S))];
    for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) put(x, y, col, coverage(x, y, S, inside));
  }
  return img;
}

/** `orientation`: one bar at an angle drawn uniformly inside bin `bin` (0–7, 22.5° each). */
export function renderOrientation(bin: number, S: number, rng: Rng): Img {
  if (!(Number.isInteger(bin) && bin >= 0 && bin < 8)) throw new Error(`renderOrientation: bin must be an integer in [0, 7], got ${fmtValue(bin)}`);
  const { img, put } = background(S, rng);
  const a = ((bin + rng.uniform(0.1, 0.9)) * Math.PI) / 8; // inside the bin, away from its edges
  const [ca, sa] = [Math.cos(a), Math.sin(a)];
  const len = rng.uniform(0.28, 0.42);
  const wid = rng.uniform(0.05, 0.08);
  const cx = rng.uniform(0.35, 0.65);
  const cy = rng.uniform(0.35, 0.65);
  const col = brightColour(rng);
  // image y grows downwards: the angle is measured counter-clockwise as seen
  const inside = (x: number, y: number): boolean => {
    const dx = x - cx;
    const dy = cy - y;
    return Math.abs(ca * dx + sa * dy) < len && Math.abs(-sa * dx + ca * dy) < wid;
  };
  for (let y = 0; y < S; y++) for (let x = 0; x < S; x++) put(x, y, col, coverage(x, y, S, inside));
  return img;
}

export interface StructuredOptions {
  /** Generation seed (default 0). */
  seed?: number;
  /** Image side (default 32). */
  size?: number;
  /** Images per class (default 60 → 36 train / 12 val / 12 test per class). */
  perClass?: number;
  /** Cache root (required: the caller's embedded cache folder). */
  cacheDir: string;
}

/** The three ImageFolder splits of a structured task (generated on first use). */
export async function loadStructured(task: StructuredTask, opt: StructuredOptions): Promise<Record<'train' | 'val' | 'test', Dataset>> {
  const classes = STRUCTURED_TASKS[task];
  if (!classes) throw new Error(`loadStructured: unknown task ${fmtValue(task)}; valid: ${Object.keys(STRUCTURED_TASKS).join(', ')}`);
  const seed = opt.seed ?? 0;
  const S = opt.size ?? 32;
  const per = opt.perClass ?? 60;
  if (!Number.isInteger(seed)) throw new Error(`loadStructured: seed must be an integer, got ${fmtValue(seed)}`);
  if (!(Number.isInteger(S) && S >= 8 && S <= 512)) throw new Error(`loadStructured: size must be an integer in [8, 512], got ${fmtValue(S)}`);
  if (!(Number.isInteger(per) && per >= 5)) throw new Error(`loadStructured: perClass must be an integer ≥ 5, got ${fmtValue(per)}`);
  const dir = path.join(opt.cacheDir, `structured-${task}-${seed}-${S}-${per}`);
  const manifest = { version: STRUCTURED_VERSION, task, seed, size: S, perClass: per, classes: [...classes] };
  const done = await fsp.readFile(path.join(dir, 'COMPLETE.json'), 'utf8').then((t) => JSON.parse(t) as { version: number }, () => null);
  if (!done || done.version !== STRUCTURED_VERSION) {
    ensureDir(opt.cacheDir, 'structured: cache folder');
    const tmp = `${dir}.tmp-${tempOwnerTag()}.${Math.random().toString(36).slice(2)}`;
    try {
      const nTrain = Math.round(per * 0.6);
      const nVal = Math.round(per * 0.2);
      for (const [ci, cls] of classes.entries()) {
        for (let i = 1; i <= per; i++) {
          const split = i <= nTrain ? 'train' : i <= nTrain + nVal ? 'val' : 'test';
          const rng = Rng.derive(seed, 'embedded-structured', task, cls, i);
          const img = task === 'count' ? renderCount(ci + 1, S, rng) : task === 'orientation' ? renderOrientation(ci, S, rng) : renderNatural(cls, S, rng);
          const file = path.join(tmp, split, cls, `${cls}_${i}.png`);
          await fsp.mkdir(path.dirname(file), { recursive: true });
          await fsp.writeFile(file, await encodeImage(img, 'png'));
        }
      }
      await fsp.writeFile(path.join(tmp, 'COMPLETE.json'), JSON.stringify(manifest));
      // Publish by rename. Never delete or move a complete folder: another process (a data-parallel worker) may be
      // opening it (deleting it before our rename let a second worker remove the folder the first one was reading).
      // A rename onto an existing folder fails: keep it when complete (published meanwhile), set it aside when outdated.
      const complete = async (): Promise<boolean> =>
        fsp.readFile(path.join(dir, 'COMPLETE.json'), 'utf8').then((t) => (JSON.parse(t) as { version: number }).version === STRUCTURED_VERSION, () => false);
      const published = await fsp.rename(tmp, dir).then(() => true, () => false);
      if (!published && !(await complete())) {
        const trash = `${dir}.old-${tempOwnerTag()}.${Math.random().toString(36).slice(2)}`;
        await fsp.rename(dir, trash).catch(() => undefined);
        await fsp.rename(tmp, dir).catch(async (e: Error) => {
          if (!(await complete())) throw new Error(`structured: cannot move ${tmp} to ${dir}: ${e.message}`);
        });
        await fsp.rm(trash, { recursive: true, force: true });
      }
    } finally {
      await fsp.rm(tmp, { recursive: true, force: true });
    }
  }
  const open = (s: 'train' | 'val' | 'test'): Promise<Dataset> => imageFolder(path.join(dir, s), { name: `embedded-${task}-${s}`, classes });
  return { train: await open('train'), val: await open('val'), test: await open('test') };
}
