/**
 * Training-loop reporting: one `onStep` callback for `trainLoop` that appends the step's metrics to a run record and
 * advances a progress bar.
 *
 * @example
 *   const run = RunRecord.create('lora', {config: HP, seed: HP.seed});
 *   const bar = progressBar(HP.steps, {label: 'LoRA'});
 *   await trainLoop({..., onStep: stepReporter({run, bar})});
 *   bar.done();
 */
import type { StepInfo } from '../train/step';
import type { ProgressBar } from './progress';
import type { RunRecord } from './runs';

export interface StepReporterOptions {
  /** Run record receiving `{loss, gradNorm, lr, weightDecay, seconds}` (+ `extra`) as one metrics line. */
  run?: RunRecord;
  /** Progress bar ticked once per step, showing the loss (+ `extra`). */
  bar?: ProgressBar;
  /** Log to the run every n-th step (default 1; the bar still ticks every step). */
  logEvery?: number;
  /** More metrics for a step (e.g. an evaluation every k steps); return {} when there is nothing new. */
  extra?: (info: StepInfo) => Record<string, number | string>;
}

/** An `onStep` callback logging to a run record and a progress bar. */
export function stepReporter(o: StepReporterOptions): (info: StepInfo) => void {
  const every = o.logEvery ?? 1;
  if (!Number.isInteger(every) || every < 1) throw new Error(`stepReporter: logEvery must be an integer ≥ 1, got ${every}`);
  return (info) => {
    const extra = o.extra ? o.extra(info) : {};
    if (o.run && (info.step % every === 0 || Object.keys(extra).length > 0)) {
      o.run.log(info.step, { loss: info.loss, gradNorm: info.gradNorm, lr: info.lr, weightDecay: info.weightDecay, seconds: info.seconds, ...extra });
    }
    if (o.bar) o.bar.tick(1, { loss: info.loss, ...extra });
  };
}
