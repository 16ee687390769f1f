/**
 * `pyraBenchRows`: the tables notebook 12 reads from `bench/pyra-speed.ts`'s JSON lines — medians, per-round ratios,
 * kept rounds, and files from a run of a subset of methods (`BENCH_METHODS`, e.g. without unmerged LoRA).
 */
import { strict as assert } from 'assert';
import { pyraBenchRows } from '../recipes/pyra-compression';

const sample = (phase: string, method: string, round: number, ms: number) => JSON.stringify({ kind: 'sample', phase, method, round, ms });

describe('pyraBenchRows (bench/pyra-speed.ts JSON lines → tables)', () => {
  it('medians of per-round ratios: speed-up over LoRA and PYRA ÷ ToMe of the same round', () => {
    const lines = [
      JSON.stringify({ kind: 'host', at: 'start', load: [0.1, 0.1, 0.1] }),
      sample('train', 'lora', 0, 20), sample('train', 'tome-low', 0, 10), sample('train', 'pyra-low', 0, 11),
      sample('train', 'lora', 1, 40), sample('train', 'tome-low', 1, 20), sample('train', 'pyra-low', 1, 21),
      sample('train', 'lora', 2, 22), sample('train', 'tome-low', 2, 11), sample('train', 'pyra-low', 2, 12.1),
    ];
    const { speed, hosts } = pyraBenchRows(lines.join('\n'));
    assert.equal(hosts.length, 1);
    const row = (m: string) => speed.find((r) => r.method === m)!;
    assert.equal(row('tome-low')['speed-up vs LoRA'], 2);
    assert.equal(row('pyra-low')['PYRA ÷ ToMe time'], 1.1); // per round 1.1, 1.05, 1.1 → median 1.1
    assert.equal(row('lora')['ms median'], 22);
    assert.equal(pyraBenchRows(lines.join('\n'), { rounds: { train: 2 } }).speed.find((r) => r.method === 'pyra-low')!['PYRA ÷ ToMe time'], 1.075);
  });

  it('a run without unmerged LoRA (BENCH_METHODS=tome-low,pyra-low) gives PYRA ÷ ToMe and no speed-up column value', () => {
    const lines = [sample('train', 'tome-low', 0, 10), sample('train', 'pyra-low', 0, 10.2), sample('train', 'tome-low', 1, 10), sample('train', 'pyra-low', 1, 10.4)];
    const { speed } = pyraBenchRows(lines.join('\n'));
    assert.deepEqual(speed.map((r) => [r.method, r['speed-up vs LoRA'], r['PYRA ÷ ToMe time']]), [['tome-low', null, null], ['pyra-low', null, 1.03]]);
  });

  it('a line that is not JSON is an error naming the line', () => {
    assert.throws(() => pyraBenchRows(`${sample('train', 'lora', 0, 1)}\n{oops`), /line 2 is not JSON/);
  });
});
