/**
 * Notebook hygiene without Jupyter: committed notebooks carry no outputs, set their hyperparameters in the first code
 * cell, import the kit as a package (`vitpeft`, `vitpeft/report`, `vitpeft/data`, `vitpeft/recipes`, no links), and
 * avoid tslab's pitfalls (shorthand properties, renamed destructuring). Also the import rewriter
 * (environment/notebook-imports.ts) that moves old-style imports to the entry points.
 */
import { strict as assert } from 'assert';
import { readdirSync, lstatSync } from 'fs';
import * as path from 'path';
import { committedNotebooks, notebookProblems, readNotebook, stripNotebook, Notebook, ROOT } from '../environment/notebooks';
import { entryExports, rewriteNotebook, rewriteCell, formatImport, entryOf } from '../environment/notebook-imports';

function nb(cells: string[]): Notebook {
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: { kernelspec: { name: 'tslab' } },
    cells: cells.map((source) => ({ cell_type: 'code', source, outputs: [], execution_count: null, metadata: {} })),
  };
}

describe('notebooks: committed state', () => {
  it('notebooks/ holds at least the quickstart', () => {
    const names = committedNotebooks().map((f) => path.basename(f));
    assert.ok(names.includes('00-quickstart.ipynb'), names.join(', '));
  });

  for (const file of committedNotebooks()) {
    it(`${path.basename(file)} is committed clean (no outputs, hyperparameters first, tslab-safe)`, () => {
      assert.deepEqual(notebookProblems(file, readNotebook(file), { committed: true }), []);
    });
  }

  it('notebooks/ and the notebook fixtures hold no links into the project: notebooks import the kit as a package', () => {
    const links: string[] = [];
    for (const dir of [path.join(ROOT, 'notebooks'), path.join(ROOT, 'test', 'fixtures', 'notebooks')]) {
      for (const e of readdirSync(dir)) if (lstatSync(path.join(dir, e)).isSymbolicLink()) links.push(path.relative(ROOT, path.join(dir, e)));
    }
    assert.deepEqual(links, []);
  });

  it('every committed notebook and notebook fixture imports the kit through the package entry points (notebooks:imports is a no-op)', function () {
    this.timeout(120000);
    const exportsBy = entryExports();
    const files = [...committedNotebooks(), ...readdirSync(path.join(ROOT, 'test', 'fixtures', 'notebooks')).filter((f) => f.endsWith('.ipynb')).map((f) => path.join(ROOT, 'test', 'fixtures', 'notebooks', f))];
    const due = files.filter((f) => rewriteNotebook(readNotebook(f), exportsBy, f).cells.length > 0).map((f) => path.relative(ROOT, f));
    assert.deepEqual(due, [], 'run npm run notebooks:imports');
  });
});

