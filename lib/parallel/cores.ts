/**
 * How many workers `'auto'` means: the physical cores this process may use.
 *
 * Counted as the smallest of
 * - physical cores: distinct (physical id, core id) pairs in /proc/cpuinfo on Linux (so SMT siblings count once; a
 *   wasm worker is one busy thread, and two of them on the two hyperthreads of one core mostly share its FMA units);
 *   elsewhere, or when /proc/cpuinfo has no topology lines, the logical CPUs (`os.cpus().length`);
 * - `os.availableParallelism()` (the CPUs in this process's affinity mask, e.g. under `taskset`);
 * - the cgroup v2 CPU quota (`/sys/fs/cgroup/cpu.max`, `quota/period` rounded up) when one is set (containers).
 * `VITPEFT_WORKERS` (an integer) overrides the count for 'auto' ('auto' there = no override; it is also runRecipe's default, recipes/run.ts).
 */
import { existsSync, readFileSync } from 'fs';
import * as os from 'os';

/** How the core count was arrived at (for records and messages). */
export interface CoreCount {
  /** The number 'auto' resolves to (≥ 1). */
  count: number;
  physical: number | null;
  logical: number;
  available: number;
  cgroupQuota: number | null;
  /** Which term decided, in words. */
  reason: string;
}

/** Distinct physical cores from the text of /proc/cpuinfo (null when it has no topology lines). */
export function physicalCoresFromCpuinfo(text: string): number | null {
  const cores = new Set<string>();
  let phys = '0';
  let sawCore = false;
  for (const line of text.split('\n')) {
    const m = /^(physical id|core id)\s*:\s*(\S+)/.exec(line);
    if (!m) {
      if (line.trim() === '') phys = '0';
      continue;
    }
    if (m[1] === 'physical id') phys = m[2];
    else {
      cores.add(`${phys}:${m[2]}`);
      sawCore = true;
    }
  }
  return sawCore ? cores.size : null;
}

function cgroupQuota(): number | null {
  try {
    const f = '/sys/fs/cgroup/cpu.max';
    if (!existsSync(f)) return null;
    const [q, p] = readFileSync(f, 'utf8').trim().split(/\s+/);
    if (q === 'max') return null;
    const quota = Number(q);
    const period = Number(p);
    return quota > 0 && period > 0 ? Math.max(1, Math.ceil(quota / period)) : null;
  } catch {
    return null;
  }
}

/** The cores 'auto' uses (see the file comment). */
export function coreCount(): CoreCount {
  const logical = os.cpus().length || 1;
  const available = typeof os.availableParallelism === 'function' ? os.availableParallelism() : logical;
  let physical: number | null = null;
  try {
    if (process.platform === 'linux') physical = physicalCoresFromCpuinfo(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    physical = null;
  }
  const quota = cgroupQuota();
  const terms: Array<[number, string]> = [
    [physical ?? logical, physical !== null ? `${physical} physical cores (/proc/cpuinfo)` : `${logical} logical CPUs (no core topology)`],
    [available, `${available} CPUs in the affinity mask`],
  ];
  if (quota !== null) terms.push([quota, `cgroup CPU quota of ${quota}`]);
  let best = terms[0];
  for (const t of terms) if (t[0] < best[0]) best = t;
  const env = process.env.VITPEFT_WORKERS;
  if (env !== undefined && env !== '' && env !== 'auto') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new Error(`VITPEFT_WORKERS: expected 'auto' or an integer ≥ 1, got '${env}'`);
    return { count: n, physical, logical, available, cgroupQuota: quota, reason: `VITPEFT_WORKERS=${n}` };
  }
  return { count: Math.max(1, best[0]), physical, logical, available, cgroupQuota: quota, reason: best[1] };
}

/** Worker count option: a positive integer, or 'auto' (= `coreCount().count`). */
export type WorkersOption = number | 'auto';

/** Resolve a workers option to a count; bad values are errors naming the option. */
export function resolveWorkers(w: WorkersOption | undefined, what = 'workers'): number {
  if (w === undefined) return 1;
  if (w === 'auto') return coreCount().count;
  if (!(typeof w === 'number' && Number.isInteger(w) && w >= 1)) throw new Error(`${what}: expected 'auto' or an integer ≥ 1, got ${JSON.stringify(w)}`);
  return w;
}
