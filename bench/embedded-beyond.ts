/**
 * Design checks of the beyond-RGB embedded domains (default options): generation cost, and cheap probes that show
 * (a) the labels are learnable, (b) the information the paper's models exploit is there (several dates, 13 bands),
 * (c) the domain shift the WILDS protocols evaluate is real.
 *
 * - temporal: kernel-ridge probe on fixed random conv features of the anchor date alone vs the three dates of its site
 *   (anchor + the two nearest other dates) concatenated; RGB vs 13 bands (fMoW-Sentinel images).
 * - buildings: per-pixel ridge classifier of building vs rest on the pixel's bands (± 3×3 neighbourhood means), RGB
 *   vs 13 bands, test IoU of the building class.
 * - pathology: ridge probe on random conv features trained on hospitals 0/3/4, accuracy on the ID validation patches
 *   and on the OOD test hospital 2; then the same with each image standardised per channel by its own hospital's
 *   unlabelled statistics (a target-domain statistic, what norm-layer adaptation can learn without labels).
 * - camera traps: ridge on random conv features, accuracy and WILDS macro F1 on ID test vs OOD test locations.
 *
 * Every line of output is a JSON record; the host and the load average are printed first.
 * Usage: npx tsx bench/embedded-beyond.ts [domain…]   (domains: temporal buildings pathology cameratraps; default all)
 */
import * as os from 'os';
import { init } from '../lib/backend';
import { Dataset, labelsOf } from '../data-loaders/dataset';
import { Img, makeImg } from '../data-loaders/image';
import { randomConvFeatures, ridgeProbe, domainGap } from '../data-loaders/probe';
import { loadEmbedded } from '../data-loaders/embedded';
import { loadEmbeddedTemporal, loadEmbeddedBuildings, loadEmbeddedPathology, loadEmbeddedCameraTraps, ensureEmbeddedTemporal, ensureEmbeddedBuildings, ensureEmbeddedPathology, ensureEmbeddedCameraTraps } from '../data-loaders/embedded-beyond';
import { sentinelNormalize, resize } from '../data-loaders/transforms';
import { classificationMetrics, confusionMatrix, iouFromConfusion } from '../lib/eval/metrics';

const out = (rec: Record<string, unknown>): void => console.log(JSON.stringify(rec));
const cpuMs = (): number => {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1000;
};

async function images(ds: Dataset, f: (im: Img) => Img = (x) => x): Promise<Img[]> {
  const res: Img[] = [];
  for (let i = 0; i < ds.length; i++) res.push(f((await ds.get(i)).image));
  return res;
}

/** Fixed split of a labelled image list into probe train / val (for λ) by index parity of 5. */
function probeSplit(x: Float32Array, y: ArrayLike<number>): { tr: { x: Float32Array; y: number[] }; va: { x: Float32Array; y: number[] } } {
  const n = y.length;
  const d = x.length / n;
  const tr: number[] = [];
  const va: number[] = [];
  for (let i = 0; i < n; i++) (i % 5 === 4 ? va : tr).push(i);
  const take = (idx: number[]): { x: Float32Array; y: number[] } => {
    const o = new Float32Array(idx.length * d);
    idx.forEach((i, k) => o.set(x.subarray(i * d, (i + 1) * d), k * d));
    return { x: o, y: idx.map((i) => y[i]) };
  };
  return { tr: take(tr), va: take(va) };
}

function concatFeatures(parts: Float32Array[], n: number): Float32Array {
  const ds = parts.map((p) => p.length / n);
  const D = ds.reduce((a, b) => a + b, 0);
  const o = new Float32Array(n * D);
  for (let i = 0; i < n; i++) {
    let off = 0;
    parts.forEach((p, k) => {
      o.set(p.subarray(i * ds[k], (i + 1) * ds[k]), i * D + off);
      off += ds[k];
    });
  }
  return o;
}

