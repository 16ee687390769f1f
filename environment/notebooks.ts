/**
 * Notebook hygiene for `notebooks/*.ipynb` (no Python needed):
 *
 *   npx tsx environment/notebooks.ts check [files...]   # exit 1 listing every problem (npm run notebooks:check)
 *   npx tsx environment/notebooks.ts strip [files...]   # remove outputs / execution counts in place (npm run notebooks:strip)
 *   npx tsx environment/notebooks.ts lint [files...]    # only the tslab pitfalls (run before executing notebooks)
 *
 * Checks: committed without outputs or execution counts; nbformat 4; kernelspec `tslab`; the first code cell sets
 * the hyperparameters (`scale` and `notebookScale`); the kit is imported as a package, like a user's notebook does
 * (`'vitpeft'`, `'vitpeft/report'`, `'vitpeft/data'`, `'vitpeft/recipes'`), never through relative paths into lib/,
 * data-loaders/ or recipes/ (`npm run notebooks:imports` rewrites those); other relative imports stay under the
 * notebook's folder and name a file (tslab neither compiles files outside the kernel's folder nor resolves directory
 * imports); and the tslab pitfall of shorthand
 * properties: `{ x }` where `x` is a variable of an *earlier* cell compiles but throws `ReferenceError: x is not
 * defined` at run time (tslab 1.0.22 rewrites `x` to `exports.x` everywhere except in shorthand properties);
 * object destructuring with renamed, nested or rest elements outside a function in a cell that uses earlier cells'
 * variables (tslab inserts an `exports` binding into the pattern: SyntaxError at top level, ReferenceError in a block).
 */
import { readFileSync, readdirSync, existsSync, statSync } from 'fs';
import * as path from 'path';
import * as ts from 'typescript';
import { writeFileAtomic } from '../lib/io/atomic';

export interface NotebookCell {
  cell_type: 'code' | 'markdown' | 'raw';
  source: string | string[];
  outputs?: unknown[];
  execution_count?: number | null;
  metadata?: Record<string, unknown>;
}
export interface Notebook {
  nbformat: number;
  nbformat_minor: number;
  metadata: { kernelspec?: { name?: string } } & Record<string, unknown>;
  cells: NotebookCell[];
}

export const ROOT = path.resolve(__dirname, '..');

export function readNotebook(file: string): Notebook {
  let nb: Notebook;
  try {
    nb = JSON.parse(readFileSync(file, 'utf8')) as Notebook;
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(nb.cells)) throw new Error(`${file}: no 'cells' array (not a notebook?)`);
  return nb;
}

export function cellSource(c: NotebookCell): string {
  return Array.isArray(c.source) ? c.source.join('') : c.source;
}

/** Names declared at the top level of a cell (variables, functions, classes, enums, imports). */
function topLevelNames(sf: ts.SourceFile): Set<string> {
  const names = new Set<string>();
  const addBinding = (n: ts.BindingName): void => {
    if (ts.isIdentifier(n)) names.add(n.text);
    else n.elements.forEach((e) => !ts.isOmittedExpression(e) && addBinding(e.name));
  };
  for (const st of sf.statements) {
    if (ts.isVariableStatement(st)) st.declarationList.declarations.forEach((d) => addBinding(d.name));
    else if ((ts.isFunctionDeclaration(st) || ts.isClassDeclaration(st) || ts.isEnumDeclaration(st)) && st.name) names.add(st.name.text);
    else if (ts.isImportDeclaration(st) && st.importClause) {
      const ic = st.importClause;
      if (ic.name) names.add(ic.name.text);
      const nb = ic.namedBindings;
      if (nb && ts.isNamespaceImport(nb)) names.add(nb.name.text);
      if (nb && ts.isNamedImports(nb)) nb.elements.forEach((e) => names.add(e.name.text));
    }
  }
  return names;
}

/** Whether `n` lies in a function, arrow, method or accessor (its parameters included). */
function insideFunction(n: ts.Node): boolean {
  for (let p = n.parent; p; p = p.parent) if (ts.isFunctionLike(p)) return true;
  return false;
}

