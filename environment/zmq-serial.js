'use strict';
/**
 * Serialise zeromq.js v6 `send` calls per socket, and make sends on a closed socket harmless.
 *
 * zeromq.js v6 allows one send in flight per socket: a second `send` before the first has resolved throws EBUSY
 * ("Socket is busy writing; only one send operation may be in progress at any time"). tslab 1.0.22 calls
 * `sock.send(...)` without awaiting it (status, stream and display messages), so a notebook that prints or updates a
 * display while iopub is still busy can kill the kernel (seen on the 2-core machines in a 6-minute notebook).
 * `serializeSends(proto)` wraps `proto.send` so that each socket's sends run one after another in call order; the
 * returned promise settles with that send's result.
 *
 * A kernel shutdown closes every socket while sends may still be queued (iopub's final "idle" status behind "busy") or
 * about to start (tslab's heartbeat loop echoes a ping it received just before the close): zeromq then throws
 * `Error: Socket is closed` (EBADF), synchronously or as a rejection nobody handles, and the process dies with that
 * trace. A message for a closed socket can never be delivered, so the wrapper drops it: the send resolves to
 * `undefined`, whether the socket was closed before the call, while the send waited in the queue, or while it was in
 * flight. A send while the socket's bind() is still running (EBUSY "blocked by a bind or unbind operation": tslab
publishes a status on iopub when the client's first request arrives on shell, and binds the sockets concurrently)
waits for the bind, in its place in the queue, for up to 10 s. Every other error is passed on unchanged. Used by
environment/tslab-preload.js.
 */
const WRAPPED = Symbol.for('vitpeft.zmqSerialSend');

/** zeromq's error for an operation on a closed socket. */
function isClosedError(e) {
  return Boolean(e) && (e.code === 'EBADF' || /Socket is closed/.test(String(e.message)));
}

/** zeromq's error for a send while the socket's bind() has not completed (EBUSY, transient). */
function isBindingError(e) {
  return Boolean(e) && /blocked by a bind or unbind operation/.test(String(e.message));
}

/** How long a send waits for a bind in progress before its EBUSY is passed on (ms), and how often it looks (ms). */
const BIND_WAIT_MS = 10000;
const BIND_POLL_MS = 5;

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
    const sock = this;
    const dropped = (e) => sock.closed === true || isClosedError(e);
    let waitedSince = null;
    const attempt = () => {
      if (sock.closed === true) return undefined; // shutting down: nothing can be delivered any more
      let pending;
      try {
        pending = original.apply(sock, args);
      } catch (e) {
        if (dropped(e)) return undefined;
        // tslab binds its five sockets concurrently and answers the client's first kernel_info (on shell) with a
        // status on iopub, whose bind may still be running (seen when two kernels start at once under load): wait
        // for the bind instead of losing the message as an unhandled rejection.
        if (isBindingError(e)) {
          waitedSince = waitedSince ?? Date.now();
          if (Date.now() - waitedSince < BIND_WAIT_MS) return new Promise((r) => setTimeout(r, BIND_POLL_MS)).then(attempt);
        }
        throw e;
      }
      return Promise.resolve(pending).catch((e) => {
        if (dropped(e)) return undefined;
        throw e;
      });
    };
    const prev = tails.get(sock);
    // Nothing in flight: send now (other synchronous errors of zeromq stay synchronous).
    const result = prev ? prev.then(attempt) : Promise.resolve(attempt());
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    tails.set(sock, tail);
    tail.then(() => {
      if (tails.get(sock) === tail) tails.delete(sock);
    });
    return result;
  };
  send[WRAPPED] = true;
  // zeromq's native Socket.prototype.send is non-writable but configurable: define, don't assign.
  Object.defineProperty(proto, 'send', { value: send, writable: true, enumerable: false, configurable: true });
  return true;
}

module.exports = { serializeSends, isClosedError };
