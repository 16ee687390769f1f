/**
 * The ExPLoRA miniature, end to end: for each seed, the source model frozen, ExPLoRA, its ablations and pre-training
 * from scratch on the embedded satellite target, each evaluated by linear probe and kNN (recipes/miniature.ts). Writes
 * JSON lines: one `config` line (resolved config, backend, git, load average), one `eval` line per evaluation, one
 * `done` line with the total CPU time. `tools/miniature-claims.ts` turns the file into claims with intervals.
 *
 *   npx tsx tools/explora-miniature.ts --preset mae --seeds 0,1,2 --out out/miniature/mae.jsonl
 *   npx tsx tools/explora-miniature.ts --preset dino --methods source,explora,unfreeze --set pretrain.steps=200
 *   npx tsx tools/explora-miniature.ts --preset mae --set data.evalImages.test=1000 --set 'evalAt=[0,50]'
 *
 * `--set path=value` overrides one field of the preset (value parsed as JSON, else taken as a string); the presets are
 * MINI_PRESETS below. Methods: source, explora, unfreeze, lora, scratch, full (DINO only), or `name:[blocks]:rank`
 * (e.g. `u2:[L-1,L]:` for two unfrozen blocks without LoRA, `r16:[L]:16`), optionally `:alpha` (`a8:[L]:8:8`: LoRA α = 8).
 */
import { appendFileSync, mkdirSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as tf from '@tensorflow/tfjs';
import { init, backendReport } from '../lib/backend';
import { MiniDatasets, MiniConfig, MiniMethod, MiniRecord, standardMethods, runMiniature } from '../recipes/miniature';
import { MAE_MINI, MAE_MINI_SMOKE, DINO_MINI } from '../recipes/miniature-presets';
import { cpuSeconds } from '../recipes/miniature-eval';
import { BlockRef } from '../lib/peft/explora';

export const MINI_PRESETS: Record<string, MiniConfig> = { mae: MAE_MINI, 'mae-smoke': MAE_MINI_SMOKE, dino: DINO_MINI };

/** Set `path` (dotted) in a deep copy of `obj` to `value`. */
export function setPath<T>(obj: T, dotted: string, value: unknown): T {
  const out = JSON.parse(JSON.stringify(obj)) as Record<string, unknown>;
  const keys = dotted.split('.');
  let cur: Record<string, unknown> = out;
  keys.forEach((k, i) => {
    if (!(k in cur)) throw new Error(`--set ${dotted}: '${keys.slice(0, i + 1).join('.')}' is not a field (have: ${Object.keys(cur).join(', ')})`);
    if (i === keys.length - 1) cur[k] = value;
    else {
      if (!cur[k] || typeof cur[k] !== 'object') throw new Error(`--set ${dotted}: '${keys.slice(0, i + 1).join('.')}' is not an object`);
      cur = cur[k] as Record<string, unknown>;
    }
  });
  return out as T;
}

/** Parse a method: a standard name or `name:[blocks]:rank` (rank empty = no LoRA). */
export function parseMethod(s: string, rank: number): MiniMethod {
  const std = standardMethods(rank).find((m) => m.name === s);
  if (std) return std;
  if (s === 'full') return { name: 'full', kind: 'full' };
  const m = /^([\w.-]+):\[([^\]]*)\]:(\d*)(?::([\d.]+))?$/.exec(s);
  if (!m) throw new Error(`method '${s}': expected one of source, explora, unfreeze, lora, scratch, full, or name:[blocks]:rank[:alpha]`);
  const unfrozen = m[2].trim() ? m[2].split(',').map((b) => (/^\d+$/.test(b.trim()) ? Number(b.trim()) : (b.trim() as BlockRef))) : [];
  return { name: m[1], kind: 'recipe', unfrozen, rank: m[3] ? Number(m[3]) : null, ...(m[4] ? { alpha: Number(m[4]) } : {}) };
}