describe('notebooks: the hygiene checker can fail', () => {
  const file = path.join(ROOT, 'notebooks', 'x.ipynb');

  it('flags outputs, execution counts, a missing scale cell and the wrong kernel', () => {
    const n = nb(['const a = 1;']);
    n.cells[0].outputs = [{ output_type: 'stream', name: 'stdout', text: 'x' }];
    n.cells[0].execution_count = 3;
    n.metadata.kernelspec = { name: 'python3' };
    const p = notebookProblems(file, n, { committed: true });
    assert.equal(p.length, 4, p.join('\n'));
    assert.match(p[0], /kernelspec 'python3', expected 'tslab'/);
    assert.match(p[1], /cell 0 has 1 output\(s\)/);
    assert.match(p[2], /cell 0 has execution_count 3/);
    assert.match(p[3], /first code cell must hold the hyperparameters/);
    assert.deepEqual(notebookProblems(file, n), [p[0]], 'outside committed mode only the kernel is checked');
  });

  it('flags shorthand properties using earlier cells’ variables (tslab ReferenceError), not local ones', () => {
    const n = nb([
      "import { init } from 'vitpeft';\nconst scale = notebookScale('smoke');\nconst hooks = {};\nfunction f() {}",
      'const ok = { scale: scale };\nconst bad = { hooks, f };\nconst local = 1;\nconst fine = { local };\nconst g = ({ step }: { step: number }) => ({ step });',
    ]);
    const p = notebookProblems(file, n, { committed: true });
    assert.equal(p.length, 2, p.join('\n'));
    assert.match(p[0], /cell 1 line 2: shorthand property '\{ hooks \}' uses 'hooks' from cell 0; .*write 'hooks: hooks'/);
    assert.match(p[1], /'\{ f \}' uses 'f' from cell 0/);
  });

  it('flags object destructuring with renamed or nested properties outside functions (tslab SyntaxError), not plain or local ones', () => {
    const n = nb([
      "const scale = notebookScale('smoke');\nconst o = { a: 1, b: { c: 2 } };",
      'const { a } = o;\nconst [x, y] = [1, 2];\nconst { a: A } = o;\nconst { b: { c } } = o;\nfunction f() { const { a: z } = o; return z; }',
    ]);
    const p = notebookProblems(file, n, { committed: true });
    assert.equal(p.length, 2, p.join('\n'));
    assert.match(p[0], /cell 1 line 3: object destructuring '\{ a: A \}' \(renamed, nested or rest\) outside a function in a cell that uses earlier cells' variables.*SyntaxError/);
    assert.match(p[1], /cell 1 line 4: .*'\{ b: \{ c \} \}'/);
  });

  it('flags object rest destructuring outside functions in cells that use earlier cells’ variables, not in parameters or bodies', () => {
    const n = nb([
      "import { init } from 'vitpeft';\nconst scale = notebookScale('smoke');\nconst HP = { t: { a: 1, b: 2 } };",
      'for (const k of [1]) {\n  const { a: _a, ...opts } = HP.t;\n}',
      'const x = { a: 1, b: 2 };\nconst { a: _a, ...rest } = x;\nconst [p, ...q] = [1, 2];',
      // Parameters and function bodies are fine (measured through the kernel).
      'const r1 = [HP.t].map(({ a, ...r }) => r);\nfunction g() { const { a, ...rest } = HP.t; return rest; }',
    ]);
    const p = notebookProblems(file, n, { committed: true });
    assert.equal(p.length, 1, p.join('\n'));
    assert.match(p[0], /cell 1 line 2: object destructuring '\{ a: _a, \.\.\.opts \}' \(renamed, nested or rest\) outside a function/);
  });

  it('flags old-style kit imports (relative paths into lib/, data-loaders/, recipes/) and relative imports tslab cannot compile', () => {
    const n = nb([
      "import { init } from '../lib/index';\nimport { tf } from './lib';\nimport { x } from './lib/report/table';\nimport { Loader } from './data-loaders/index';\n" +
        "import { setupExploraMae } from '../../recipes/index';\nimport { y } from '../shared/util';\nimport { ok } from 'vitpeft';\nconst scale = notebookScale('smoke');",
    ]);
    const p = notebookProblems(path.join(ROOT, 'notebooks', 'x.ipynb'), n, { committed: true });
    assert.equal(p.length, 6, p.join('\n'));
    for (const [k, spec] of ['../lib/index', './lib', './lib/report/table', './data-loaders/index', '../../recipes/index'].entries()) {
      assert.match(p[k], new RegExp(`imports '${spec.replace(/[.*/]/g, '\\$&')}': import the kit as a package \\('vitpeft', 'vitpeft/report', 'vitpeft/data', 'vitpeft/recipes'\\).*npm run notebooks:imports`));
    }
    assert.match(p[5], /imports '..\/shared\/util': tslab only compiles files under the notebook's folder/);
    // A folder that exists next to the notebook: test/fixtures/notebooks is not one, notebooks/assets is.
    const d = notebookProblems(path.join(ROOT, 'notebooks', 'x.ipynb'), nb(["import { a } from './assets';\nconst scale = notebookScale('smoke');"]), { committed: true });
    assert.equal(d.length, 1, d.join('\n'));
    assert.match(d[0], /imports '.\/assets', a folder: tslab does not resolve directory imports; write '.\/assets\/index'/);
  });

  it('stripNotebook removes outputs, counts and timing metadata only', () => {
    const n = nb(['1']);
    n.cells[0].outputs = [{}];
    n.cells[0].execution_count = 1;
    n.cells[0].metadata = { execution: { 'iopub.status.busy': 'x' }, tags: ['a'] };
    n.cells.push({ cell_type: 'markdown', source: '# t', metadata: {} });
    const s = stripNotebook(n);
    assert.deepEqual(s.cells[0], { cell_type: 'code', source: '1', outputs: [], execution_count: null, metadata: { tags: ['a'] } });
    assert.deepEqual(s.cells[1], n.cells[1]);
  });
});

describe('notebooks: the import rewriter (npm run notebooks:imports)', function () {
  this.timeout(120000);
  let exportsBy: ReturnType<typeof entryExports>;
  before(() => {
    exportsBy = entryExports();
  });

  it('reads each entry point’s exports from the sources: primitives, report, data, recipes (no overlap between primitives and report)', () => {
    for (const [spec, name] of [['vitpeft', 'createVit'], ['vitpeft', 'tf'], ['vitpeft', 'Vit'], ['vitpeft/report', 'showTable'], ['vitpeft/report', 'RunRecord'],
      ['vitpeft/data', 'Loader'], ['vitpeft/recipes', 'setupExploraMae']] as const) {
      assert.ok(exportsBy.get(spec)!.has(name), `${spec} exports ${name}`);
    }
    const overlap = [...exportsBy.get('vitpeft')!].filter((n) => exportsBy.get('vitpeft/report')!.has(n));
    assert.deepEqual(overlap, [], 'report names left lib/index.ts');
    assert.equal(entryOf('./lib/index'), 'vitpeft');
    assert.equal(entryOf('../lib/report/plot'), 'vitpeft/report');
    assert.equal(entryOf('./data-loaders/index'), 'vitpeft/data');
    assert.equal(entryOf('./recipes/index'), 'vitpeft/recipes');
    assert.equal(entryOf('vitpeft/report'), 'vitpeft/report');
    assert.equal(entryOf('./local'), null);
    assert.equal(entryOf('fs'), null);
  });

  it('regroups names by the entry point that exports them, value and type imports apart, other lines untouched; a re-run changes nothing', () => {
    const src = [
      '// setup',
      "import {\n  tf, init, showTable, createVit,\n  slot,\n} from './lib/index';",
      "import { Loader } from './data-loaders/index';",
      "import { existsSync } from 'fs';",
      "import type { Vit, Image } from './lib/index';",
      "import type { Dataset } from './data-loaders/index';",
      "import { plotlyInit } from './lib/report/plot';",
      'const scale = 1;',
    ].join('\n');
    const out = rewriteCell(src, exportsBy, 'x');
    assert.equal(out, [
      '// setup',
      "import { tf, init, createVit } from 'vitpeft';",
      "import { showTable, slot, plotlyInit } from 'vitpeft/report';",
      "import { Loader } from 'vitpeft/data';",
      "import { existsSync } from 'fs';",
      "import type { Vit } from 'vitpeft';",
      "import type { Image } from 'vitpeft/report';",
      "import type { Dataset } from 'vitpeft/data';",
      'const scale = 1;',
    ].join('\n'));
    assert.equal(rewriteCell(out, exportsBy, 'x'), out);
    // A name imported from the wrong entry point moves to its own.
    assert.equal(rewriteCell("import { showTable, init } from 'vitpeft';", exportsBy, 'x'), "import { init } from 'vitpeft';\nimport { showTable } from 'vitpeft/report';");
  });

  it('long import lists wrap at 120 columns with two-space indents and a trailing comma', () => {
    const names = Array.from({ length: 30 }, (_, i) => `name${i}`);
    const text = formatImport('vitpeft', names, false);
    const lines = text.split('\n');
    assert.equal(lines[0], 'import {');
    assert.equal(lines[lines.length - 1], "} from 'vitpeft';");
    assert.ok(lines.every((l) => l.length <= 120));
    assert.deepEqual(lines.slice(1, -1).join(' ').replace(/\s+/g, ' ').trim(), `${names.join(', ')},`);
    assert.equal(formatImport('vitpeft', ['a', 'b'], true), "import type { a, b } from 'vitpeft';");
  });

  it('a name no entry point exports is an error naming the notebook, cell and name', () => {
    assert.throws(() => rewriteCell("import { nothingLikeThis } from './lib/index';", exportsBy, 'notebooks/x.ipynb: cell 3'),
      /notebooks\/x\.ipynb: cell 3: 'nothingLikeThis' \(imported from '\.\/lib\/index'\) is exported by no entry point of the kit/);
  });

  it('rewrites a whole notebook, keeping the cells’ source form (list of lines)', () => {
    const n = nb(["import { init, showTable } from './lib/index';\nconst scale = notebookScale('smoke');"]);
    n.cells[0].source = (n.cells[0].source as string).split(/(?<=\n)/);
    n.cells.push({ cell_type: 'markdown', source: "import { x } from './lib/index'", metadata: {} });
    const r = rewriteNotebook(n, exportsBy, 'x.ipynb');
    assert.deepEqual(r.cells, [0]);
    assert.deepEqual(r.nb.cells[0].source, ["import { init } from 'vitpeft';\n", "import { showTable } from 'vitpeft/report';\n", "const scale = notebookScale('smoke');"]);
    assert.equal(r.nb.cells[1], n.cells[1], 'markdown untouched');
    assert.deepEqual(notebookProblems(path.join(ROOT, 'notebooks', 'x.ipynb'), r.nb, { committed: true }), []);
  });
});
