'use strict';
/**
 * Preloaded into the tslab kernel (`NODE_OPTIONS=--require …/tslab-preload.js`, set in the kernelspec by
 * environment/install-kernel.sh): serialises zeromq sends per socket and drops sends on closed sockets (see
 * zmq-serial.js). It patches the zeromq module of the tslab that will really run: tslab hands the kernel over to the
 * tslab installed in the nearest node_modules above the kernel's working folder (the notebook's folder) when there is
 * one, else runs itself (the kernelspec's binary) — so the kernelspec of one checkout also serves notebooks of another
 * project. Does nothing else; any failure is reported on stderr and the kernel starts unpatched rather than not at all.
 */
const fs = require('fs');
const path = require('path');

/** tslab's own rule (dist/main.js findLocalStartKernel): the first ancestor of cwd with node_modules/tslab. */
function localTslab(cwd) {
  for (let dir = cwd; ; dir = path.dirname(dir)) {
    if (path.basename(dir) !== 'node_modules' && fs.existsSync(path.join(dir, 'node_modules', 'tslab', 'dist', 'main.js'))) {
      return path.join(dir, 'node_modules', 'tslab');
    }
    if (path.dirname(dir) === dir) return null;
  }
}

try {
  const { serializeSends } = require('./zmq-serial');
  const own = path.dirname(require.resolve('tslab/package.json', { paths: [path.join(__dirname, '..')] }));
  const tslabDir = localTslab(process.cwd()) || own;
  const zmq = require(require.resolve('zeromq', { paths: [tslabDir] }));
  let owner = zmq.Publisher.prototype;
  while (owner && !Object.prototype.hasOwnProperty.call(owner, 'send')) owner = Object.getPrototypeOf(owner);
  if (!owner) throw new Error('zeromq: no prototype owns send()');
  serializeSends(owner);
} catch (e) {
  process.stderr.write(`vitpeft tslab-preload: zeromq sends not serialised (${e && e.message ? e.message : e})\n`);
}
