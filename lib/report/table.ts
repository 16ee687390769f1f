/**
 * Tables: danfo DataFrames (or plain rows) shown as HTML tables in a notebook and as aligned text in a terminal.
 *
 * Nothing here imports danfojs-node at load time (it takes ~1 s): tables read any DataFrame-like object structurally
 * (`columns` + `values`, as danfo's DataFrame and Series have), and `toDataFrame` requires danfo on first use.
 */
import type { DataFrame } from 'danfojs-node';
import { MimeBundle, displayBundle, escapeHtml } from './display';
import type { BackendReport } from '../backend';

/** What a danfo DataFrame or Series looks like to the table helpers. */
export interface DataFrameLike {
  columns: string[];
  /** Rows (DataFrame: unknown[][]) or one column (Series: unknown[]). */
  values: unknown[] | unknown[][];
  index?: Array<string | number>;
}

/** A table: a DataFrame-like, or an array of row objects (columns in first-seen key order). */
export type TableInput = DataFrameLike | ReadonlyArray<object>;

export interface TableOptions {
  /** Significant digits of non-integer numbers (default 4). */
  digits?: number;
  /** Show at most this many rows: first and last halves with an ellipsis row between (default 60). */
  maxRows?: number;
  /** Show the index as the first column (default: true for DataFrames whose index is not 0..n-1, else false). */
  index?: boolean;
  /** Caption above the table. */
  caption?: string;
}

/** A table normalised to strings: header, rows and the index labels. */
export interface TableData {
  columns: string[];
  rows: unknown[][];
  index: Array<string | number>;
}

function isDataFrameLike(x: unknown): x is DataFrameLike {
  return typeof x === 'object' && x !== null && Array.isArray((x as DataFrameLike).columns) && Array.isArray((x as DataFrameLike).values);
}

/** Normalise a table input (DataFrame, Series or row objects) to columns + rows. */
export function tableData(input: TableInput): TableData {
  if (isDataFrameLike(input)) {
    const cols = input.columns.map(String);
    const vals = input.values as unknown[];
    // A Series (one column) has 1-D values; a DataFrame has one array per row.
    const rows = vals.length > 0 && !Array.isArray(vals[0]) ? vals.map((v) => [v]) : (vals as unknown[][]);
    if (rows.some((r) => r.length !== cols.length)) {
      throw new Error(`tableData: rows have ${rows.find((r) => r.length !== cols.length)!.length} cells but there are ${cols.length} columns (${cols.join(', ')})`);
    }
    const index = input.index && input.index.length === rows.length ? [...input.index] : rows.map((_, i) => i);
    return { columns: cols, rows, index };
  }
  if (!Array.isArray(input)) {
    throw new Error(`tableData: expected a DataFrame, a Series or an array of row objects, got ${typeof input}`);
  }
  const columns: string[] = [];
  const seen = new Set<string>();
  input.forEach((row, i) => {
    if (typeof row !== 'object' || row === null || Array.isArray(row)) {
      throw new Error(`tableData: row ${i} is not an object (${Array.isArray(row) ? 'array' : typeof row})`);
    }
    for (const k of Object.keys(row as Record<string, unknown>)) {
      if (!seen.has(k)) {
        seen.add(k);
        columns.push(k);
      }
    }
  });
  const rows = (input as ReadonlyArray<Record<string, unknown>>).map((r) => columns.map((c) => r[c]));
  return { columns, rows, index: input.map((_, i) => i) };
}

/** Format one cell: integers as is, other numbers with `digits` significant digits, null/undefined/NaN empty. */
export function formatCell(v: unknown, digits = 4): string {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return '';
    if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-4 || a >= 1e6)) return v.toExponential(Math.max(0, digits - 1));
    return String(Number(v.toPrecision(digits)));
  }
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v) && v.every((x) => typeof x === 'number')) return `[${v.map((x) => formatCell(x, digits)).join(', ')}]`;
  return JSON.stringify(v);
}

interface Prepared {
  header: string[];
  body: string[][];
  /** Row position after which an ellipsis row goes (or -1). */
  cut: number;
  hidden: number;
  numeric: boolean[];
}

function prepare(input: TableInput, o: TableOptions): Prepared {
  const t = tableData(input);
  const digits = o.digits ?? 4;
  const maxRows = o.maxRows ?? 60;
  if (!Number.isInteger(maxRows) || maxRows < 2) throw new Error(`table: maxRows must be an integer ≥ 2, got ${maxRows}`);
  const defaultIndex = isDataFrameLike(input) && t.index.some((v, i) => v !== i);
  const withIndex = o.index ?? defaultIndex;
  let rows = t.rows;
  let index = t.index;
  let cut = -1;
  let hidden = 0;
  if (rows.length > maxRows) {
    const head = Math.ceil(maxRows / 2);
    const tail = maxRows - head;
    hidden = rows.length - maxRows;
    rows = [...rows.slice(0, head), ...rows.slice(rows.length - tail)];
    index = [...index.slice(0, head), ...index.slice(index.length - tail)];
    cut = head;
  }
  const numeric = t.columns.map((_, j) => t.rows.length > 0 && t.rows.every((r) => r[j] === null || r[j] === undefined || typeof r[j] === 'number'));
  const header = withIndex ? ['', ...t.columns] : t.columns;
  const body = rows.map((r, i) => {
    const cells = r.map((v) => formatCell(v, digits));
    return withIndex ? [String(index[i]), ...cells] : cells;
  });
  return { header, body, cut, hidden, numeric: withIndex ? [false, ...numeric] : numeric };
}

