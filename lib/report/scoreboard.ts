/**
 * The reproduction scoreboard: every notebook's claims (claims.ts, recorded with `recordClaims`) gathered with the
 * scale and time of the notebook run that made them.
 *
 * `gatherScoreboard(out)` reads the runner's output folder: `summary.json` (one entry per notebook run: ok, finished,
 * scale, seconds) and `<notebook>/claims.jsonl`. A claims folder without a runner entry (a notebook run interactively)
 * is included with the file's time. `mergeScoreboards(earlier, now)` keeps the earlier scoreboard's entries of
 * notebooks not gathered now (like the runner's summary), replaces re-gathered ones in place and appends new ones.
 * Every claim is validated on the way in: a bad record is refused with its file, line and field.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'fs';
import * as path from 'path';
import { writeFileAtomic } from '../io/atomic';
import { ClaimRecord, Verdict, VERDICTS, checkClaim, readClaims } from './claims';
import { checkNotebookName } from './notebook-claims';

export const SCOREBOARD_FORMAT = 'vitpeft-scoreboard/1';

/** One notebook on the scoreboard. */
export interface ScoreboardEntry {
  /** The notebook's name (file name without .ipynb). */
  notebook: string;
  /** Its path relative to the project root, as the runner's summary gives it (null when run interactively). */
  path: string | null;
  /** Where the entry comes from: the runner's summary, a claims file alone (interactive run), or an earlier scoreboard. */
  origin: 'runner' | 'claims file' | 'earlier scoreboard';
  /** Whether the run finished without a cell error (null: not known). */
  ok: boolean | null;
  /** When the run finished (ISO time; for a claims file alone, its modification time). */
  finished: string | null;
  /** The runner's `--scale` (null: the notebook's own default, stated in each claim's `scale`). */
  scale: string | null;
  seconds: number | null;
  /** The executed notebook's HTML export (relative to the output folder's parent), if any. */
  html: string | null;
  claims: ClaimRecord[];
}

export interface Scoreboard {
  format: typeof SCOREBOARD_FORMAT;
  /** When it was gathered (ISO time). */
  generated: string;
  notebooks: ScoreboardEntry[];
}

interface SummaryEntry {
  notebook: string;
  ok?: unknown;
  finished?: unknown;
  scale?: unknown;
  seconds?: unknown;
  html?: unknown;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

/** The runner's summary.json (missing: []); a malformed file or entry is an error naming it. */
export function readRunnerSummary(file: string): SummaryEntry[] {
  if (!existsSync(file)) return [];
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(data)) throw new Error(`${file}: expected a JSON array of notebook runs`);
  return data.map((e, i) => {
    if (!e || typeof e !== 'object' || typeof (e as SummaryEntry).notebook !== 'string') throw new Error(`${file}: entry ${i}.notebook: expected a string`);
    return e as SummaryEntry;
  });
}

/** A notebook's name from its path (`notebooks/02-tome-pyra.ipynb` → `02-tome-pyra`). */
export function notebookName(p: string): string {
  return path.basename(p).replace(/\.ipynb$/, '');
}

/**
 * Gather the scoreboard of the runner's output folder `out` (see the module comment). Bad claims files throw naming
 * the file, the line and the field.
 */
export function gatherScoreboard(out: string, now: Date = new Date()): Scoreboard {
  const entries: ScoreboardEntry[] = [];
  const claimsOf = (name: string): ClaimRecord[] => {
    const f = path.join(out, name, 'claims.jsonl');
    return existsSync(f) ? readClaims(f) : [];
  };
  const base = path.basename(out);
  for (const s of readRunnerSummary(path.join(out, 'summary.json'))) {
    const name = notebookName(s.notebook);
    const html = str(s.html);
    entries.push({
      notebook: name, path: s.notebook, origin: 'runner', ok: typeof s.ok === 'boolean' ? s.ok : null, finished: str(s.finished),
      scale: str(s.scale), seconds: num(s.seconds), html: html ? path.join(base, path.basename(html)) : null, claims: claimsOf(name),
    });
  }
  if (existsSync(out)) {
    const known = new Set(entries.map((e) => e.notebook));
    for (const d of readdirSync(out).sort()) {
      const f = path.join(out, d, 'claims.jsonl');
      if (known.has(d) || !existsSync(f)) continue;
      checkNotebookName(d, `${path.join(out, d)}: folder name`);
      entries.push({
        notebook: d, path: null, origin: 'claims file', ok: null, finished: new Date(statSync(f).mtimeMs).toISOString().replace(/\.\d+Z$/, 'Z'),
        scale: null, seconds: null, html: null, claims: readClaims(f),
      });
    }
  }
  return { format: SCOREBOARD_FORMAT, generated: now.toISOString().replace(/\.\d+Z$/, 'Z'), notebooks: entries };
}

/** `now` over `earlier`: earlier entries of notebooks not in `now` are kept (origin 'earlier scoreboard'), in place. */
export function mergeScoreboards(earlier: Scoreboard | null, now: Scoreboard): Scoreboard {
  if (!earlier) return now;
  const fresh = new Map(now.notebooks.map((e) => [e.notebook, e]));
  const merged: ScoreboardEntry[] = earlier.notebooks.map((e) => {
    const n = fresh.get(e.notebook);
    if (n) {
      fresh.delete(e.notebook);
      return n;
    }
    return { ...e, origin: 'earlier scoreboard' as const };
  });
  for (const e of now.notebooks) if (fresh.has(e.notebook)) merged.push(e);
  return { ...now, notebooks: merged };
}

