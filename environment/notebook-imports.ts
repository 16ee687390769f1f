/**
 * Rewrite notebooks' imports of the kit to the package entry points, as a user's notebook imports them:
 *
 *   npm run notebooks:imports [-- files...]          # default: notebooks/*.ipynb; rewrites in place, lists what changed
 *   npm run notebooks:imports -- --check [files...]  # exit 1 when a rewrite is due (nothing written)
 *
 * Old style (through links in notebooks/): `from './lib/index'`, `'./lib/report/table'`, `'./data-loaders/index'`,
 * `'./recipes/index'` (any `./` or `../` depth). New style: `from 'vitpeft'` (primitives, lib/index.ts),
 * `'vitpeft/report'` (lib/report/index.ts), `'vitpeft/data'` (data-loaders/index.ts), `'vitpeft/recipes'`
 * (recipes/index.ts). Every imported name goes to the entry point that exports it (the one its old path points to
 * when that one does), so the script is also the fix after names move between entry points: it regroups existing
 * `vitpeft…` imports too. Per cell, the value imports of the kit become one block where the first of them was, the
 * `import type` lines one block where the first of those was; names keep their order; nothing else in a cell changes.
 * Re-running it is a no-op. A name no entry point exports is an error naming the notebook, cell and name.
 */
import { readFileSync, writeFileSync } from 'fs';
import * as path from 'path';
import * as ts from 'typescript';
import { ROOT, Notebook, readNotebook, committedNotebooks, cellSource } from './notebooks';

/** The package's entry points, in the order blocks are written; `file` is the source of its exports. */
export const ENTRY_POINTS = [
  { spec: 'vitpeft', file: 'lib/index.ts' },
  { spec: 'vitpeft/report', file: 'lib/report/index.ts' },
  { spec: 'vitpeft/data', file: 'data-loaders/index.ts' },
  { spec: 'vitpeft/recipes', file: 'recipes/index.ts' },
] as const;
export type EntrySpec = (typeof ENTRY_POINTS)[number]['spec'];

/** Names exported by each entry point (values and types), read from the sources with the TypeScript checker. */
export function entryExports(root: string = ROOT): Map<EntrySpec, Set<string>> {
  const files = ENTRY_POINTS.map((e) => path.join(root, e.file));
  const program = ts.createProgram(files, {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.CommonJS,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    esModuleInterop: true,
    skipLibCheck: true,
    noEmit: true,
    types: [],
  });
  const checker = program.getTypeChecker();
  const out = new Map<EntrySpec, Set<string>>();
  ENTRY_POINTS.forEach((e, i) => {
    const sf = program.getSourceFile(files[i]);
    const sym = sf && checker.getSymbolAtLocation(sf);
    if (!sym) throw new Error(`notebook-imports: cannot read the exports of ${e.file}`);
    out.set(e.spec, new Set(checker.getExportsOfModule(sym).map((s) => s.name)));
  });
  return out;
}

/** The entry point an import specifier of the kit points to, or null for any other module. */
export function entryOf(spec: string): EntrySpec | null {
  if (spec === 'vitpeft' || spec === 'vitpeft/report' || spec === 'vitpeft/data' || spec === 'vitpeft/recipes') return spec;
  if (!spec.startsWith('./') && !spec.startsWith('../')) return null;
  const parts = spec.split('/').filter((p) => p !== '.' && p !== '..' && p !== '');
  if (parts[0] === 'lib') return parts[1] === 'report' ? 'vitpeft/report' : 'vitpeft';
  if (parts[0] === 'data-loaders') return 'vitpeft/data';
  if (parts[0] === 'recipes') return 'vitpeft/recipes';
  return null;
}

interface Named {
  /** The specifier as written (`a`, `a as b`, `type T`). */
  text: string;
  /** The exported name it refers to. */
  name: string;
}

const LINE = 120;

/** `import { … } from 'spec';` on one line when it fits in 120 columns, else wrapped with two-space indents. */
export function formatImport(spec: string, names: string[], typeOnly: boolean): string {
  const head = `import ${typeOnly ? 'type ' : ''}{`;
  const tail = `} from '${spec}';`;
  const one = `${head} ${names.join(', ')} ${tail}`;
  if (one.length <= LINE) return one;
  const lines: string[] = [];
  let cur = '';
  for (const n of names) {
    const piece = `${n},`;
    if (cur && `  ${cur} ${piece}`.length > LINE - 2) {
      lines.push(`  ${cur}`);
      cur = piece;
    } else cur = cur ? `${cur} ${piece}` : piece;
  }
  if (cur) lines.push(`  ${cur}`);
  return `${head}\n${lines.join('\n')}\n${tail}`;
}

