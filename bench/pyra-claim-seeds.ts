/**
 * Robustness of notebook 10's claim PYRA high − ToMe + LoRA high over more seeds: the notebook's smoke protocol
 * (PYRA_VTAB_SCALES.smoke: objects / satellite / count, 48 steps of 32, lr 1e-2, wd 1e-4, no search) for the two
 * methods of the claim only, seed after seed, one JSON line per run (best and last test accuracy, seconds, workers).
 *
 *   VITPEFT_WORKERS=2 npx tsx bench/pyra-claim-seeds.ts --seeds=0,1,2,3,4 --out=bench/results/pyra-claim-seeds.jsonl
 *
 * Every run is a run folder under runs/ (prefix `seeds10`); LOG.md (branch `pyra3`) reads the lines into the paired
 * differences of the VTAB-style average per seed and their t interval.
 */
import * as fs from 'fs';
import * as os from 'os';
import { init } from '../lib/backend';
import { PYRA_VTAB_EXPERIMENT, PYRA_VTAB_SCALES, withVtabBudget, embeddedVtabTasks, runVtab, pyraComparison, ensureBackbones } from '../recipes';

async function main(): Promise<void> {
  const arg = (k: string, d: string): string => process.argv.find((a) => a.startsWith(`--${k}=`))?.slice(k.length + 3) ?? d;
  const seeds = arg('seeds', '0,1,2,3,4').split(',').map(Number);
  const out = arg('out', 'bench/results/pyra-claim-seeds.jsonl');
  await init();
  const HP = PYRA_VTAB_SCALES.smoke;
  const tasks = embeddedVtabTasks({ size: 32, perClass: HP.perClass }).filter((t) => HP.tasks!.includes(t.name));
  const ready = await ensureBackbones(PYRA_VTAB_EXPERIMENT, { steps: 150, batch: 64 });
  const all = pyraComparison(ready.experiment, { prefix: 'seeds10', tags: { scale: 'smoke' } });
  const methods = { 'tome-high': withVtabBudget(all['tome-high'], HP), 'pyra-high': withVtabBudget(all['pyra-high'], HP) };
  for (const seed of seeds) {
    const c0 = process.cpuUsage();
    const res = await runVtab(methods, tasks, { grid: HP.grid, seeds: [seed], prefix: 'seeds10' });
    const cpu = process.cpuUsage(c0);
    for (const c of res.cells) {
      const row = { seed, method: c.method, task: c.task, group: c.group, best: c.best[0], last: c.last[0], seconds: c.seconds[0], workers: process.env.VITPEFT_WORKERS ?? '1', load: os.loadavg()[0], seedCpuS: (cpu.user + cpu.system) / 1e6 };
      fs.appendFileSync(out, `${JSON.stringify(row)}\n`);
    }
    console.log(`seed ${seed}: ${res.cells.map((c) => `${c.method}/${c.task} ${c.best[0].toFixed(1)}`).join(', ')}; CPU ${((cpu.user + cpu.system) / 1e6).toFixed(0)} s, load ${os.loadavg()[0].toFixed(1)}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
