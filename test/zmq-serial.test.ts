/**
 * environment/zmq-serial.js: zeromq.js v6 throws EBUSY when a socket's send starts while another is in flight (tslab
 * never awaits its sends), and EBADF ("Socket is closed") for a send on a closed socket, synchronously or as a
 * rejection. A fake socket with those rules checks that the wrapper runs sends one at a time, in order, and that a
 * kernel shutdown (sockets closed with sends queued, in flight or about to start) never throws nor leaves an unhandled
 * rejection, which would kill the kernel with a crash trace. The real zeromq module is checked for the same rules.
 */
import { strict as assert } from 'assert';
import * as path from 'path';
const { serializeSends } = require('../environment/zmq-serial.js') as { serializeSends: (proto: object) => boolean };

function closedError(): Error {
  return Object.assign(new Error('Socket is closed'), { code: 'EBADF', errno: 9 });
}

class FakeSocket {
  busy = false;
  closed = false;
  sent: string[] = [];
  private inFlight: ((e: Error) => void) | null = null;
  send(msg: string): Promise<void> {
    if (this.closed) throw closedError();
    if (this.busy) throw new Error('EBUSY: Socket is busy writing; only one send operation may be in progress at any time');
    this.busy = true;
    return new Promise((resolve, reject) => {
      this.inFlight = reject;
      setTimeout(() => {
        if (this.closed) return; // rejected by close()
        this.busy = false;
        this.inFlight = null;
        if (msg === 'bad') reject(new Error('send failed: bad'));
        else {
          this.sent.push(msg);
          resolve();
        }
      }, 1);
    });
  }
  /** Like zeromq: later sends throw EBADF; a send in flight is rejected with it. */
  close(): void {
    this.closed = true;
    this.inFlight?.(closedError());
    this.inFlight = null;
  }
}

/** A FakeSocket subclass whose prototype owns a wrapped `send` (zeromq's is non-writable but configurable). */
function wrappedClass(): typeof FakeSocket {
  class Sock extends FakeSocket {}
  Object.defineProperty(Sock.prototype, 'send', { value: FakeSocket.prototype.send, writable: false, configurable: true });
  assert.equal(serializeSends(Sock.prototype), true);
  return Sock;
}

/** Runs `body`, then waits a few ticks; returns the unhandled rejections that happened meanwhile. */
async function unhandledDuring(body: () => Promise<void> | void): Promise<unknown[]> {
  const seen: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    seen.push(reason);
  };
  const mochaListeners = process.listeners('unhandledRejection');
  process.removeAllListeners('unhandledRejection');
  process.on('unhandledRejection', onUnhandled);
  try {
    await body();
    await new Promise((r) => setTimeout(r, 20));
  } finally {
    process.removeListener('unhandledRejection', onUnhandled);
    mochaListeners.forEach((l) => process.on('unhandledRejection', l as (...a: unknown[]) => void));
  }
  return seen;
}