/** The table as an HTML `<table>` (escaped; numbers right-aligned). */
export function tableHtml(input: TableInput, o: TableOptions = {}): string {
  const p = prepare(input, o);
  const align = (j: number): string => (p.numeric[j] ? ' style="text-align:right"' : '');
  const th = p.header.map((h, j) => `<th${align(j)}>${escapeHtml(h)}</th>`).join('');
  const trs: string[] = [];
  p.body.forEach((r, i) => {
    if (i === p.cut) trs.push(`<tr><td colspan="${p.header.length}" style="text-align:center">… ${p.hidden} more rows …</td></tr>`);
    trs.push(`<tr>${r.map((c, j) => `<td${align(j)}>${escapeHtml(c)}</td>`).join('')}</tr>`);
  });
  const caption = o.caption ? `<caption>${escapeHtml(o.caption)}</caption>` : '';
  return `<table class="vitpeft-table">${caption}<thead><tr>${th}</tr></thead><tbody>${trs.join('')}</tbody></table>`;
}

/** The table as aligned monospace text (numbers right-aligned, a rule under the header). */
export function tableText(input: TableInput, o: TableOptions = {}): string {
  const p = prepare(input, o);
  const width = (s: string): number => [...s].length;
  const w = p.header.map((h, j) => Math.max(width(h), ...p.body.map((r) => width(r[j])), 1));
  const pad = (s: string, j: number): string => (p.numeric[j] ? ' '.repeat(w[j] - width(s)) + s : s + ' '.repeat(w[j] - width(s)));
  const line = (cells: string[]): string => cells.map(pad).join('  ').replace(/\s+$/, '');
  const out: string[] = [];
  if (o.caption) out.push(o.caption);
  out.push(line(p.header), w.map((n) => '-'.repeat(n)).join('  '));
  p.body.forEach((r, i) => {
    if (i === p.cut) out.push(`… ${p.hidden} more rows …`);
    out.push(line(r));
  });
  return out.join('\n');
}

/** The table as a MIME bundle (text/html + text/plain). */
export function tableBundle(input: TableInput, o: TableOptions = {}): MimeBundle {
  return { 'text/html': tableHtml(input, o), 'text/plain': tableText(input, o) };
}

/** Show a DataFrame / Series / array of rows as a table (HTML in a notebook, text in a terminal). */
export function showTable(input: TableInput, o: TableOptions = {}): void {
  displayBundle(tableBundle(input, o));
}

/** danfojs-node, required on first use (loading it takes about a second). */
export function danfo(): typeof import('danfojs-node') {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return require('danfojs-node');
}

/** Build a danfo DataFrame from row objects (columns in first-seen key order; missing cells become NaN). */
export function toDataFrame(rows: ReadonlyArray<object>): DataFrame {
  const t = tableData(rows);
  const dfd = danfo();
  if (t.rows.length === 0) return new dfd.DataFrame([]);
  const data = t.rows.map((r) => r.map((v) => (v === undefined || v === null ? NaN : typeof v === 'object' ? JSON.stringify(v) : v)));
  return new dfd.DataFrame(data as never, { columns: t.columns });
}

/** An object as key/value rows (nested objects flattened to dotted keys): hyperparameters, backend reports. */
export function keyValueRows(obj: Record<string, unknown>, prefix = ''): Array<{ key: string; value: unknown }> {
  const out: Array<{ key: string; value: unknown }> = [];
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === 'object' && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype) {
      out.push(...keyValueRows(v as Record<string, unknown>, key));
    } else {
      out.push({ key, value: v });
    }
  }
  return out;
}

/** The backend report as key / value rows (what a notebook shows first). */
export function backendRows(r: BackendReport): Array<{ key: string; value: unknown }> {
  return keyValueRows({
    backend: r.backend,
    via: r.via,
    threads: r.threads,
    simd: r.simd,
    'fast ops': r.fastOps,
    'tfjs-core': r.versions['tfjs-core'],
    node: r.node,
    cpus: `${r.cpus} × ${r.cpuModel}`,
    'custom kernels': r.customKernels.join(', ') || '-',
    skipped: r.candidates.filter((c) => !c.ok).map((c) => `${c.candidate}: ${c.reason}`).join('; ') || '-',
  });
}
