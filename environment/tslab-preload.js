'use strict';
/**
 * Preloaded into the tslab kernel (`NODE_OPTIONS=--require …/tslab-preload.js`, set in the kernelspec by
 * environment/install-kernel.sh): serialises zeromq sends per socket (see zmq-serial.js). Loads the same zeromq module
 * tslab will load (resolved from tslab's folder), so the patched prototype is the one tslab's sockets use. Does
 * nothing outside a tslab kernel's process tree other than loading zeromq; any failure is reported on stderr and the
 * kernel starts unpatched rather than not at all.
 */
const path = require('path');
try {
  const { serializeSends } = require('./zmq-serial');
  const tslabDir = path.dirname(require.resolve('tslab/package.json', { paths: [path.join(__dirname, '..')] }));
  const zmq = require(require.resolve('zeromq', { paths: [tslabDir] }));
  let owner = zmq.Publisher.prototype;
  while (owner && !Object.prototype.hasOwnProperty.call(owner, 'send')) owner = Object.getPrototypeOf(owner);
  if (!owner) throw new Error('zeromq: no prototype owns send()');
  serializeSends(owner);
} catch (e) {
  process.stderr.write(`vitpeft tslab-preload: zeromq sends not serialised (${e && e.message ? e.message : e})\n`);
}
