/**
 * The kit's layering, checked from the import statements: primitives (`lib/`) ← data (`data-loaders/`) ← recipes
 * (`recipes/`) ← notebooks / tools / tests.
 *
 * Rules:
 * - no file in `lib/` imports `data-loaders/` or `recipes/`;
 * - no file in `data-loaders/` imports `recipes/`;
 * - no cycle between folders. Folders are `data-loaders`, `recipes` and each sub-folder of `lib/` (`lib/vit`,
 *   `lib/train`, …); a file directly in `lib/` (`lib/rng.ts`, `lib/backend.ts`, …) is its own node, so the core files
 *   the sub-folders build on do not merge into one "lib" node. Entry files (`index.ts`) are included.
 *
 *   npx tsx tools/layering.ts      # prints the folder graph and any violation (exit code 1 when there is one)
 *
 * test/layering.test.ts runs `layeringReport` on the repository and on synthetic trees that break each rule.
 */
import { readFileSync, readdirSync, statSync } from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

/** Relative module specifiers a file imports (static imports / re-exports, `import('…')`, `require('…')`). */
export function importSpecifiers(text: string, file = 'x.ts'): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, file.endsWith('.js') ? ts.ScriptKind.JS : ts.ScriptKind.TS);
  const out: string[] = [];
  const visit = (n: ts.Node): void => {
    if ((ts.isImportDeclaration(n) || ts.isExportDeclaration(n)) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      out.push(n.moduleSpecifier.text);
    } else if (ts.isCallExpression(n) && n.arguments.length === 1 && ts.isStringLiteralLike(n.arguments[0])) {
      const callee = n.expression;
      if (callee.kind === ts.SyntaxKind.ImportKeyword || (ts.isIdentifier(callee) && callee.text === 'require')) out.push(n.arguments[0].text);
    } else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference) && ts.isStringLiteral(n.moduleReference.expression)) {
      out.push(n.moduleReference.expression.text);
    }
    n.forEachChild(visit);
  };
  visit(sf);
  return out.filter((s) => s.startsWith('.'));
}

/** The layering node of a repository-relative path (see the module comment); null outside the checked folders. */
export function nodeOf(rel: string): string | null {
  const parts = rel.split(/[\\/]/);
  if (parts[0] === 'lib') return parts.length > 2 ? `lib/${parts[1]}` : rel.replace(/\.ts$/, '.ts');
  if (parts[0] === 'data-loaders' || parts[0] === 'recipes') return parts[0];
  return null;
}

export interface ImportEdge {
  from: string;
  to: string;
  /** Repository-relative importing file and the specifier. */
  file: string;
  spec: string;
}

function listTs(dir: string, out: string[] = []): string[] {
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries) {
    if (e === 'node_modules' || e.startsWith('.')) continue;
    const p = path.join(dir, e);
    const st = statSync(p);
    if (st.isDirectory()) listTs(p, out);
    else if (e.endsWith('.ts') && !e.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** Every import between checked files of `root` (files read from disk). */
export function importEdges(root: string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const top of ['lib', 'data-loaders', 'recipes']) {
    for (const file of listTs(path.join(root, top))) {
      const rel = path.relative(root, file);
      const from = nodeOf(rel)!;
      for (const spec of importSpecifiers(readFileSync(file, 'utf8'), file)) {
        const target = path.relative(root, path.resolve(path.dirname(file), spec));
        const resolved = /\.(ts|js)$/.test(target) ? target : [`${target}.ts`, path.join(target, 'index.ts')].find((t) => {
          try {
            return statSync(path.join(root, t)).isFile();
          } catch {
            return false;
          }
        }) ?? `${target}.ts`;
        const to = nodeOf(resolved);
        if (to === null) {
          edges.push({ from, to: resolved.split(/[\\/]/)[0] === '..' ? '(outside the repository)' : resolved.split(/[\\/]/)[0], file: rel, spec });
        } else if (to !== from) {
          edges.push({ from, to, file: rel, spec });
        }
      }
    }
  }
  return edges;
}

/** Cycles of a directed graph given as edges (each reported once, as a node list starting at its smallest node). */
export function findCycles(edges: ReadonlyArray<Pick<ImportEdge, 'from' | 'to'>>): string[][] {
  const adj = new Map<string, Set<string>>();
  for (const e of edges) {
    if (!adj.has(e.from)) adj.set(e.from, new Set());
    adj.get(e.from)!.add(e.to);
  }
  // Tarjan's strongly connected components; a component of size > 1 (or a self-loop) holds a cycle.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const comps: string[][] = [];
  const strong = (v: string): void => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    on.add(v);
    for (const w of adj.get(v) ?? []) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || adj.get(v)?.has(v)) comps.push(comp.sort());
    }
  };
  for (const v of [...adj.keys()].sort()) if (!idx.has(v)) strong(v);
  return comps.sort((a, b) => a[0].localeCompare(b[0]));
}

export interface LayeringReport {
  edges: ImportEdge[];
  /** Imports that break a layer rule, as readable lines. */
  violations: string[];
  cycles: string[][];
}

/** Check the layer rules and folder cycles of the repository at `root`. */
export function layeringReport(root: string): LayeringReport {
  const edges = importEdges(root);
  const violations: string[] = [];
  for (const e of edges) {
    const fromTop = e.from.split('/')[0];
    if (e.to === '(outside the repository)') violations.push(`${e.file} imports '${e.spec}', outside the repository`);
    else if (fromTop === 'lib' && (e.to === 'data-loaders' || e.to === 'recipes')) violations.push(`${e.file} imports '${e.spec}': lib/ must not import ${e.to}/`);
    else if (fromTop === 'data-loaders' && e.to === 'recipes') violations.push(`${e.file} imports '${e.spec}': data-loaders/ must not import recipes/`);
    else if (!['lib', 'data-loaders', 'recipes'].includes(e.to.split('/')[0])) violations.push(`${e.file} imports '${e.spec}' from ${e.to}/, which is not a kit folder`);
  }
  const cycles = findCycles(edges.filter((e) => e.to !== '(outside the repository)'));
  return { edges, violations, cycles };
}

/** One line per cycle, with the files that make each edge of it. */
export function describeCycles(r: LayeringReport): string[] {
  return r.cycles.map((c) => {
    const set = new Set(c);
    const why = r.edges.filter((e) => set.has(e.from) && set.has(e.to)).map((e) => `${e.file} → '${e.spec}'`);
    return `cycle between ${c.join(', ')}: ${why.join('; ')}`;
  });
}

if (require.main === module) {
  const root = path.resolve(__dirname, '..');
  const r = layeringReport(root);
  const graph = new Map<string, Set<string>>();
  for (const e of r.edges) {
    if (!graph.has(e.from)) graph.set(e.from, new Set());
    graph.get(e.from)!.add(e.to);
  }
  for (const [k, v] of [...graph].sort(([a], [b]) => a.localeCompare(b))) console.log(`${k} → ${[...v].sort().join(', ')}`);
  for (const v of r.violations) console.log(`VIOLATION ${v}`);
  for (const c of describeCycles(r)) console.log(`CYCLE ${c}`);
  process.exit(r.violations.length || r.cycles.length ? 1 : 0);
}