/** The cell with its kit imports regrouped by entry point (unchanged text when nothing is due). */
export function rewriteCell(src: string, exportsBy: Map<EntrySpec, Set<string>>, where: string): string {
  const sf = ts.createSourceFile('cell.ts', src, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const kit: ts.ImportDeclaration[] = [];
  for (const st of sf.statements) {
    if (ts.isImportDeclaration(st) && ts.isStringLiteral(st.moduleSpecifier) && entryOf(st.moduleSpecifier.text)) kit.push(st);
  }
  if (!kit.length) return src;
  const groups = { value: new Map<EntrySpec, Named[]>(), type: new Map<EntrySpec, Named[]>() };
  const extra: string[] = []; // namespace and side-effect imports: kept, pointed at their entry point
  for (const d of kit) {
    const from = (d.moduleSpecifier as ts.StringLiteral).text;
    const preferred = entryOf(from)!;
    const clause = d.importClause;
    const bindings = clause?.namedBindings;
    if (!clause || !bindings || clause.name || ts.isNamespaceImport(bindings)) {
      extra.push(d.getText(sf).replace(/(['"])[^'"]+\1(\s*;?)\s*$/, `'${preferred}'$2`));
      continue;
    }
    for (const el of bindings.elements) {
      const name = (el.propertyName ?? el.name).text;
      const home = exportsBy.get(preferred)?.has(name) ? preferred : ENTRY_POINTS.map((e) => e.spec).find((s) => exportsBy.get(s)?.has(name));
      if (!home) {
        throw new Error(`${where}: '${name}' (imported from '${from}') is exported by no entry point of the kit (${ENTRY_POINTS.map((e) => e.spec).join(', ')})`);
      }
      const group = clause.isTypeOnly ? groups.type : groups.value;
      const list = group.get(home) ?? [];
      if (!list.some((n) => n.text === el.getText(sf))) list.push({ text: el.getText(sf), name });
      group.set(home, list);
    }
  }
  const block = (g: Map<EntrySpec, Named[]>, typeOnly: boolean): string =>
    ENTRY_POINTS.filter((e) => g.has(e.spec))
      .map((e) => formatImport(e.spec, g.get(e.spec)!.map((n) => n.text), typeOnly))
      .join('\n');
  const firstValue = kit.find((d) => !d.importClause?.isTypeOnly || !d.importClause.namedBindings || ts.isNamespaceImport(d.importClause.namedBindings));
  const firstType = kit.find((d) => d.importClause?.isTypeOnly && d.importClause.namedBindings && ts.isNamedImports(d.importClause.namedBindings));
  const valueText = [block(groups.value, false), ...extra].filter(Boolean).join('\n');
  const typeText = block(groups.type, true);
  // Replace from the end so earlier positions stay valid.
  let out = src;
  for (const d of [...kit].reverse()) {
    const start = d.getStart(sf);
    let end = d.getEnd();
    let text = '';
    if (d === firstValue) text = valueText;
    else if (d === firstType) text = typeText;
    else if (out[end] === '\n') end += 1; // drop the whole line
    out = out.slice(0, start) + text + out.slice(end);
  }
  return out;
}

/** The notebook with its kit imports rewritten (same object when nothing changed). */
export function rewriteNotebook(nb: Notebook, exportsBy: Map<EntrySpec, Set<string>>, where: string): { nb: Notebook; cells: number[] } {
  const cells: number[] = [];
  const next = nb.cells.map((c, i) => {
    if (c.cell_type !== 'code') return c;
    const src = cellSource(c);
    const out = rewriteCell(src, exportsBy, `${where}: cell ${i}`);
    if (out === src) return c;
    cells.push(i);
    return { ...c, source: Array.isArray(c.source) ? out.split(/(?<=\n)/) : out };
  });
  return cells.length ? { nb: { ...nb, cells: next }, cells } : { nb, cells };
}

function main(argv: string[]): number {
  const check = argv.includes('--check');
  const files = argv.filter((a) => a !== '--check');
  const list = files.length ? files.map((f) => path.resolve(f)) : committedNotebooks();
  const exportsBy = entryExports();
  let due = 0;
  for (const f of list) {
    const rel = path.relative(ROOT, f);
    const { nb, cells } = rewriteNotebook(readNotebook(f), exportsBy, rel);
    if (!cells.length) continue;
    due++;
    if (check) console.error(`${rel}: cells ${cells.join(', ')} import the kit the old way (npm run notebooks:imports rewrites them)`);
    else {
      const before = readFileSync(f, 'utf8');
      writeFileSync(f, `${JSON.stringify(nb, null, before.startsWith('{\n "') ? 1 : 2)}\n`);
      console.error(`${rel}: rewrote the kit imports of cells ${cells.join(', ')}`);
    }
  }
  console.error(`notebook-imports: ${list.length} notebook(s), ${due} ${check ? 'to rewrite' : 'rewritten'}`);
  return check && due ? 1 : 0;
}

if (require.main === module) process.exit(main(process.argv.slice(2)));