async function temporal(): Promise<void> {
  let t = Date.now();
  let c = cpuMs();
  const p = await ensureEmbeddedTemporal();
  out({ domain: 'temporal', what: 'generate', files: p.manifest.files, wallS: (Date.now() - t) / 1000, cpuS: (cpuMs() - c) / 1000, cachedGenerationS: p.manifest.seconds });
  const e = await loadEmbeddedTemporal();
  // the three dates of each row's site: anchor + the two nearest other dates (deterministic, no rng)
  const triple = async (ds: Dataset, ms: boolean): Promise<{ a: Img[]; all: Img[][]; y: Int32Array }> => {
    const n = ds.length;
    const infos = Array.from({ length: n }, (_, i) => ds.info(i));
    const site = (i: number): string => infos[i].path!.replace(/_\d+(_rgb\.jpg|\.tif)$/, '');
    const bySite = new Map<string, number[]>();
    infos.forEach((_, i) => bySite.set(site(i), [...(bySite.get(site(i)) ?? []), i]));
    const imgs = await images(ds, ms ? (im) => sentinelNormalize(im) : (x) => x);
    const all = imgs.map((_, i) => {
      const others = bySite.get(site(i))!.filter((j) => j !== i).sort((u, v) => Math.abs(u - i) - Math.abs(v - i));
      const o = [...others, i, i].slice(0, 2);
      return [imgs[i], imgs[o[0]], imgs[o[1]]];
    });
    return { a: imgs, all, y: labelsOf(ds) };
  };
  for (const ms of [false, true]) {
    const tr = await triple(ms ? e.sentinel.train : e.rgb.train, ms);
    const te = await triple(ms ? e.sentinel.test : e.rgb.test, ms);
    const K = 62;
    // remap fMoW ids to 0..7 for the probe
    const ids = [...new Set(tr.y)].sort((a, b) => a - b);
    const map = (y: Int32Array): number[] => Array.from(y, (v) => ids.indexOf(v));
    for (const frames of [1, 3]) {
      const feats = (s: { a: Img[]; all: Img[][] }): Float32Array =>
        frames === 1 ? randomConvFeatures(s.a, 0) : concatFeatures([0, 1, 2].map((k) => randomConvFeatures(s.all.map((f) => f[k]), 0)), s.a.length);
      const ftr = feats(tr);
      const split = probeSplit(ftr, map(tr.y));
      const r = ridgeProbe(split.tr, split.va, { x: feats(te), y: map(te.y) }, ids.length);
      out({ domain: 'temporal', probe: 'random conv + ridge', bands: ms ? 13 : 3, dates: frames, testAcc: +r.testAcc.toFixed(3), chance: +(1 / ids.length).toFixed(3), n: tr.y.length, nTest: te.y.length });
      void K;
    }
  }
  // domain gap natural → multi-date RGB
  const emb = await loadEmbedded();
  const nat = await images(emb.natural.val);
  const sat = (await images(e.rgb.test)).slice(0, nat.length);
  const g = domainGap(nat, sat);
  out({ domain: 'temporal', what: 'domain gap natural vs multi-date RGB', ...g });
  t = Date.now();
  c = cpuMs();
}

/** Per-pixel features: band values (normalised) and optionally 3×3 neighbourhood means. */
function pixelFeatures(im: Img, neigh: boolean): Float32Array {
  const { height: H, width: W, channels: C } = im;
  const d = neigh ? 2 * C : C;
  const o = new Float32Array(H * W * d);
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const p = y * W + x;
      for (let c = 0; c < C; c++) {
        o[p * d + c] = im.data[p * C + c];
        if (neigh) {
          let s = 0;
          let k = 0;
          for (let dy = -1; dy <= 1; dy++)
            for (let dx = -1; dx <= 1; dx++) {
              const yy = y + dy;
              const xx = x + dx;
              if (yy >= 0 && yy < H && xx >= 0 && xx < W) {
                s += im.data[(yy * W + xx) * C + c];
                k++;
              }
            }
          o[p * d + C + c] = s / k;
        }
      }
    }
  return o;
}

/** Primal ridge regression to 0/1 targets (d small): returns weights with a bias. */
function ridgePrimal(x: Float32Array, y: ArrayLike<number>, d: number, lambda: number): Float64Array {
  const n = y.length;
  const D = d + 1;
  const A = new Float64Array(D * D);
  const b = new Float64Array(D);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < D; j++) {
      const xj = j < d ? x[i * d + j] : 1;
      b[j] += xj * y[i];
      for (let k = 0; k <= j; k++) A[j * D + k] += xj * (k < d ? x[i * d + k] : 1);
    }
  }
  for (let j = 0; j < D; j++) for (let k = 0; k < j; k++) A[k * D + j] = A[j * D + k];
  for (let j = 0; j < d; j++) A[j * D + j] += lambda * n;
  // Gaussian elimination
  const M = A.slice();
  const w = b.slice();
  for (let i = 0; i < D; i++) {
    let piv = i;
    for (let r = i + 1; r < D; r++) if (Math.abs(M[r * D + i]) > Math.abs(M[piv * D + i])) piv = r;
    for (let k = 0; k < D; k++) [M[i * D + k], M[piv * D + k]] = [M[piv * D + k], M[i * D + k]];
    [w[i], w[piv]] = [w[piv], w[i]];
    for (let r = i + 1; r < D; r++) {
      const f = M[r * D + i] / M[i * D + i];
      for (let k = i; k < D; k++) M[r * D + k] -= f * M[i * D + k];
      w[r] -= f * w[i];
    }
  }
  for (let i = D - 1; i >= 0; i--) {
    let s = w[i];
    for (let k = i + 1; k < D; k++) s -= M[i * D + k] * w[k];
    w[i] = s / M[i * D + i];
  }
  return w;
}

