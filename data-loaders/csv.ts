/**
 * A small RFC 4180 CSV reader (quoted fields, doubled quotes, CRLF/LF, header row) whose errors name the file, the
 * row (1-based line of the file, header = row 1) and the column, because every dataset index of the papers is a CSV.
 */
import { promises as fsp } from 'fs';

/** A parsed CSV table: header names and string rows (each row has exactly `header.length` cells). */
export interface CsvTable {
  /** Where it came from (file path or a label), used in messages. */
  source: string;
  header: string[];
  rows: string[][];
  /** 1-based file line where each row starts (header is line 1 unless blank lines precede it). */
  lines: number[];
}

/** Split CSV text into records of raw cells (no header handling). Returns the cells and each record's start line. */
export function parseCsvRecords(text: string, source: string): { records: string[][]; lines: number[] } {
  const records: string[][] = [];
  const lines: number[] = [];
  let row: string[] = [];
  let cell = '';
  let inQuotes = false;
  let line = 1;
  let rowLine = 1;
  let cellStarted = false;
  let i = 0;
  if (text.charCodeAt(0) === 0xfeff) i = 1; // BOM
  const endRow = (): void => {
    row.push(cell);
    // a blank line is no record
    if (!(row.length === 1 && row[0] === '' && !cellStarted)) {
      records.push(row);
      lines.push(rowLine);
    }
    row = [];
    cell = '';
    cellStarted = false;
  };
  for (; i < text.length; i++) {
    const ch = text[i];
    if (inQuotes) {
      if (ch === '"') {
        if (text[i + 1] === '"') {
          cell += '"';
          i++;
        } else inQuotes = false;
      } else {
        if (ch === '\n') line++;
        cell += ch;
      }
      continue;
    }
    if (ch === '"') {
      if (cell !== '') throw new Error(`${source}: line ${line}: stray quote inside an unquoted field`);
      inQuotes = true;
      cellStarted = true;
    } else if (ch === ',') {
      row.push(cell);
      cell = '';
      cellStarted = true;
    } else if (ch === '\n' || ch === '\r') {
      if (ch === '\r' && text[i + 1] === '\n') i++;
      endRow();
      line++;
      rowLine = line;
    } else {
      cell += ch;
      cellStarted = true;
    }
  }
  if (inQuotes) throw new Error(`${source}: unterminated quoted field starting on or before line ${line}`);
  if (cell !== '' || row.length > 0) endRow();
  return { records, lines };
}

/** Parse CSV text with a header row. Rows with a different number of cells are an error naming the line. */
export function parseCsv(text: string, source: string): CsvTable {
  const { records, lines } = parseCsvRecords(text, source);
  if (records.length === 0) throw new Error(`${source}: empty CSV (no header row)`);
  const header = records[0].map((h) => h.trim());
  const rows = records.slice(1);
  const rowLines = lines.slice(1);
  rows.forEach((r, k) => {
    if (r.length !== header.length) {
      throw new Error(
        `${source}: line ${rowLines[k]}: ${r.length} fields, expected ${header.length} (header: ${header.join(',')})`,
      );
    }
  });
  return { source, header, rows, lines: rowLines };
}

/** Read and parse a CSV file (missing file → an error naming it). */
export async function readCsv(path: string): Promise<CsvTable> {
  let text: string;
  try {
    text = await fsp.readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read CSV ${path}: ${(e as Error).message}`);
  }
  return parseCsv(text, path);
}

/**
 * Index of column `name` (exact match after trimming). Missing → an error naming the file, the column and the columns
 * that exist.
 */
export function column(t: CsvTable, name: string): number {
  const k = t.header.indexOf(name);
  if (k < 0) throw new Error(`${t.source}: missing column '${name}'; columns: ${t.header.map((h) => `'${h}'`).join(', ')}`);
  checkUnique(t, name, k);
  return k;
}

/** A column read by name must be named once (pandas would rename the second 'x' to 'x.1'; which one is meant?). */
function checkUnique(t: CsvTable, name: string, k: number): void {
  const again = t.header.indexOf(name, k + 1);
  if (again >= 0) throw new Error(`${t.source}: column '${name}' appears twice in the header (columns ${k} and ${again})`);
}

/** Indices of several required columns (all missing ones are named in one error). */
export function columns<K extends string>(t: CsvTable, names: readonly K[]): Record<K, number> {
  const missing = names.filter((n) => !t.header.includes(n));
  if (missing.length) {
    throw new Error(
      `${t.source}: missing column${missing.length > 1 ? 's' : ''} ${missing.map((m) => `'${m}'`).join(', ')}; ` +
        `columns: ${t.header.map((h) => `'${h}'`).join(', ')}`,
    );
  }
  const out = {} as Record<K, number>;
  for (const n of names) {
    out[n] = t.header.indexOf(n);
    checkUnique(t, n, out[n]);
  }
  return out;
}

/** Parse an integer cell, or throw naming file, line and column. */
export function intCell(t: CsvTable, row: number, col: number): number {
  const s = t.rows[row][col].trim();
  // pandas writes ints of float columns as "3.0": accept an integral float
  if (!/^[-+]?\d+(\.0+)?$/.test(s)) {
    throw new Error(`${t.source}: line ${t.lines[row]}, column '${t.header[col]}': expected an integer, got '${s}'`);
  }
  return parseInt(s, 10);
}

/** The trimmed string cell. */
export function strCell(t: CsvTable, row: number, col: number): string {
  return t.rows[row][col].trim();
}

/** Serialise rows to CSV text (quotes cells containing `,`, `"` or newlines). */
export function toCsv(header: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const q = (v: string | number): string => {
    const s = String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [header, ...rows].map((r) => r.map(q).join(',')).join('\n') + '\n';
}
