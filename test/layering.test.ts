/**
 * The layering of the kit (tools/layering.ts): lib/ imports neither data-loaders/ nor recipes/, data-loaders/ does not
 * import recipes/, no cycle between folders; and no dead exports (tools/dead-exports.ts). Each rule is also checked
 * on a small synthetic tree that breaks it, so the checks are known to fail when they should.
 */
import { strict as assert } from 'assert';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describeCycles, findCycles, importSpecifiers, layeringReport, nodeOf } from '../tools/layering';
import { deadExports } from '../tools/dead-exports';

const ROOT = path.resolve(__dirname, '..');

function tree(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vitpeft-layer-'));
  for (const [rel, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

describe('layering: primitives ← data ← recipes, no folder cycles', () => {
  it('the repository: no layer violation and no cycle between folders', () => {
    const r = layeringReport(ROOT);
    assert.ok(r.edges.length > 50, `the import graph was read (${r.edges.length} edges)`);
    assert.deepEqual(r.violations, []);
    assert.deepEqual(describeCycles(r), []);
    // The recipes layer is the only one importing both the primitives and the data loaders.
    const from = (n: string) => new Set(r.edges.filter((e) => e.from === n).map((e) => e.to.split('/')[0]));
    assert.ok(from('recipes').has('lib') && from('recipes').has('data-loaders'));
    for (const n of new Set(r.edges.map((e) => e.from))) {
      if (n !== 'recipes') assert.ok(!(from(n).has('lib') && from(n).has('data-loaders')) || n === 'data-loaders', n);
    }
  });

  it('reads static, dynamic and require imports, and names the nodes', () => {
    const specs = importSpecifiers(
      "import { a } from './a';\nexport * from '../b/c';\nimport type { T } from './t';\nconst x = require('./r');\nconst y = import('./d');\nimport z = require('./e');\nimport * as tf from '@tensorflow/tfjs';\n// import { no } from './comment';",
    );
    assert.deepEqual(specs, ['./a', '../b/c', './t', './r', './d', './e']);
    assert.equal(nodeOf('lib/vit/forward.ts'), 'lib/vit');
    assert.equal(nodeOf('lib/rng.ts'), 'lib/rng.ts');
    assert.equal(nodeOf('data-loaders/formats/vtab.ts'), 'data-loaders');
    assert.equal(nodeOf('recipes/run.ts'), 'recipes');
    assert.equal(nodeOf('test/x.test.ts'), null);
  });

  it('flags lib → data-loaders, lib → recipes, data-loaders → recipes and imports leaving the repository', () => {
    const dir = tree({
      'lib/vit/a.ts': "import { d } from '../../data-loaders/d';\nexport const a = d;",
      'lib/rng.ts': "import { r } from '../recipes/r';\nexport const x = r;",
      'data-loaders/d.ts': "import { r } from '../recipes';\nexport const d = r;",
      'recipes/index.ts': "export * from './r';",
      'recipes/r.ts': "import { a } from '../lib/vit/a';\nimport { w } from '../../elsewhere';\nexport const r = a + w;",
    });
    try {
      const r = layeringReport(dir);
      assert.equal(r.violations.length, 4, r.violations.join('\n'));
      assert.ok(r.violations.some((v) => /lib\/vit\/a\.ts imports '..\/..\/data-loaders\/d': lib\/ must not import data-loaders\//.test(v)));
      assert.ok(r.violations.some((v) => /lib\/rng\.ts imports '..\/recipes\/r': lib\/ must not import recipes\//.test(v)));
      assert.ok(r.violations.some((v) => /data-loaders\/d\.ts imports '..\/recipes': data-loaders\/ must not import recipes\//.test(v)));
      assert.ok(r.violations.some((v) => /outside the repository/.test(v)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finds folder cycles (io ⇄ train) and names the files that make them', () => {
    const dir = tree({
      'lib/io/checkpoint.ts': "import { Optimizer } from '../train/optim';\nexport const c = Optimizer;",
      'lib/train/optim.ts': "export const Optimizer = 1;",
      'lib/train/step.ts': "import { c } from '../io/checkpoint';\nexport const s = c;",
      'lib/vit/v.ts': "import { s } from '../train/step';\nexport const v = s;",
    });
    try {
      const r = layeringReport(dir);
      assert.deepEqual(r.cycles, [['lib/io', 'lib/train']]);
      const [line] = describeCycles(r);
      assert.match(line, /lib\/io\/checkpoint\.ts → '..\/train\/optim'/);
      assert.match(line, /lib\/train\/step\.ts → '..\/io\/checkpoint'/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.deepEqual(findCycles([{ from: 'a', to: 'b' }, { from: 'b', to: 'c' }, { from: 'c', to: 'a' }, { from: 'c', to: 'd' }]), [['a', 'b', 'c']]);
    assert.deepEqual(findCycles([{ from: 'a', to: 'b' }, { from: 'b', to: 'c' }]), []);
  });
});

describe('dead exports', () => {
  it('every name the kit exports is used by another file (module, test, notebook, bench, tool)', function () {
    this.timeout(120000);
    const dead = deadExports(ROOT).filter((e) => !e.usedLocally);
    assert.deepEqual(dead.map((e) => `${e.file}: ${e.name}`), []);
  });

  it('finds an export nobody uses (and not one a test or a notebook uses)', () => {
    const dir = tree({
      'lib/a.ts': 'export function used(): number { return 1; }\nexport const unused = 2;\nexport interface T { x: number }\n// unused in a comment does not count\n',
      'lib/index.ts': "export * from './a';\nexport { unused } from './a';\n",
      'data-loaders/b.ts': "export const nbOnly = 3;\nexport const s = 'unused';\n",
      'test/a.test.ts': "import { used } from '../lib/a';\nused();\n",
      'notebooks/n.ipynb': JSON.stringify({ cells: [{ cell_type: 'code', source: ['import { nbOnly } from \'./data-loaders/b\';\n', 'nbOnly;'] }, { cell_type: 'markdown', source: 's' }] }),
    });
    try {
      assert.deepEqual(deadExports(dir).map((e) => `${e.file}: ${e.name} (${e.kind})`).sort(), ['data-loaders/b.ts: s (value)', 'lib/a.ts: T (type)', 'lib/a.ts: unused (value)']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