async function buildings(): Promise<void> {
  const t = Date.now();
  const c = cpuMs();
  const p = await ensureEmbeddedBuildings();
  out({ domain: 'buildings', what: 'generate', files: p.manifest.files, wallS: (Date.now() - t) / 1000, cpuS: (cpuMs() - c) / 1000, info: p.manifest.info.buildingFraction });
  const e13 = await loadEmbeddedBuildings();
  const collect = async (ds: Dataset, bands: number[] | null, neigh: boolean): Promise<{ x: Float32Array; y: Float32Array; d: number }> => {
    const xs: Float32Array[] = [];
    const ys: number[] = [];
    let d = 0;
    for (let i = 0; i < ds.length; i++) {
      const s = await ds.get(i);
      let im = sentinelNormalize(s.image);
      if (bands) {
        const sel = makeImg(im.height, im.width, bands.length);
        for (let q = 0; q < im.height * im.width; q++) bands.forEach((b, k) => (sel.data[q * bands.length + k] = im.data[q * 13 + b]));
        im = sel;
      }
      const f = pixelFeatures(im, neigh);
      d = f.length / (im.height * im.width);
      xs.push(f);
      for (const v of s.mask!.data) ys.push(v);
    }
    const x = new Float32Array(xs.reduce((a, v) => a + v.length, 0));
    let off = 0;
    for (const v of xs) {
      x.set(v, off);
      off += v.length;
    }
    return { x, y: Float32Array.from(ys), d };
  };
  for (const [name, bands] of [['RGB (B4,B3,B2)', [3, 2, 1]], ['13 bands', null]] as const) {
    for (const neigh of [false, true]) {
      const tr = await collect(e13.train, bands as number[] | null, neigh);
      const te = await collect(e13.test, bands as number[] | null, neigh);
      const w = ridgePrimal(tr.x, tr.y, tr.d, 1e-4);
      // threshold picked on the training pixels (maximising IoU), applied to the test pixels
      const score = (x: Float32Array, i: number): number => {
        let s = w[tr.d];
        for (let j = 0; j < tr.d; j++) s += w[j] * x[i * tr.d + j];
        return s;
      };
      const iouAt = (x: Float32Array, y: Float32Array, th: number): number => {
        const n = y.length;
        const pred = new Int32Array(n);
        for (let i = 0; i < n; i++) pred[i] = score(x, i) > th ? 1 : 0;
        return iouFromConfusion(confusionMatrix(Array.from(y), Array.from(pred), 2), 2).iou[1];
      };
      let best = 0.5;
      let bestIou = -1;
      for (const th of [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5]) {
        const v = iouAt(tr.x, tr.y, th);
        if (v > bestIou) [best, bestIou] = [th, v];
      }
      out({ domain: 'buildings', probe: 'per-pixel ridge', bands: name, neighbourhood: neigh, threshold: best, trainIoU: +bestIou.toFixed(3), testIoU: +iouAt(te.x, te.y, best).toFixed(3), testPixels: te.y.length });
    }
  }
}

