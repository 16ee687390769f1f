/** Host facts for benchmark records: CPU model and count, load averages, memory, Node; measured, not assumed. */
import * as os from 'os';

export interface HostReport {
  host: string;
  cpus: number;
  cpuModel: string;
  /** 1, 5 and 15-minute load averages at the time of the call */
  load: [number, number, number];
  memGiB: number;
  freeGiB: number;
  node: string;
}

export function hostReport(): HostReport {
  const cpus = os.cpus();
  const [l1, l5, l15] = os.loadavg();
  return {
    host: os.hostname(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model ?? 'unknown',
    load: [+l1.toFixed(2), +l5.toFixed(2), +l15.toFixed(2)],
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    freeGiB: +(os.freemem() / 2 ** 30).toFixed(1),
    node: process.version,
  };
}