function gitCommit(): string | null {
  try {
    return execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: path.resolve(__dirname, '..'), stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const arg = (k: string): string | undefined => {
    const i = argv.indexOf(`--${k}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  if (argv.includes('--help')) {
    console.log('npx tsx tools/explora-miniature.ts --preset mae|mae-smoke|dino [--seeds 0,1,2] [--methods a,b,...] [--set path=json ...] [--rank r] [--out file.jsonl] [--tag text]');
    return;
  }
  const presetName = arg('preset') ?? 'mae';
  let cfg: MiniConfig = MINI_PRESETS[presetName];
  if (!cfg) throw new Error(`--preset: expected one of ${Object.keys(MINI_PRESETS).join(', ')}, got '${presetName}'`);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] !== '--set') continue;
    const kv = argv[i + 1] ?? '';
    const eq = kv.indexOf('=');
    if (eq < 0) throw new Error(`--set ${kv}: expected path=value`);
    let v: unknown;
    try {
      v = JSON.parse(kv.slice(eq + 1));
    } catch {
      v = kv.slice(eq + 1);
    }
    cfg = setPath(cfg, kv.slice(0, eq), v);
  }
  const rank = Number(arg('rank') ?? 8);
  if (arg('methods')) cfg = { ...cfg, methods: (arg('methods')!.match(/[^,[]+(\[[^\]]*\][^,]*)?/g) ?? []).map((s) => parseMethod(s, rank)) };
  const seeds = (arg('seeds') ?? '0,1,2').split(',').map(Number);
  const tag = arg('tag') ?? presetName;
  const out = path.resolve(arg('out') ?? path.join('out', 'miniature', `${tag}-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`));
  mkdirSync(path.dirname(out), { recursive: true });
  const write = (o: Record<string, unknown>): void => appendFileSync(out, JSON.stringify(o) + '\n');
  await init();
  const br = backendReport();
  write({ kind: 'config', tag, preset: presetName, config: cfg, seeds, backend: { backend: br.backend, threads: br.threads, simd: br.simd, cpu: br.cpuModel }, git: gitCommit(), loadavg: os.loadavg(), created: new Date().toISOString() });
  console.log(`→ ${out}`);
  const c0 = process.cpuUsage();
  const t0 = Date.now();
  let dataCpu = 0;
  const onData = (d: MiniDatasets, seed: number, cpu: number): void => {
    dataCpu += cpu;
    console.log(`data (seed ${seed}): pre-train ${d.pretrain.length}, probe ${d.evalSets.train.y.length}/${d.evalSets.val.y.length}/${d.evalSets.test.y.length}; ${cpu.toFixed(1)} s CPU`);
  };
  const onRecord = (r: MiniRecord): void => {
    write({ ...r, tag, loadavg: os.loadavg()[0] });
    console.log(`${r.method.padEnd(10)} seed ${r.seed} step ${String(r.step).padStart(4)}: probe ${(100 * r.probeTest).toFixed(1)} (val ${(100 * r.probeVal).toFixed(1)}) kNN ${(100 * r.knn).toFixed(1)} ridge ${(100 * r.ridgeTest).toFixed(1)} loss ${r.loss?.toFixed(4) ?? '-'} | CPU train ${r.trainCpu.toFixed(0)} s, eval ${(r.cpu.extract + r.cpu.probe + r.cpu.knn + r.cpu.ridge).toFixed(0)} s | load ${os.loadavg()[0].toFixed(1)}`);
  };
  await runMiniature(cfg, seeds, { onRecord, onData, workers: 1 }); // onData reads the datasets of this thread
  write({ kind: 'done', cpuSeconds: cpuSeconds(c0), wallSeconds: (Date.now() - t0) / 1000, dataCpu, loadavg: os.loadavg(), liveTensors: tf.memory().numTensors });
  console.log(`done: ${cpuSeconds(c0).toFixed(0)} s CPU, ${((Date.now() - t0) / 1000).toFixed(0)} s wall`);
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
