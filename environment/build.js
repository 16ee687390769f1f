#!/usr/bin/env node
'use strict';
/**
 * `npm run build` (also run by `npm ci` through `prepare`, and before the notebooks and the tests): compiles lib/,
 * data-loaders/ and recipes/ into dist/ (CommonJS JS, .d.ts, source maps) with tslab's own TypeScript 5.0 and the
 * settings notebooks compile with (tsconfig.build.json extends tsconfig.tslab.json), so every declaration file is one a
 * tslab kernel can read. `tsc -b` is incremental: when nothing changed it only compares time stamps (≈ 2 s).
 * Data files next to the sources (anything but .ts and .md, e.g. JSON read at run time relative to `__dirname`) are
 * copied to the same place under dist/. Outputs whose source file is gone are removed afterwards, so a deleted or
 * moved module never lingers in dist/ (or in the packed tarball). Extra arguments go to tsc
 * (`npm run build -- --watch`; copying and pruning are skipped then).
 */
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const ROOT = path.resolve(__dirname, '..');
const DIST = path.join(ROOT, 'dist');
const tslabDir = path.dirname(require.resolve('tslab/package.json', { paths: [ROOT] }));
const tsc = require.resolve('@tslab/typescript-for-tslab/bin/tsc', { paths: [tslabDir] });
const extra = process.argv.slice(2);

const r = spawnSync(process.execPath, [tsc, '-b', path.join(ROOT, 'tsconfig.build.json'), ...extra], { stdio: 'inherit', cwd: ROOT });
if (r.error) throw r.error;
if (r.status !== 0) process.exit(r.status === null ? 1 : r.status);

const SOURCES = ['lib', 'data-loaders', 'recipes'];
const isAsset = (name) => !name.endsWith('.ts') && !name.endsWith('.md');

/** dist/<dir>/<name>.{js,d.ts,js.map,d.ts.map} → <dir>/<name>.ts; a data file → itself. */
function sourceOf(rel) {
  if (isAsset(rel) && !/\.(?:js|map)$/.test(rel)) return rel;
  const m = /^(.*)\.(?:d\.ts|js)(?:\.map)?$/.exec(rel);
  return m ? `${m[1]}.ts` : null;
}

let copied = 0;
function copyAssets(dir) {
  for (const e of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) copyAssets(rel);
    else if (isAsset(e.name)) {
      const from = path.join(ROOT, rel);
      const to = path.join(DIST, rel);
      if (!fs.existsSync(to) || fs.statSync(to).mtimeMs < fs.statSync(from).mtimeMs) {
        fs.mkdirSync(path.dirname(to), { recursive: true });
        fs.copyFileSync(from, to);
        copied++;
      }
    }
  }
}
SOURCES.filter((d) => fs.existsSync(path.join(ROOT, d))).forEach(copyAssets);
let pruned = 0;
function prune(dir) {
  if (!fs.existsSync(dir)) return;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      prune(p);
      if (fs.readdirSync(p).length === 0) fs.rmdirSync(p);
      continue;
    }
    const rel = path.relative(DIST, p);
    if (rel === '.tsbuildinfo') continue;
    const src = sourceOf(rel);
    if (src === null || !fs.existsSync(path.join(ROOT, src))) {
      fs.rmSync(p);
      pruned++;
    }
  }
}
prune(DIST);
if (copied) process.stderr.write(`build: copied ${copied} data file(s) into dist/\n`);
if (pruned) process.stderr.write(`build: removed ${pruned} file(s) of dist/ whose source is gone\n`);
