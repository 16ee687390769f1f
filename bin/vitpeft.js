#!/usr/bin/env node
'use strict';
// `npx vitpeft …`: the recipes CLI (recipes/cli.ts). Runs the built dist/recipes/cli.js, unless this is a checkout
// whose sources changed after its last build (dist/.tsbuildinfo older than a .ts file): then the sources, through tsx.
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..');
const built = path.join(root, 'dist', 'recipes', 'cli.js');
const source = path.join(root, 'recipes', 'cli.ts');
const newest = (dir) => fs.readdirSync(dir, { withFileTypes: true }).reduce((t, e) => {
  const p = path.join(dir, e.name);
  return Math.max(t, e.isDirectory() ? newest(p) : e.name.endsWith('.ts') ? fs.statSync(p).mtimeMs : 0);
}, 0);
const stamp = path.join(root, 'dist', '.tsbuildinfo'); // written by every build; not in the packed tarball
const fresh = () => !fs.existsSync(stamp) || ['lib', 'data-loaders', 'recipes'].map((d) => path.join(root, d))
  .filter(fs.existsSync).every((d) => newest(d) <= fs.statSync(stamp).mtimeMs);

let argv;
if (fs.existsSync(built) && (!fs.existsSync(source) || fresh())) argv = [built];
else if (fs.existsSync(source)) argv = ['--require', require.resolve('tsx/cjs', { paths: [root] }), source];
else {
  process.stderr.write(`vitpeft: no recipes CLI in ${root} (neither dist/recipes/cli.js nor recipes/cli.ts)\n`);
  process.exit(1);
}
const r = spawnSync(process.execPath, [...argv, ...process.argv.slice(2)], { stdio: 'inherit' });
if (r.error) throw r.error;
process.exit(r.status === null ? 1 : r.status);