/** Validate a scoreboard (every claim checked; errors name the file, the entry and the field). */
export function checkScoreboard(sb: Scoreboard, what = 'scoreboard'): Scoreboard {
  if (!sb || typeof sb !== 'object') throw new Error(`${what}: expected an object`);
  if (sb.format !== SCOREBOARD_FORMAT) throw new Error(`${what}.format: expected '${SCOREBOARD_FORMAT}', got '${String(sb.format)}'`);
  if (typeof sb.generated !== 'string') throw new Error(`${what}.generated: expected a string`);
  if (!Array.isArray(sb.notebooks)) throw new Error(`${what}.notebooks: expected an array`);
  const names = new Set<string>();
  sb.notebooks.forEach((e, i) => {
    const at = `${what}.notebooks[${i}]`;
    if (!e || typeof e !== 'object') throw new Error(`${at}: expected an object`);
    checkNotebookName(e.notebook, `${at}.notebook`);
    if (names.has(e.notebook)) throw new Error(`${at}.notebook: '${e.notebook}' appears twice`);
    names.add(e.notebook);
    if (!['runner', 'claims file', 'earlier scoreboard'].includes(e.origin)) throw new Error(`${at}.origin: unexpected '${String(e.origin)}'`);
    if (!Array.isArray(e.claims)) throw new Error(`${at}.claims: expected an array`);
    e.claims.forEach((c, j) => checkClaim(c, `${at}.claims[${j}]`));
  });
  return sb;
}

/** Read and validate a scoreboard file (errors name the file). */
export function readScoreboard(file: string): Scoreboard {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not a readable scoreboard (${(e as Error).message})`);
  }
  return checkScoreboard(data as Scoreboard, file);
}

/** Write a scoreboard as JSON, validated first, atomically. */
export function writeScoreboard(file: string, sb: Scoreboard): void {
  checkScoreboard(sb);
  writeFileAtomic(file, JSON.stringify(sb, null, 2) + '\n');
}

function fmt(x: number | null, digits = 2): string {
  return x === null || !Number.isFinite(x) ? '–' : String(+x.toFixed(digits));
}

/** The scoreboard as table rows (one per claim; interval `–` when there is none). */
export function scoreboardRows(sb: Scoreboard, digits = 2): Array<Record<string, string | number>> {
  return sb.notebooks.flatMap((e) =>
    e.claims.map((c) => ({
      notebook: e.notebook,
      paper: c.paper,
      'table/figure': c.tableOrFigure,
      row: c.row,
      metric: c.metric,
      'paper value': fmt(c.paperValue, digits),
      ours: fmt(c.ours.mean, digits),
      interval: Number.isFinite(c.ours.lo) ? `[${fmt(c.ours.lo, digits)}, ${fmt(c.ours.hi, digits)}] (${Math.round(c.ours.level * 100)} %, ${c.ours.method})` : '–',
      seeds: c.seeds.length,
      scale: c.scale,
      verdict: c.verdict,
      run: e.finished ? `${e.finished}${e.scale ? ` (${e.scale})` : ''}` : '–',
    })),
  );
}

/** Counts of verdicts over all claims. */
export function verdictCounts(sb: Scoreboard): Record<Verdict, number> {
  const n = Object.fromEntries(VERDICTS.map((v) => [v, 0])) as Record<Verdict, number>;
  for (const e of sb.notebooks) for (const c of e.claims) n[c.verdict]++;
  return n;
}

/** One line: how many claims, how many of each verdict, from how many notebooks. */
export function scoreboardSummary(sb: Scoreboard): string {
  const n = verdictCounts(sb);
  const total = VERDICTS.reduce((s, v) => s + n[v], 0);
  const withClaims = sb.notebooks.filter((e) => e.claims.length).length;
  return `${total} claim(s) from ${withClaims} of ${sb.notebooks.length} notebook(s): ${VERDICTS.map((v) => `${n[v]} ${v}`).join(', ')}`;
}

function mdCell(v: unknown): string {
  return String(v).replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The scoreboard as a Markdown table (for the README), with the summary line and the notebooks without claims. */
export function scoreboardMarkdown(sb: Scoreboard): string {
  const rows = scoreboardRows(sb);
  const cols = ['notebook', 'paper', 'table/figure', 'row', 'metric', 'paper value', 'ours', 'interval', 'seeds', 'scale', 'verdict'];
  const lines = [`${scoreboardSummary(sb)} (gathered ${sb.generated}).`, ''];
  if (rows.length) {
    lines.push(`| ${cols.join(' | ')} |`, `|${cols.map(() => '---').join('|')}|`);
    for (const r of rows) lines.push(`| ${cols.map((c) => mdCell(r[c])).join(' | ')} |`);
  }
  const none = sb.notebooks.filter((e) => !e.claims.length).map((e) => e.notebook);
  if (none.length) lines.push('', `Notebooks with no claims recorded: ${none.join(', ')}.`);
  return lines.join('\n');
}
