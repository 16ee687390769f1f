/**
 * "What this run shows" written from a notebook's own claim records, so the text can never disagree with the
 * numbers the same execution printed (a hard-coded paragraph goes stale the moment a setting changes).
 */
import type { ClaimRecord } from './claims';

const signed = (x: number, d: number): string => (Number.isFinite(x) ? `${x >= 0 ? '+' : ''}${x.toFixed(d)}` : 'n/a');

/**
 * One markdown bullet per claim: our mean with its interval, the seeds and per-seed values, how many seeds lie on the
 * claim's side of zero, the paper's value (or "no number") and the verdict with the rule's reason.
 * @param claims the records this execution wrote (`claimFromPairs` / `recordClaims`).
 * @param lead an optional first line (e.g. the scale and the test-set sizes).
 * @param digits decimals of the differences (default 1).
 */
export function claimFindings(claims: readonly ClaimRecord[], lead?: string, digits = 1): string {
  const f = (x: number): string => signed(x, digits);
  const lines = claims.map((c) => {
    const up = c.ours.perSeed.filter((x) => x > 0).length;
    const iv = Number.isFinite(c.ours.lo) ? ` [${c.ours.lo.toFixed(digits)}, ${c.ours.hi.toFixed(digits)}]` : ' (no interval)';
    const paper = c.paperValue === null ? 'the paper gives no number for this quantity' : `paper ${f(c.paperValue)}`;
    return `- **${c.claim}** (${c.row}): ours ${f(c.ours.mean)}${iv} over seeds ${c.seeds.join(', ')} (per seed ${c.ours.perSeed.map(f).join(', ')}; ${up} of ${c.ours.perSeed.length} above 0); ${paper} → **${c.verdict}** (${c.reason}).`;
  });
  return [...(lead ? [lead, ''] : []), ...lines].join('\n');
}