async function pathology(): Promise<void> {
  const t = Date.now();
  const c = cpuMs();
  const p = await ensureEmbeddedPathology();
  out({ domain: 'pathology', what: 'generate', files: p.manifest.files, wallS: (Date.now() - t) / 1000, cpuS: (cpuMs() - c) / 1000 });
  const e = await loadEmbeddedPathology({ pretrainSplits: ['train_unlabeled', 'val_unlabeled', 'test_unlabeled'] });
  // per-hospital channel statistics from the unlabelled patches only
  const stats = new Map<number, { mean: number[]; std: number[] }>();
  {
    const acc = new Map<number, { s: number[]; q: number[]; n: number }>();
    for (let i = 0; i < e.pretrain.length; i++) {
      const s = await e.pretrain.get(i);
      const h = (s.meta as { hospital: number }).hospital;
      const a = acc.get(h) ?? { s: [0, 0, 0], q: [0, 0, 0], n: 0 };
      for (let k = 0; k < s.image.data.length; k++) {
        a.s[k % 3] += s.image.data[k];
        a.q[k % 3] += s.image.data[k] ** 2;
      }
      a.n += s.image.data.length / 3;
      acc.set(h, a);
    }
    for (const [h, a] of acc) {
      const mean = a.s.map((v) => v / a.n);
      stats.set(h, { mean, std: a.q.map((v, k) => Math.sqrt(v / a.n - mean[k] ** 2)) });
    }
  }
  const load = async (ds: Dataset, perHospital: boolean): Promise<Img[]> => {
    const res: Img[] = [];
    for (let i = 0; i < ds.length; i++) {
      const s = await ds.get(i);
      if (!perHospital) res.push(s.image);
      else {
        const st = stats.get((s.meta as { hospital: number }).hospital)!;
        const im = makeImg(s.image.height, s.image.width, 3);
        for (let k = 0; k < im.data.length; k++) im.data[k] = (s.image.data[k] - st.mean[k % 3]) / st.std[k % 3];
        res.push(im);
      }
    }
    return res;
  };
  for (const perHospital of [false, true]) {
    const ftr = randomConvFeatures(await load(e.train, perHospital), 0);
    const split = probeSplit(ftr, labelsOf(e.train));
    const idv = ridgeProbe(split.tr, split.va, { x: randomConvFeatures(await load(e.idVal, perHospital), 0), y: Array.from(labelsOf(e.idVal)) }, 2);
    const ood = ridgeProbe(split.tr, split.va, { x: randomConvFeatures(await load(e.test, perHospital), 0), y: Array.from(labelsOf(e.test)) }, 2);
    const oodVal = ridgeProbe(split.tr, split.va, { x: randomConvFeatures(await load(e.val, perHospital), 0), y: Array.from(labelsOf(e.val)) }, 2);
    out({
      domain: 'pathology',
      probe: 'random conv + ridge, trained on hospitals 0/3/4',
      normalisation: perHospital ? 'per-hospital channel stats from unlabelled patches' : 'none',
      idValAcc: +idv.testAcc.toFixed(3),
      oodValAcc_h1: +oodVal.testAcc.toFixed(3),
      oodTestAcc_h2: +ood.testAcc.toFixed(3),
      nTrain: e.train.length,
    });
  }
  const emb = await loadEmbedded();
  out({ domain: 'pathology', what: 'domain gap natural vs pathology', ...domainGap(await images(emb.natural.val), (await images(e.test)).slice(0, 200)) });
}

async function cameratraps(): Promise<void> {
  const t = Date.now();
  const c = cpuMs();
  const p = await ensureEmbeddedCameraTraps();
  out({ domain: 'cameratraps', what: 'generate', files: p.manifest.files, wallS: (Date.now() - t) / 1000, cpuS: (cpuMs() - c) / 1000, counts: p.manifest.info.counts });
  const e = await loadEmbeddedCameraTraps();
  const K = e.train.classes!.length;
  const ftr = randomConvFeatures(await images(e.train), 0);
  const split = probeSplit(ftr, labelsOf(e.train));
  for (const [name, ds] of [['id_test', e.idTest], ['test (OOD locations)', e.test]] as const) {
    const y = Array.from(labelsOf(ds));
    const r = ridgeProbe(split.tr, split.va, { x: randomConvFeatures(await images(ds), 0), y }, K);
    const m = classificationMetrics(y, r.testPred!);
    const maj = classificationMetrics(y, new Array(y.length).fill(0));
    out({ domain: 'cameratraps', probe: 'random conv + ridge', split: name, testAcc: +m.accuracy.toFixed(3), macroF1: +m.macroF1.toFixed(3), majorityAcc: +maj.accuracy.toFixed(3), majorityMacroF1: +maj.macroF1.toFixed(3), classesPresent: maj.labels.length, n: y.length });
  }
  void resize;
}

async function main(): Promise<void> {
  await init();
  const [l1, l5, l15] = os.loadavg();
  out({ host: `${os.cpus().length}-CPU ${os.cpus()[0]?.model ?? ''}`, node: process.version, loadavg: [l1, l5, l15].map((v) => +v.toFixed(1)) });
  const want = process.argv.slice(2);
  const all: Record<string, () => Promise<void>> = { temporal, buildings, pathology, cameratraps };
  for (const k of want.length ? want : Object.keys(all)) {
    if (!all[k]) throw new Error(`unknown domain '${k}'; valid: ${Object.keys(all).join(', ')}`);
    await all[k]();
  }
  out({ loadavgEnd: os.loadavg().map((v) => +v.toFixed(1)) });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
