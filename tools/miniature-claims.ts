/**
 * Turn the JSON lines of `tools/explora-miniature.ts` into a summary table and reproduction claims with intervals
 * (recipes/miniature-claims.ts): ExPLoRA > source frozen (linear probe, ridge probe and kNN), ExPLoRA ≥ unfreeze-only,
 * ExPLoRA ≫ from scratch, each a paired-t interval over the seeds the two methods share, plus the item-level paired
 * bootstrap of each seed's difference.
 *
 *   npx tsx tools/miniature-claims.ts out/miniature/mae.jsonl [more.jsonl] [--step N] [--claims out/claims.jsonl] [--scale text]
 *
 * Prints a markdown summary; with `--claims` appends the claim records to that file.
 */
import { writeClaims } from '../lib/report/claims';
import { readMiniature, summaryRows, miniatureClaims } from '../recipes/miniature-claims';

const pct = (x: number): number => 100 * x;
const f1 = (x: number): string => x.toFixed(1);

function markdownTable(rows: Array<Record<string, string | number | null>>): string {
  if (!rows.length) return '(none)';
  const keys = Object.keys(rows[0]);
  return [`| ${keys.join(' | ')} |`, `|${keys.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${keys.map((k) => String(r[k] ?? '')).join(' | ')} |`)].join('\n');
}

function main(): void {
  const argv = process.argv.slice(2);
  const files: string[] = [];
  let step: number | undefined;
  let claimsOut: string | undefined;
  let scale = '';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--step') step = Number(argv[++i]);
    else if (argv[i] === '--claims') claimsOut = argv[++i];
    else if (argv[i] === '--scale') scale = argv[++i];
    else files.push(argv[i]);
  }
  if (!files.length) throw new Error('usage: npx tsx tools/miniature-claims.ts file.jsonl [...] [--step N] [--claims out.jsonl] [--scale text]');
  const { evals, configs } = readMiniature(files);
  if (!evals.length) throw new Error(`${files.join(', ')}: no eval lines`);
  if (!scale) {
    const c = configs[0]?.config as Record<string, unknown> | undefined;
    scale = c ? `miniature ${String(configs[0].tag)}: ${JSON.stringify((c as { pretrain?: unknown }).pretrain)}` : 'miniature';
  }
  console.log(`## ${files.join(', ')}\n`);
  console.log(markdownTable(summaryRows(evals, step)));
  const steps = [...new Set(evals.map((e) => e.step))].sort((a, b) => a - b);
  if (steps.length > 2) {
    console.log('\n### by step (LP mean over seeds)\n');
    const methods = [...new Set(evals.map((e) => e.method))];
    const rows = methods.map((m) => {
      const r: Record<string, string> = { method: m };
      for (const s of steps) {
        const xs = evals.filter((e) => e.method === m && e.step === s).map((e) => pct(e.probeTest));
        const ks = evals.filter((e) => e.method === m && e.step === s).map((e) => pct(e.knn));
        r[`step ${s}`] = xs.length ? `${f1(xs.reduce((a, b) => a + b, 0) / xs.length)} / ${f1(ks.reduce((a, b) => a + b, 0) / ks.length)}` : '';
      }
      return r;
    });
    console.log(markdownTable(rows));
  }
  const { claims, items } = miniatureClaims(evals, { scale, step, source: files.join(', ') });
  console.log('\n### claims (paired over seeds)\n');
  console.log(
    markdownTable(
      claims.map((c) => ({
        claim: c.claim,
        'paper Δ': c.paperValue ?? '-',
        'ours Δ [95% paired t]': Number.isFinite(c.ours.lo) ? `${f1(c.ours.mean)} [${f1(c.ours.lo)}, ${f1(c.ours.hi)}]` : f1(c.ours.mean),
        'per seed': c.ours.perSeed.map(f1).join(' '),
        n: c.ours.n,
        verdict: c.verdict,
      })),
    ),
  );
  console.log('\n### per-seed differences with the item-level paired bootstrap (test-set sampling error)\n');
  console.log(markdownTable(items));
  if (claimsOut) {
    writeClaims(claimsOut, claims);
    console.log(`\nappended ${claims.length} claims to ${claimsOut}`);
  }
}

if (require.main === module) main();