describe('environment/zmq-serial: one zeromq send in flight per socket', () => {
  it('the fake socket fails like zeromq without the wrapper: EBUSY, and EBADF after close', () => {
    const s = new FakeSocket();
    void s.send('a').catch(() => undefined);
    assert.throws(() => s.send('b'), /EBUSY/);
    s.close();
    assert.throws(() => s.send('c'), /Socket is closed/);
  });

  it('with the wrapper, back-to-back sends on two sockets all arrive in order; a failed send does not block the next', async () => {
    const Sock = wrappedClass();
    assert.equal(serializeSends(Sock.prototype), false, 'wrapping twice is a no-op');
    const a = new Sock();
    const b = new Sock();
    const results = [a.send('1'), b.send('x'), a.send('2'), a.send('bad'), a.send('3'), b.send('y')];
    const settled = await Promise.allSettled(results);
    assert.deepEqual(settled.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    assert.match(String((settled[3] as PromiseRejectedResult).reason), /send failed: bad/);
    assert.deepEqual(a.sent, ['1', '2', '3']);
    assert.deepEqual(b.sent, ['x', 'y']);
  });

  it('refuses a prototype without send()', () => {
    assert.throws(() => serializeSends({}), /no send\(\) method/);
  });
});

describe('environment/zmq-serial: a kernel shutdown never crashes on a closed socket', () => {
  it('without the wrapper, the shutdown sequence of tslab leaves an unhandled EBADF rejection (what killed the kernel)', async () => {
    const s = new FakeSocket();
    const seen = await unhandledDuring(() => {
      // tslab's heartbeat loop: `for await (const m of hb) hb.send(m)` inside an async function nobody awaits.
      void (async () => {
        await Promise.resolve(); // the ping was received …
        s.send('ping'); // … but the socket was closed before the echo
      })();
      s.close();
    });
    assert.equal(seen.length, 1);
    assert.match(String(seen[0]), /Socket is closed/);
  });

  it('a send on a closed socket resolves to undefined, sends nothing and throws nothing', async () => {
    const Sock = wrappedClass();
    const s = new Sock();
    s.close();
    let r: Promise<void> | undefined;
    const seen = await unhandledDuring(async () => {
      r = s.send('late');
      assert.equal(await r, undefined);
    });
    assert.deepEqual(seen, []);
    assert.deepEqual(s.sent, []);
  });

  it('closing with one send in flight and more queued (iopub "busy" then "idle"): no throw, no unhandled rejection', async () => {
    const Sock = wrappedClass();
    const s = new Sock();
    const seen = await unhandledDuring(async () => {
      const r = [s.send('busy'), s.send('idle'), s.send('more')]; // tslab never awaits these
      s.close();
      assert.deepEqual(await Promise.all(r), [undefined, undefined, undefined]);
    });
    assert.deepEqual(seen, []);
    assert.deepEqual(s.sent, []);
  });

  it("tslab's heartbeat echo after the close (the seen crash) is dropped without an unhandled rejection", async () => {
    const Sock = wrappedClass();
    const s = new Sock();
    const seen = await unhandledDuring(() => {
      void (async () => {
        await Promise.resolve();
        s.send('ping');
      })();
      s.close();
    });
    assert.deepEqual(seen, []);
  });

  it('errors other than a closed socket still reach the caller (synchronously when nothing is queued)', async () => {
    class Odd {
      closed = false;
      send(): Promise<void> {
        throw Object.assign(new Error('EFSM: operation cannot be accomplished in current state'), { code: 'EFSM' });
      }
    }
    serializeSends(Odd.prototype);
    assert.throws(() => new Odd().send(), /EFSM/);
  });

  it('the real zeromq module has the rules the wrapper relies on: `closed`, and a synchronous EBADF after close', () => {
    const tslabDir = path.dirname(require.resolve('tslab/package.json'));
    const zmq = require(require.resolve('zeromq', { paths: [tslabDir] })) as { Publisher: new () => { closed: boolean; close(): void; send(m: string): Promise<void> } };
    const sock = new zmq.Publisher();
    assert.equal(sock.closed, false);
    sock.close();
    assert.equal(sock.closed, true);
    assert.throws(() => sock.send('x'), (e: NodeJS.ErrnoException) => e.code === 'EBADF' && /Socket is closed/.test(e.message));
  });
});

describe('environment/zmq-serial: a send while the socket is still binding waits for the bind', () => {
  const bindingError = (): Error => Object.assign(new Error('Socket is blocked by a bind or unbind operation'), { code: 'EBUSY', errno: 16 });

  /** A FakeSocket whose bind() takes `ms`: meanwhile send throws EBUSY synchronously, as zeromq does. */
  class BindingSocket extends FakeSocket {
    binding = false;
    bind(ms: number): Promise<void> {
      this.binding = true;
      return new Promise((r) => {
        setTimeout(() => {
          this.binding = false;
          r();
        }, ms);
      });
    }
    override send(msg: string): Promise<void> {
      if (this.binding) throw bindingError();
      return super.send(msg);
    }
  }

  it('without the wrapper a status published during the bind is lost (a synchronous EBUSY tslab never catches)', () => {
    const s = new BindingSocket();
    void s.bind(30);
    assert.throws(() => s.send('busy'), /blocked by a bind or unbind operation/);
  });

  it('with the wrapper, statuses published during a 30 ms bind arrive after it, in order, with no unhandled rejection', async () => {
    class Sock extends BindingSocket {}
    Object.defineProperty(Sock.prototype, 'send', { value: BindingSocket.prototype.send, writable: false, configurable: true });
    serializeSends(Sock.prototype);
    const s = new Sock();
    const seen = await unhandledDuring(async () => {
      const bound = s.bind(30);
      const r = [s.send('busy'), s.send('idle'), s.send('busy-2')]; // tslab's publishStatus, never awaited
      await bound;
      assert.deepEqual(await Promise.all(r), [undefined, undefined, undefined]);
    });
    assert.deepEqual(seen, []);
    assert.deepEqual(s.sent, ['busy', 'idle', 'busy-2']);
  });

  it('the real zeromq module throws that EBUSY synchronously for a send during bind(), and the wrapped send delivers it', async () => {
    const tslabDir = path.dirname(require.resolve('tslab/package.json'));
    const zmq = require(require.resolve('zeromq', { paths: [tslabDir] })) as {
      Publisher: new () => { closed: boolean; close(): void; bind(a: string): Promise<void>; send(m: string): Promise<void> };
      Subscriber: new () => { connect(a: string): void; subscribe(): void; receive(): Promise<Buffer[]>; close(): void };
    };
    const raw = new zmq.Publisher();
    const binding = raw.bind('tcp://127.0.0.1:*');
    assert.throws(() => raw.send('x'), (e: NodeJS.ErrnoException) => e.code === 'EBUSY' && /blocked by a bind/.test(e.message));
    await binding;
    raw.close();
    // The wrapped prototype (zeromq's Socket.prototype owns send) on a fresh publisher: no throw during the bind.
    let proto = Object.getPrototypeOf(raw) as { send: unknown };
    while (!Object.prototype.hasOwnProperty.call(proto, 'send')) proto = Object.getPrototypeOf(proto);
    const already = (proto.send as Record<symbol, unknown>)[Symbol.for('vitpeft.zmqSerialSend')] === true;
    if (!already) serializeSends(proto);
    const pub = new zmq.Publisher();
    const b = pub.bind('tcp://127.0.0.1:*');
    const sent = pub.send('status');
    await b;
    assert.equal(await sent, undefined);
    pub.close();
  });
});
