#!/usr/bin/env node
// The `vitpeft` command (recipes/cli.ts). From a checkout it runs the TypeScript sources through tsx.
'use strict';
const path = require('path');
require('tsx/cjs/api').register();
require(path.join(__dirname, '..', 'recipes', 'cli.ts'))
  .main(process.argv.slice(2))
  .then((code) => process.exit(code), (e) => {
    console.error(e);
    process.exit(1);
  });
