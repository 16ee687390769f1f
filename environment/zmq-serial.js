'use strict';
/**
 * Serialise zeromq.js v6 `send` calls per socket.
 *
 * zeromq.js v6 allows one send in flight per socket: a second `send` before the first has resolved throws EBUSY
 * ("Socket is busy writing; only one send operation may be in progress at any time"). tslab 1.0.22 calls
 * `sock.send(...)` without awaiting it (status, stream and display messages), so a notebook that prints or updates a
 * display while iopub is still busy can kill the kernel (seen on the 2-core machines in a 6-minute notebook).
 * `serializeSends(proto)` wraps `proto.send` so that each socket's sends run one after another in call order; the
 * returned promise settles with that send's result. Used by environment/tslab-preload.js.
 */
const WRAPPED = Symbol.for('vitpeft.zmqSerialSend');

/**
 * @param {object} proto  the prototype that owns `send` (zeromq's `Socket.prototype`)
 * @returns {boolean} true when wrapped now, false when it already was
 */
function serializeSends(proto) {
  if (!proto || typeof proto.send !== 'function') {
    throw new Error('serializeSends: the prototype has no send() method');
  }
  if (proto.send[WRAPPED]) return false;
  const original = proto.send;
  const tails = new WeakMap(); // socket -> promise of its last queued send (never rejects)
  const send = function (...args) {
    const prev = tails.get(this);
    // Nothing in flight: send now (keeps zeromq's synchronous errors, e.g. a closed socket, synchronous).
    const result = prev ? prev.then(() => original.apply(this, args)) : Promise.resolve(original.apply(this, args));
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    tails.set(this, tail);
    tail.then(() => {
      if (tails.get(this) === tail) tails.delete(this);
    });
    return result;
  };
  send[WRAPPED] = true;
  // zeromq's native Socket.prototype.send is non-writable but configurable: define, don't assign.
  Object.defineProperty(proto, 'send', { value: send, writable: true, enumerable: false, configurable: true });
  return true;
}

module.exports = { serializeSends };
