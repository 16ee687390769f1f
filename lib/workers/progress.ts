/**
 * One progress bar for a pool: every worker reports its own progress (`ctx.progress`), the bar shows the slowest
 * worker's count (data-parallel workers move in lockstep; evaluation workers do not), the images per second of all
 * workers together, and the largest share of time a worker spent waiting for the others (load imbalance).
 */
import { ProgressBar, ProgressMode, ProgressOptions, progressBar } from '../report/progress';
import type { WorkerProgress } from './protocol';

/** Progress option of the parallel helpers: true (default mode), a mode, or progress-bar options. */
export type ProgressOption = boolean | ProgressMode | ProgressOptions;

/** Progress-bar options from a progress option (null = no bar). */
export function progressOptions(p: ProgressOption | undefined): ProgressOptions | null {
  if (!p) return null;
  return p === true ? {} : typeof p === 'string' ? { mode: p } : p;
}

/** Aggregates worker reports into one bar (created on the first report that gives a total). */
export class PoolProgress {
  private bar: ProgressBar | null = null;
  private readonly counts = new Map<number, number>();
  private readonly items = new Map<number, number>();
  private readonly wait = new Map<number, number>();
  private start = 0;
  private metrics: Record<string, number | string> = {};

  constructor(
    readonly size: number,
    private readonly opts: ProgressOptions,
    private readonly label: string,
  ) {}

  /** Feed one worker report. */
  report(rank: number, p: WorkerProgress & { waitMs: number }): void {
    if (!this.bar) {
      if (!(p.total >= 0) || !Number.isInteger(p.total)) return;
      this.bar = progressBar(p.total, { label: `${this.label}${this.size > 1 ? ` ×${this.size} workers` : ''}`, ...this.opts });
      this.start = Date.now();
    }
    this.counts.set(rank, p.done);
    this.items.set(rank, (this.items.get(rank) ?? 0) + (p.items ?? 0));
    this.wait.set(rank, p.waitMs);
    if (rank === 0 && p.metrics) this.metrics = { ...this.metrics, ...p.metrics };
    const done = this.counts.size === this.size ? Math.min(...this.counts.values()) : 0;
    const s = (Date.now() - this.start) / 1000;
    const items = [...this.items.values()].reduce((a, b) => a + b, 0);
    const extra: Record<string, number | string> = { ...this.metrics };
    if (done > 0 && items > 0 && s > 0) extra['img/s'] = +(items / s).toPrecision(3);
    if (done > 0 && this.size > 1 && s > 0) extra.wait = `${Math.min(100, Math.round((100 * Math.max(...this.wait.values())) / 1000 / s))}%`;
    this.bar.update(Math.min(done, this.bar.total), extra);
  }

  /** Show the final state. */
  finish(): void {
    this.bar?.done();
  }
}
