/**
 * environment/zmq-serial.js: zeromq.js v6 throws EBUSY when a socket's send starts while another is in flight (tslab
 * never awaits its sends). A fake socket with that rule checks that the wrapper runs sends one at a time, in order.
 */
import { strict as assert } from 'assert';
const { serializeSends } = require('../environment/zmq-serial.js') as { serializeSends: (proto: object) => boolean };

class FakeSocket {
  busy = false;
  sent: string[] = [];
  send(msg: string): Promise<void> {
    if (this.busy) throw new Error('EBUSY: Socket is busy writing; only one send operation may be in progress at any time');
    this.busy = true;
    return new Promise((resolve, reject) =>
      setTimeout(() => {
        this.busy = false;
        if (msg === 'bad') reject(new Error('send failed: bad'));
        else {
          this.sent.push(msg);
          resolve();
        }
      }, 1),
    );
  }
}

describe('environment/zmq-serial: one zeromq send in flight per socket', () => {
  it('the fake socket fails like zeromq without the wrapper', () => {
    const s = new FakeSocket();
    void s.send('a');
    assert.throws(() => s.send('b'), /EBUSY/);
  });

  it('with the wrapper, back-to-back sends on two sockets all arrive in order; a failed send does not block the next', async () => {
    class Sock extends FakeSocket {}
    // zeromq's native send is non-writable but configurable: the wrapper must define, not assign.
    Object.defineProperty(Sock.prototype, 'send', { value: FakeSocket.prototype.send, writable: false, configurable: true });
    assert.equal(serializeSends(Sock.prototype), true);
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
