/**
 * Dead exports: names exported by the kit's modules (lib/, data-loaders/, recipes/) that no other file uses — not
 * another module, not a test, notebook, benchmark, tool or environment script. Re-exports in `index.ts` files do not
 * count as uses. Identifiers are read from the TypeScript syntax tree (comments and strings do not count); notebooks
 * contribute their code cells.
 *
 *   npx tsx tools/dead-exports.ts          # lists them; exit code 1 when there are any
 *
 * A type that is used in its own file (e.g. in an exported function's signature) is not reported: un-exporting it
 * would break declaration emit. test/layering.test.ts runs this check.
 */
import { readFileSync, readdirSync, statSync } from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

const ROOT = path.resolve(__dirname, '..');
/** Folders whose exports are checked. */
export const MODULE_DIRS = ['lib', 'data-loaders', 'recipes'] as const;
/** Folders whose files count as users. */
export const USER_DIRS = ['lib', 'data-loaders', 'recipes', 'test', 'notebooks', 'bench', 'tools', 'environment', 'bin'] as const;

function walk(dir: string, out: string[] = []): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    if (e === 'node_modules' || e.startsWith('.')) continue;
    const p = path.join(dir, e);
    const st = statSync(p, { throwIfNoEntry: false });
    // notebooks/lib, notebooks/recipes … are links to the kit's folders: skip them (the folders are read directly)
    if (!st || (st.isDirectory() && dir.endsWith(`${path.sep}notebooks`) && /^(lib|data-loaders|recipes)$/.test(e))) continue;
    if (st.isDirectory()) walk(p, out);
    else if (/\.(ts|js|ipynb)$/.test(e)) out.push(p);
  }
  return out;
}

/** Source text of a file (code cells for a notebook). */
function sourceOf(file: string): string {
  const text = readFileSync(file, 'utf8');
  if (!file.endsWith('.ipynb')) return text;
  const nb = JSON.parse(text) as { cells: Array<{ cell_type: string; source: string | string[] }> };
  return nb.cells.filter((c) => c.cell_type === 'code').map((c) => (Array.isArray(c.source) ? c.source.join('') : c.source)).join('\n');
}

/** Identifiers of a source (parsed: comments, strings and template text do not count). */
export function identifiers(text: string, file = 'x.ts'): Set<string> {
  const sf = ts.createSourceFile(file.replace(/\.ipynb$/, '.ts'), text, ts.ScriptTarget.Latest, false, file.endsWith('.js') ? ts.ScriptKind.JS : ts.ScriptKind.TS);
  const ids = new Set<string>();
  const visit = (n: ts.Node): void => {
    if (ts.isIdentifier(n)) ids.add(n.text);
    n.forEachChild(visit);
  };
  visit(sf);
  return ids;
}

export interface ExportedName {
  file: string;
  name: string;
  kind: 'value' | 'type';
  /** Used in its own file outside the declaration. */
  usedLocally: boolean;
}

/** Names a module exports by declaration (`export function f`, `export const a, b`, `export { x }` of local names). */
export function exportedNames(file: string, text: string): ExportedName[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const out: Array<Omit<ExportedName, 'usedLocally'>> = [];
  const isExported = (n: ts.Node): boolean =>
    ts.canHaveModifiers(n) && (ts.getModifiers(n) ?? []).some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  for (const st of sf.statements) {
    if (ts.isExportDeclaration(st)) {
      if (st.moduleSpecifier || !st.exportClause || !ts.isNamedExports(st.exportClause)) continue;
      for (const el of st.exportClause.elements) out.push({ file, name: el.name.text, kind: st.isTypeOnly || el.isTypeOnly ? 'type' : 'value' });
      continue;
    }
    if (!isExported(st)) continue;
    if (ts.isVariableStatement(st)) {
      for (const d of st.declarationList.declarations) if (ts.isIdentifier(d.name)) out.push({ file, name: d.name.text, kind: 'value' });
    } else if ((ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st) || ts.isEnumDeclaration(st)) && st.name) {
      out.push({ file, name: st.name.text, kind: 'value' });
    } else if ((ts.isInterfaceDeclaration(st) || ts.isTypeAliasDeclaration(st)) && st.name) {
      out.push({ file, name: st.name.text, kind: 'type' });
    }
  }
  // Local uses: occurrences beyond the declaration itself.
  const counts = new Map<string, number>();
  const visit = (n: ts.Node): void => {
    if (ts.isIdentifier(n)) counts.set(n.text, (counts.get(n.text) ?? 0) + 1);
    n.forEachChild(visit);
  };
  visit(sf);
  return out.map((e) => ({ ...e, usedLocally: (counts.get(e.name) ?? 0) > 1 }));
}

/** Exports of the kit's modules that no other file uses. */
export function deadExports(root = ROOT): ExportedName[] {
  const users = USER_DIRS.flatMap((d) => walk(path.join(root, d)));
  const ids = new Map<string, Set<string>>();
  for (const f of users) ids.set(f, identifiers(sourceOf(f), f));
  const dead: ExportedName[] = [];
  for (const d of MODULE_DIRS) {
    for (const file of walk(path.join(root, d))) {
      if (!file.endsWith('.ts') || path.basename(file) === 'index.ts') continue;
      for (const e of exportedNames(file, readFileSync(file, 'utf8'))) {
        if (e.kind === 'type' && e.usedLocally) continue;
        let used = false;
        for (const [f, set] of ids) {
          if (f === file || path.basename(f) === 'index.ts') continue;
          if (set.has(e.name)) {
            used = true;
            break;
          }
        }
        if (!used) dead.push({ ...e, file: path.relative(root, file) });
      }
    }
  }
  return dead;
}

if (require.main === module) {
  const dead = deadExports();
  for (const e of dead) console.log(`${e.file}: ${e.name} (${e.kind}${e.usedLocally ? ', used in its own file' : ''})`);
  console.log(`${dead.length} dead export(s)`);
  process.exit(dead.length ? 1 : 0);
}
