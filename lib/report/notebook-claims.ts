/**
 * Where a notebook records its reproduction claims, so the runner can gather them into the scoreboard.
 *
 *   const claims = [claimFromPairs({ paper: 'PYRA (ECCV 2024)', ... }, oursPerSeed, baselinePerSeed)];
 *   recordClaims('02-tome-pyra', claims);   // → out/notebooks/02-tome-pyra/claims.jsonl
 *
 * A notebook's claims live in `<notebook output folder>/<notebook>/claims.jsonl`, one validated `ClaimRecord` (see
 * claims.ts) per line. The output folder is the runner's `--out` (it passes `VITPEFT_NOTEBOOK_OUT` to the kernel),
 * else `out/notebooks` of the checkout (of the working folder for an installed copy), as in an interactive session.
 *
 * A claim is identified by (paper, table/figure, row, metric): recording a claim again (a re-run cell) replaces the
 * earlier record with that identity and keeps the others, so a notebook may record its claims from several cells. The
 * runner empties the file before it runs the notebook, so a run's file holds exactly that run's claims. Every record is
 * validated before anything is written (errors name the claim and the field), and the file is replaced atomically.
 */
import { existsSync } from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../io/atomic';
import { ClaimRecord, checkClaim, readClaims } from './claims';
import { fromRoot, isInstalledCopy, projectRoot } from './paths';

/** The folder of notebook outputs: `$VITPEFT_NOTEBOOK_OUT` (the runner's `--out`), else `out/notebooks`. */
export function notebookOutDir(): string {
  const env = process.env.VITPEFT_NOTEBOOK_OUT;
  if (env) return path.resolve(env);
  return isInstalledCopy(projectRoot()) ? path.resolve('out', 'notebooks') : fromRoot('out', 'notebooks');
}

/** Check a notebook name (its file name without `.ipynb`): one path segment of letters, digits, `.`, `_`, `-`. */
export function checkNotebookName(notebook: string, what = 'notebook'): string {
  if (typeof notebook !== 'string' || !/^[A-Za-z0-9_][A-Za-z0-9._-]*$/.test(notebook) || notebook.endsWith('.ipynb')) {
    throw new Error(`${what}: expected the notebook's file name without .ipynb (letters, digits, '.', '_', '-'), got ${JSON.stringify(notebook)}`);
  }
  return notebook;
}

/** The claims file of `notebook` under `dir` (default `notebookOutDir()`). */
export function notebookClaimsFile(notebook: string, dir: string = notebookOutDir()): string {
  return path.join(dir, checkNotebookName(notebook), 'claims.jsonl');
}

/** A claim's identity: paper, table/figure, row and metric. */
export function claimKey(c: Pick<ClaimRecord, 'paper' | 'tableOrFigure' | 'row' | 'metric'>): string {
  return JSON.stringify([c.paper, c.tableOrFigure, c.row, c.metric]);
}

export interface RecordClaimsResult {
  /** The claims file written. */
  file: string;
  /** The claims it now holds (earlier ones kept, same identity replaced). */
  claims: ClaimRecord[];
  /** How many of `claims` replaced a record with the same identity. */
  replaced: number;
}

/**
 * Record a notebook's claims (see the module comment): validated first (a bad record, or two with the same identity,
 * throws naming it and writes nothing), merged into the notebook's claims file by identity, written atomically.
 * Records without a `source` get the notebook's name.
 */
export function recordClaims(notebook: string, claims: readonly ClaimRecord[], o: { dir?: string } = {}): RecordClaimsResult {
  checkNotebookName(notebook, 'recordClaims');
  if (!Array.isArray(claims)) throw new Error(`recordClaims(${notebook}): expected an array of claim records, got ${typeof claims}`);
  const seen = new Map<string, number>();
  const fresh = claims.map((c, i) => {
    checkClaim(c, `recordClaims(${notebook}) claim ${i}`);
    const k = claimKey(c);
    if (seen.has(k)) throw new Error(`recordClaims(${notebook}) claim ${i}: same paper / table / row / metric as claim ${seen.get(k)} (${c.tableOrFigure} · ${c.row} · ${c.metric})`);
    seen.set(k, i);
    return c.source ? c : { ...c, source: notebook };
  });
  const file = notebookClaimsFile(notebook, o.dir);
  const earlier = existsSync(file) ? readClaims(file) : [];
  let replaced = 0;
  const merged = earlier.map((c) => {
    const k = claimKey(c);
    if (!seen.has(k)) return c;
    replaced++;
    const i = seen.get(k)!;
    seen.delete(k);
    return fresh[i];
  });
  for (const i of seen.values()) merged.push(fresh[i]);
  writeFileAtomic(file, merged.map((c) => JSON.stringify(c)).join('\n') + (merged.length ? '\n' : ''));
  return { file, claims: merged, replaced };
}
