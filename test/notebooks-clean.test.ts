/**
 * Notebook hygiene without Jupyter: committed notebooks carry no outputs, set their hyperparameters in the first code
 * cell, import the kit the way tslab can compile it, and avoid tslab's shorthand-property pitfall. Also checks the
 * `notebooks/lib` / `notebooks/data-loaders` links and that the sources have no directory imports (tslab cannot
 * resolve those).
 */
import { strict as assert } from 'assert';
import { readdirSync, readFileSync, realpathSync, lstatSync, statSync, existsSync } from 'fs';
import * as path from 'path';
import { committedNotebooks, notebookProblems, readNotebook, stripNotebook, Notebook, ROOT } from '../environment/notebooks';

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

  it('notebooks/lib and notebooks/data-loaders link to the project folders (how notebooks import the kit)', () => {
    for (const name of ['lib', 'data-loaders']) {
      const link = path.join(ROOT, 'notebooks', name);
      assert.ok(lstatSync(link).isSymbolicLink(), `notebooks/${name} must be a symlink`);
      assert.equal(realpathSync(link), realpathSync(path.join(ROOT, name)));
    }
  });

  it('lib/ and data-loaders/ have no directory imports and leave their folder only for folders linked in notebooks/', () => {
    // tslab resolves `./x` to `./x.js` only (never `./x/index`), and resolves `../X/...` from notebooks/lib/... to
    // notebooks/X/..., which exists only as a link.
    const bad: string[] = [];
    const walk = (dir: string): void => {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts')) {
          const src = readFileSync(p, 'utf8');
          for (const m of src.matchAll(/(?:from|import|require\()\s*['"](\.{1,2}\/[^'"]*)['"]/g)) {
            const target = path.resolve(path.dirname(p), m[1]);
            if (!existsSync(`${target}.ts`) && existsSync(target) && statSync(target).isDirectory()) {
              bad.push(`${path.relative(ROOT, p)}: '${m[1]}' is a directory import`);
            }
            const top = path.relative(ROOT, target).split(path.sep)[0];
            if (!existsSync(path.join(ROOT, 'notebooks', top))) bad.push(`${path.relative(ROOT, p)}: '${m[1]}' reaches ${top}/, which notebooks/ does not link`);
          }
        }
      }
    };
    walk(path.join(ROOT, 'lib'));
    walk(path.join(ROOT, 'data-loaders'));
    assert.deepEqual(bad, []);
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
      "import { init } from './lib/index';\nconst scale = notebookScale('smoke');\nconst hooks = {};\nfunction f() {}",
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
      "import { init } from './lib/index';\nconst scale = notebookScale('smoke');\nconst HP = { t: { a: 1, b: 2 } };",
      'for (const k of [1]) {\n  const { a: _a, ...opts } = HP.t;\n}',
      'const x = { a: 1, b: 2 };\nconst { a: _a, ...rest } = x;\nconst [p, ...q] = [1, 2];',
      // Parameters and function bodies are fine (measured through the kernel).
      'const r1 = [HP.t].map(({ a, ...r }) => r);\nfunction g() { const { a, ...rest } = HP.t; return rest; }',
    ]);
    const p = notebookProblems(file, n, { committed: true });
    assert.equal(p.length, 1, p.join('\n'));
    assert.match(p[0], /cell 1 line 2: object destructuring '\{ a: _a, \.\.\.opts \}' \(renamed, nested or rest\) outside a function/);
  });

  it('flags kit imports tslab cannot compile', () => {
    const n = nb(["import { init } from '../lib/index';\nimport { tf } from './lib';\nimport { x } from './lib/report/table';\nconst scale = notebookScale('smoke');"]);
    const p = notebookProblems(file, n, { committed: true });
    assert.equal(p.length, 2, p.join('\n'));
    assert.match(p[0], /imports '..\/lib\/index': tslab only compiles files under the notebook's folder/);
    assert.match(p[1], /imports '.\/lib', a folder: tslab does not resolve directory imports; write '.\/lib\/index'/);
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