/** Every name declared anywhere in a cell (any scope): parameters, locals, destructuring, functions... */
function allDeclaredNames(sf: ts.SourceFile): Set<string> {
  const names = new Set<string>();
  const addBinding = (n: ts.BindingName): void => {
    if (ts.isIdentifier(n)) names.add(n.text);
    else n.elements.forEach((e) => !ts.isOmittedExpression(e) && addBinding(e.name));
  };
  const visit = (n: ts.Node): void => {
    if (ts.isVariableDeclaration(n) || ts.isParameter(n) || ts.isBindingElement(n)) addBinding(n.name);
    if ((ts.isFunctionDeclaration(n) || ts.isClassDeclaration(n) || ts.isFunctionExpression(n) || ts.isClassExpression(n)) && n.name) names.add(n.name.text);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  topLevelNames(sf).forEach((x) => names.add(x));
  return names;
}

/** Problems of one notebook (empty = fine). `committed` adds the checks for notebooks stored in the repo. */
export function notebookProblems(file: string, nb: Notebook, o: { committed?: boolean } = {}): string[] {
  const out: string[] = [];
  const rel = path.relative(ROOT, path.resolve(file));
  if (nb.nbformat !== 4) out.push(`${rel}: nbformat ${nb.nbformat}, expected 4`);
  if (nb.metadata?.kernelspec?.name !== 'tslab') out.push(`${rel}: kernelspec '${String(nb.metadata?.kernelspec?.name)}', expected 'tslab'`);
  const earlier = new Map<string, number>();
  let firstCode = true;
  nb.cells.forEach((c, i) => {
    if (o.committed && c.cell_type === 'code') {
      if ((c.outputs ?? []).length > 0) out.push(`${rel}: cell ${i} has ${c.outputs!.length} output(s); commit notebooks without outputs (npm run notebooks:strip)`);
      if (c.execution_count !== null && c.execution_count !== undefined) out.push(`${rel}: cell ${i} has execution_count ${c.execution_count} (npm run notebooks:strip)`);
    }
    if (c.cell_type !== 'code') return;
    const src = cellSource(c);
    if (o.committed && firstCode) {
      if (!/\bnotebookScale\s*[<(]/.test(src) || !/\bscale\b/.test(src)) {
        out.push(`${rel}: the first code cell must hold the hyperparameters, with \`const scale = notebookScale(...)\` (smoke | paper)`);
      }
    }
    firstCode = false;
    for (const m of src.matchAll(/(?:from|import)\s+['"](\.{1,2}\/[^'"]*)['"]/g)) {
      const spec = m[1];
      const target = path.resolve(path.dirname(path.resolve(file)), spec);
      const kit = /^(?:\.\.?\/)+(lib|data-loaders|recipes)(?:\/|$)/.exec(spec);
      if (kit) {
        out.push(
          `${rel}: cell ${i} imports '${spec}': import the kit as a package ('vitpeft', 'vitpeft/report', 'vitpeft/data', ` +
            `'vitpeft/recipes'), as a notebook anywhere does; \`npm run notebooks:imports\` rewrites these lines`,
        );
      } else if (spec.startsWith('../')) out.push(`${rel}: cell ${i} imports '${spec}': tslab only compiles files under the notebook's folder`);
      else if (!existsSync(`${target}.ts`) && existsSync(target) && statSync(target).isDirectory()) {
        out.push(`${rel}: cell ${i} imports '${spec}', a folder: tslab does not resolve directory imports; write '${spec.replace(/\/$/, '')}/index'`);
      }
    }
    const sf = ts.createSourceFile(`cell${i}.ts`, src, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
    const local = allDeclaredNames(sf);
    let usesEarlier = false;
    const scan = (n: ts.Node): void => {
      if (ts.isIdentifier(n) && earlier.has(n.text) && !local.has(n.text)) usesEarlier = true;
      ts.forEachChild(n, scan);
    };
    scan(sf);
    const visit = (n: ts.Node): void => {
      // In a cell that uses earlier cells' names, tslab 1.0.22 adds a binding named `exports` to every object pattern
      // declared outside a function whose elements are renamed, nested or rest (`const { a: b } = o` becomes
      // `const { exports, a: b } = exports.o`): a SyntaxError at top level ("Identifier 'exports' has already been
      // declared"), a TDZ ReferenceError inside a top-level block or loop. Measured fine: plain `const { a } = o`,
      // any pattern in a cell that uses no earlier names, and patterns in parameters or function bodies.
      if (
        usesEarlier &&
        ts.isObjectBindingPattern(n) &&
        ts.isVariableDeclaration(n.parent) &&
        n.elements.some((e) => e.dotDotDotToken || e.propertyName !== undefined) &&
        !insideFunction(n)
      ) {
        const { line } = sf.getLineAndCharacterOfPosition(n.getStart(sf));
        out.push(
          `${rel}: cell ${i} line ${line + 1}: object destructuring '${n.getText(sf)}' (renamed, nested or rest) outside a function ` +
            `in a cell that uses earlier cells' variables; tslab rewrites it to '{ exports, … } = exports.…' ` +
            `(SyntaxError or ReferenceError): declare each name with its own const`,
        );
      }
      if (ts.isShorthandPropertyAssignment(n)) {
        const name = n.name.text;
        if (earlier.has(name) && !local.has(name)) {
          const { line } = sf.getLineAndCharacterOfPosition(n.getStart(sf));
          out.push(
            `${rel}: cell ${i} line ${line + 1}: shorthand property '{ ${name} }' uses '${name}' from cell ${earlier.get(name)}; ` +
              `tslab fails on this at run time (ReferenceError): write '${name}: ${name}'`,
          );
        }
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
    topLevelNames(sf).forEach((x) => earlier.set(x, i));
  });
  return out;
}

/** The notebook without outputs and execution counts (and without per-cell execution timing metadata). */
export function stripNotebook(nb: Notebook): Notebook {
  return {
    ...nb,
    cells: nb.cells.map((c) => {
      if (c.cell_type !== 'code') return c;
      const { execution: _e, ...meta } = (c.metadata ?? {}) as Record<string, unknown>;
      return { ...c, outputs: [], execution_count: null, metadata: meta };
    }),
  };
}

/** The committed notebooks: `notebooks/*.ipynb`. */
export function committedNotebooks(): string[] {
  const dir = path.join(ROOT, 'notebooks');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.ipynb'))
    .sort()
    .map((f) => path.join(dir, f));
}

function main(argv: string[]): number {
  const [cmd, ...files] = argv;
  const list = files.length ? files.map((f) => path.resolve(f)) : committedNotebooks();
  if (cmd === 'check' || cmd === 'lint') {
    const problems = list.flatMap((f) => notebookProblems(f, readNotebook(f), { committed: cmd === 'check' }));
    problems.forEach((p) => console.error(p));
    console.error(`notebooks: ${list.length} checked, ${problems.length} problem(s)`);
    return problems.length ? 1 : 0;
  }
  if (cmd === 'strip') {
    for (const f of list) {
      const nb = readNotebook(f);
      writeFileAtomic(f, `${JSON.stringify(stripNotebook(nb), null, 1)}\n`);
      console.error(`stripped ${path.relative(ROOT, f)}`);
    }
    return 0;
  }
  console.error('usage: tsx environment/notebooks.ts check|lint|strip [notebook.ipynb ...]');
  return 2;
}

if (require.main === module) process.exit(main(process.argv.slice(2)));
