/**
 * `npx tsx bench/miniature-workers.ts [--out=file.jsonl] [--order=1,2,2,1]`: wall time of `runMiniature` with 1 vs 2
 * worker threads (recipes/miniature-workers.ts), the arms interleaved in one process (so both see the same load).
 *
 * Configuration: notebook 01's smoke miniature (`MAE_MINI_SMOKE`: the same model, source, data generator and
 * evaluation protocol) cut to BENCH_STEPS (default 12) pre-training steps and probe sets of 300 / 100 / 300 images,
 * seeds 0,1, scratch on seed 0 (7 jobs: source ×2, ExPLoRA ×2, unfreeze ×2, scratch ×1) — the job mix of the
 * notebook at a fraction of its length. Each arm also checks that its records equal the first arm's (CPU / time
 * fields aside). Process CPU (`process.cpuUsage`, every thread) is recorded beside the wall time.
 *
 * Lines: {"kind":"host", …}  {"kind":"arm", workers, wall, cpu, records, identical, load1}  {"kind":"summary", …}
 */
import { appendFileSync } from 'fs';
import * as os from 'os';
import { init } from '../lib/backend';
import { MaeMiniConfig, MiniRecord, runMiniature } from '../recipes/miniature';
import { MAE_MINI_SMOKE } from '../recipes/miniature-presets';
import { hostReport } from './host';

function arg(name: string, def: string): string {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? a.slice(name.length + 3) : def;
}

function numbers(r: MiniRecord): string {
  const { cpu: _c, seconds: _s, trainCpu: _t, ...rest } = r;
  return JSON.stringify(rest);
}

async function main(): Promise<void> {
  const out = arg('out', '');
  const order = arg('order', '1,2,2,1').split(',').map(Number);
  const steps = Number(process.env.BENCH_STEPS ?? 12);
  const write = (o: Record<string, unknown>): void => {
    const line = JSON.stringify(o);
    console.log(line);
    if (out) appendFileSync(out, line + '\n');
  };
  await init();
  const cfg: MaeMiniConfig = {
    ...MAE_MINI_SMOKE,
    data: { ...MAE_MINI_SMOKE.data, evalImages: { train: 300, val: 100, test: 300 } },
    pretrain: { ...MAE_MINI_SMOKE.pretrain, steps, warmupSteps: Math.min(MAE_MINI_SMOKE.pretrain.warmupSteps, steps) },
    scratch: { ...MAE_MINI_SMOKE.scratch, warmupSteps: Math.min(MAE_MINI_SMOKE.scratch.warmupSteps, steps) },
  };
  const seeds = [0, 1];
  write({ kind: 'host', ...hostReport(), config: 'MAE_MINI_SMOKE, steps ' + steps + ', probe 300/100/300, seeds 0,1, scratch seed 0', order, nice: os.getPriority() });
  let reference: string[] | null = null;
  const walls: Record<number, number[]> = {};
  for (const workers of order) {
    const load1 = os.loadavg()[0];
    const c0 = process.cpuUsage();
    const t0 = Date.now();
    const recs = await runMiniature(cfg, seeds, { workers, seedsOf: { scratch: [0] } });
    const wall = (Date.now() - t0) / 1000;
    const d = process.cpuUsage(c0);
    const nums = recs.map(numbers);
    reference ??= nums;
    const identical = JSON.stringify(nums) === JSON.stringify(reference);
    (walls[workers] ??= []).push(wall);
    write({ kind: 'arm', workers, wall, cpu: (d.user + d.system) / 1e6, records: recs.length, identical, load1, load1After: os.loadavg()[0] });
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  const w1 = mean(walls[1] ?? []);
  const w2 = mean(walls[2] ?? []);
  write({ kind: 'summary', wall1: w1, wall2: w2, speedup: w1 / w2, load: os.loadavg() });
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
