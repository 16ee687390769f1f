/**
 * Pre-train the small supervised source ViTs of the ToMe/PYRA notebook (lib/train/source-vit.ts) and write
 * `notebooks/assets/source-vit-<tag>.safetensors` + `.json` (config, seed, steps, metrics in the safetensors metadata
 * and the sidecar). Deterministic: same spec and seed on the same backend (and kit version) → same weights.
 *
 *   npx tsx tools/make-source-vit.ts                       # every spec of SOURCE_VIT_SPECS (d128x6, d64x6)
 *   npx tsx tools/make-source-vit.ts --spec d64x6 --eval-every 100 --note "kit 1234abc"
 *   npx tsx tools/make-source-vit.ts --spec d128x6 --steps 50 --out /tmp   # a quick try (tag gets a -50s suffix)
 */
import * as path from 'path';
import { mkdirSync } from 'fs';
import { execFileSync } from 'child_process';
import { init } from '../lib/backend';
import { disposeVit } from '../lib/vit/params';
import { SOURCE_VIT_SPECS, SourceVitName, SourceVitSpec, sourceVitSpec, sourceVitFile, pretrainSourceVit, saveSourceVit } from '../recipes/source-vit';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function gitDescribe(): string {
  try {
    const root = path.resolve(__dirname, '..');
    const head = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: root }).toString().trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'lib', 'data-loaders', 'tools'], { cwd: root }).toString().trim();
    return `kit ${head}${dirty ? ' (+ uncommitted changes in lib/data-loaders/tools)' : ''}`;
  } catch {
    return 'kit commit unknown (no git)';
  }
}

async function main(): Promise<void> {
  if (process.argv.includes('--help')) {
    console.log('usage: tsx tools/make-source-vit.ts [--spec name[,name]] [--steps N] [--out dir] [--eval-every N] [--note text]');
    console.log(`specs: ${Object.keys(SOURCE_VIT_SPECS).join(', ')}`);
    return;
  }
  const rep = await init();
  const names = (arg('spec') ?? Object.keys(SOURCE_VIT_SPECS).join(',')).split(',') as SourceVitName[];
  const outDir = path.resolve(arg('out') ?? path.join(__dirname, '..', 'notebooks', 'assets'));
  const evalEvery = Number(arg('eval-every') ?? 200);
  const steps = arg('steps') !== undefined ? Number(arg('steps')) : undefined;
  const note = [arg('note'), gitDescribe()].filter(Boolean).join('; ');
  mkdirSync(outDir, { recursive: true });
  console.log(`backend ${rep.backend} (${rep.threads} thread(s), simd ${rep.simd}); ${note}`);
  for (const name of names) {
    let spec: SourceVitSpec = sourceVitSpec(name);
    if (steps !== undefined) {
      spec = { ...spec, tag: `${spec.tag}-${steps}s`, recipe: { ...spec.recipe, steps, warmupSteps: Math.min(spec.recipe.warmupSteps, steps) } };
    }
    const file = path.join(outDir, sourceVitFile(spec));
    console.log(`${spec.tag}: ${JSON.stringify(spec)}`);
    const t0 = Date.now();
    let acc = 0;
    const { vit, result } = await pretrainSourceVit(spec, {
      evalEvery,
      onStep: (i) => {
        acc += i.loss;
        if ((i.step + 1) % 25 === 0) {
          console.log(`  step ${i.step + 1}/${spec.recipe.steps} loss ${(acc / 25).toFixed(4)} lr ${i.lr.toExponential(2)} ${((Date.now() - t0) / 1000 / (i.step + 1)).toFixed(2)} s/step`);
          acc = 0;
        }
      },
      onEval: (e) => console.log(`  eval step ${e.step}: natural val accuracy ${e.accuracy.toFixed(4)}`),
    });
    try {
      const rec = saveSourceVit(file, vit, spec, result, note);
      console.log(`${spec.tag}: wrote ${file} (val accuracy ${rec.result.valAccuracy}, final loss ${rec.result.finalLoss.toFixed(4)}, ${result.seconds.toFixed(0)} s)`);
    } finally {
      disposeVit(vit);
    }
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
