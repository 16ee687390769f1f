/**
 * `npx tsx bench/tome.ts`: eval throughput of a ViT unmerged, with ToMe and with PYRA at PYRA's low / high schedules,
 * printed as JSON lines (one `throughput` record per measurement, see lib/tome/throughput.ts), plus the analytic MACs.
 *
 * Options (env): BENCH_MODEL (default vit_base_patch16_224; schedules exist for vit_base / vit_large), BENCH_BATCH
 * (default 4), BENCH_ITERS (default 2), BENCH_WARMUP (default 1), VITPEFT_BACKEND.
 */
import { init, backendReport } from '../lib/backend';
import { createVit, disposeVit } from '../lib/vit/params';
import { VitPresetName } from '../lib/vit/config';
import { createPyra, disposePyra } from '../lib/tome/pyra';
import { PYRA_SCHEDULES, PyraSchedulePreset, pyraSchedule } from '../lib/tome/schedule';
import { measureThroughput } from '../lib/tome/throughput';

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  return v ? Number.parseInt(v, 10) : dflt;
}

async function main(): Promise<void> {
  await init();
  console.log(JSON.stringify({ kind: 'backend', ...backendReport() }));
  const model = (process.env.BENCH_MODEL ?? 'vit_base_patch16_224') as VitPresetName & PyraSchedulePreset;
  if (!(model in PYRA_SCHEDULES)) throw new Error(`BENCH_MODEL: no PYRA schedule for ${model}; valid: ${Object.keys(PYRA_SCHEDULES).join(', ')}`);
  const opts = { batch: envInt('BENCH_BATCH', 4), iters: envInt('BENCH_ITERS', 2), warmup: envInt('BENCH_WARMUP', 1) };
  const vit = createVit(model, { numClasses: 100 }, { seed: 0 });
  try {
    const base = measureThroughput(vit, { mode: 'unmerged' }, { ...opts, label: `${model} unmerged` });
    console.log(JSON.stringify({ model, ...base, speedup: 1 }));
    for (const level of ['low', 'high'] as const) {
      const schedule = pyraSchedule(model, level);
      const tome = measureThroughput(vit, { mode: 'tome', schedule }, { ...opts, label: `${model} ToMe ${level}` });
      console.log(JSON.stringify({ model, ...tome, speedup: tome.imgPerSec / base.imgPerSec }));
      const pyra = createPyra(vit.config, schedule, { seed: 0 });
      const rec = measureThroughput(vit, { mode: 'pyra', pyra }, { ...opts, label: `${model} PYRA ${level}` });
      console.log(JSON.stringify({ model, ...rec, speedup: rec.imgPerSec / base.imgPerSec }));
      disposePyra(pyra);
    }
  } finally {
    disposeVit(vit);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
