/**
 * Progress bars for long loops: one notebook output updated in place (a tslab display handle), a `\r`-rewritten line
 * in an interactive terminal, or occasional plain lines in logs (CI, pipes). Updates are throttled (default every
 * 250 ms in a notebook / terminal, every 10 s in logs); the final state is always shown.
 *
 * @example
 *   const bar = progressBar(steps, {label: 'LoRA'});
 *   for (let s = 0; s < steps; s++) { ...; bar.tick(1, {loss}); }
 *   bar.done();
 */
import { DisplayHandle, MimeBundle, currentSink, escapeHtml, textSink } from './display';
import { formatCell } from './table';

/** Where progress goes: 'display' (notebook / custom sink), 'tty' (\r line), 'lines' (log lines), 'silent'. */
export type ProgressMode = 'display' | 'tty' | 'lines' | 'silent';

export interface ProgressOptions {
  label?: string;
  /** Output mode (default: 'display' in a kernel or with a custom sink, 'tty' on a terminal, else 'lines'). */
  mode?: ProgressMode;
  /** Minimum time between shown updates, ms (default 250; 10000 in 'lines' mode). */
  minIntervalMs?: number;
  /** Clock in ms (tests). */
  now?: () => number;
  /** Stream for 'tty' / 'lines' (default process.stdout). */
  stream?: { write(s: string): unknown };
}

/** A snapshot of a progress bar. */
export interface ProgressState {
  label: string;
  done: number;
  total: number;
  elapsedS: number;
  /** Items per second since the start (0 before the first item). */
  rate: number;
  /** Estimated seconds left (null when unknown). */
  etaS: number | null;
  metrics: Record<string, number | string>;
  finished: boolean;
}

/** Seconds as progress bars show them: `4.2s`, `37s`, `8m05s`, `1h02m` (rounded once, so never `8m60s`). */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  if (s < 9.95) return `${Math.max(0, s).toFixed(1)}s`;
  const t = Math.round(s);
  if (t < 60) return `${t}s`;
  const m = Math.floor(t / 60);
  if (m < 60) return `${m}m${String(t - m * 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

function defaultMode(): ProgressMode {
  if (currentSink() !== textSink) return 'display';
  return process.stdout.isTTY ? 'tty' : 'lines';
}

/** A progress bar over `total` items. */
export class ProgressBar {
  readonly total: number;
  readonly label: string;
  readonly mode: ProgressMode;
  private readonly minInterval: number;
  private readonly now: () => number;
  private readonly stream: { write(s: string): unknown };
  private readonly handle = new DisplayHandle();
  private readonly start: number;
  private count = 0;
  private metrics: Record<string, number | string> = {};
  private lastShown = -Infinity;
  private finished = false;
  /** Number of times the output was (re)drawn. */
  renders = 0;

  constructor(total: number, o: ProgressOptions = {}) {
    if (!Number.isInteger(total) || total < 0) throw new Error(`progressBar: total must be an integer ≥ 0, got ${total}`);
    this.total = total;
    this.label = o.label ?? '';
    this.mode = o.mode ?? defaultMode();
    this.minInterval = o.minIntervalMs ?? (this.mode === 'lines' ? 10000 : 250);
    this.now = o.now ?? Date.now;
    this.stream = o.stream ?? process.stdout;
    this.start = this.now();
  }

  /** Set the number of items done (and the latest metrics). */
  update(done: number, metrics?: Record<string, number | string>): void {
    if (this.finished) throw new Error(`progressBar${this.label ? ` '${this.label}'` : ''}: update after done()`);
    if (!Number.isFinite(done) || done < 0) throw new Error(`progressBar: done must be ≥ 0, got ${done}`);
    this.count = Math.min(done, this.total);
    if (metrics) this.metrics = { ...this.metrics, ...metrics };
    const t = this.now();
    if (t - this.lastShown >= this.minInterval || (this.count === this.total && this.mode !== 'lines')) this.show(t);
  }

  /** Advance by `n` items. */
  tick(n = 1, metrics?: Record<string, number | string>): void {
    this.update(this.count + n, metrics);
  }

  /** Finish: show the final state (and end the terminal line). */
  done(metrics?: Record<string, number | string>): void {
    if (this.finished) return;
    if (metrics) this.metrics = { ...this.metrics, ...metrics };
    this.finished = true;
    this.show(this.now());
    if (this.mode === 'tty') this.stream.write('\n');
  }

  get state(): ProgressState {
    const elapsedS = (this.now() - this.start) / 1000;
    const rate = elapsedS > 0 ? this.count / elapsedS : 0;
    return {
      label: this.label,
      done: this.count,
      total: this.total,
      elapsedS,
      rate,
      etaS: rate > 0 ? (this.total - this.count) / rate : null,
      metrics: { ...this.metrics },
      finished: this.finished,
    };
  }

  /** The current state as one line of text. */
  text(width = 24): string {
    const s = this.state;
    const frac = s.total > 0 ? s.done / s.total : 1;
    const fill = Math.round(frac * width);
    const bar = '#'.repeat(fill) + '.'.repeat(width - fill);
    const m = Object.entries(s.metrics).map(([k, v]) => `${k}=${typeof v === 'number' ? formatCell(v, 4) : v}`);
    const time = s.finished ? `${formatDuration(s.elapsedS)}` : `${formatDuration(s.elapsedS)}<${s.etaS === null ? '?' : formatDuration(s.etaS)}`;
    const rate = s.rate > 0 ? `${s.rate >= 10 ? s.rate.toFixed(0) : s.rate.toPrecision(2)} it/s` : '';
    return [s.label, `${String(s.done).padStart(String(s.total).length)}/${s.total}`, `[${bar}]`, `${Math.floor(frac * 100)}%`, time, rate, ...m]
      .filter(Boolean)
      .join(' ');
  }

  /** The current state as a MIME bundle (HTML `<progress>` + text). */
  bundle(): MimeBundle {
    const s = this.state;
    const text = this.text();
    const max = Math.max(s.total, 1);
    const value = s.total > 0 ? s.done : 1;
    const info = escapeHtml(text.replace(/\[[#.]*\]\s*/, ''));
    return {
      'text/html': `<div class="vitpeft-progress" style="font-family:monospace;white-space:pre"><progress value="${value}" max="${max}" style="width:30%;vertical-align:middle"></progress> ${info}</div>`,
      'text/plain': text,
    };
  }

  private show(t: number): void {
    this.lastShown = t;
    this.renders += 1;
    switch (this.mode) {
      case 'display':
        this.handle.update(this.bundle());
        return;
      case 'tty':
        this.stream.write(`\r${this.text()}\x1b[K`);
        return;
      case 'lines':
        this.stream.write(`${this.text()}\n`);
        return;
      case 'silent':
        return;
      default: {
        const never: never = this.mode;
        throw new Error(`progressBar: unknown mode ${String(never)}`);
      }
    }
  }
}

/** A progress bar over `total` items (see `ProgressBar`). */
export function progressBar(total: number, o: ProgressOptions = {}): ProgressBar {
  return new ProgressBar(total, o);
}

/** Iterate over an array (or any iterable with a known length) while showing progress. */
export function* track<T>(items: readonly T[], o: ProgressOptions = {}): Generator<T> {
  const bar = new ProgressBar(items.length, o);
  try {
    for (const it of items) {
      yield it;
      bar.tick();
    }
  } finally {
    bar.done();
  }
}
