/**
 * Declarative trainability: one ordered spec of path patterns → trainable / frozen, resolved over several trees
 * (encoder + adapters + heads + decoder) to a fixed-order `Map<path, Variable>` for the optimizer and `trainStep`.
 *
 * Rules (big_vision's ordered regex list, PEFT's `print_trainable_parameters`, minGPT's completeness assert):
 * - the **first** rule whose pattern matches a path classifies it (patterns as in patterns.ts: glob string matched
 *   against the whole path or a dotted suffix, or a RegExp);
 * - every parameter must be classified exactly once: a path no rule matches is an error (end the spec with a
 *   catch-all `{match: '*', train: false}` to freeze the rest), and two trees holding the same path is an error;
 * - a rule that matches nothing is an error (a typo would otherwise silently freeze or train the wrong thing) unless
 *   it is marked `optional`;
 * - resolution sets `variable.trainable` on every variable (true / false) as a second guard: tfjs computes no gradient
 *   for a non-trainable variable, and `trainStep` refuses one.
 *
 * The summary counts per group (rule) and in total, with the share of the **encoder** (ExPLoRA counts trainable
 * encoder parameters only: heads, DINO/iBOT heads and the MAE decoder are excluded, as in the ExPLoRA paper's parameter
 * columns). By default a path belongs to the encoder unless it is a head (`head`, `dino_head`, `ibot_head` components)
 * or contains `decoder`; the denominator is the number of non-adapter encoder parameters (override with `encoderTotal`,
 * e.g. 303,301,632 = ViT-L/16 as in the paper's "% of parameters").
 */
import * as tf from '@tensorflow/tfjs';
import { ParamTree } from '../tree';
import { PathPattern, matchAny, describePattern, patternList } from './patterns';
import { ShapeLike, shapeMap } from './lora';

/** One rule of a spec. */
export interface TrainRule {
  /** Pattern(s); the rule applies to paths matching any of them (and no `exclude`). */
  match: PathPattern | readonly PathPattern[];
  exclude?: readonly PathPattern[];
  train: boolean;
  /** Label in the summary (default: the patterns). */
  group?: string;
  /** Allow the rule to match no parameter (default false: an unmatched rule is an error). */
  optional?: boolean;
}

/** An ordered list of rules; first match wins. */
export type TrainSpec = readonly TrainRule[];

/** Catch-all rule freezing everything not matched earlier. */
export const FREEZE_REST: TrainRule = Object.freeze({ match: /.*/, train: false, group: 'frozen (rest)', optional: true });

/** Anything that holds parameters: trees, flat maps, or a list of them (paths must be unique across the list). */
export type ParamSources = ParamTree | ReadonlyMap<string, ShapeLike> | ReadonlyArray<ParamTree | ReadonlyMap<string, ShapeLike>>;

export interface TrainSummaryRow {
  group: string;
  train: boolean;
  /** number of tensors / scalars in the group */
  tensors: number;
  params: number;
  /** scalars of the group that belong to the encoder */
  encoderParams: number;
  /** encoderParams / encoderTotal · 100 */
  pctEncoder: number;
}

export interface TrainSummary {
  rows: TrainSummaryRow[];
  /** all trainable scalars (heads and decoder included) */
  trainable: number;
  /** trainable scalars in the encoder (what ExPLoRA reports) */
  trainableEncoder: number;
  frozen: number;
  total: number;
  /** denominator of the percentages */
  encoderTotal: number;
  /** trainableEncoder / encoderTotal · 100 */
  pctEncoder: number;
}

export interface ClassifyOptions {
  /** Whether a path is part of the encoder (default: not a head, not a decoder part). */
  isEncoder?: (path: string) => boolean;
  /** Denominator of the % column (default: non-adapter encoder parameters of the sources). */
  encoderTotal?: number;
}

/** Default encoder membership: not a (`dino_`/`ibot_`) head, nothing containing `decoder`. */
export function defaultIsEncoder(path: string): boolean {
  return !/(^|\.)(head|dino_head|ibot_head)(\.|$)/.test(path) && !path.includes('decoder');
}

const ADAPTER = /(^|\.)lora_[AB](\.|$)/;

export interface Classification {
  /** path → index of the rule that classified it (source order) */
  ruleOf: Map<string, number>;
  summary: TrainSummary;
}

function sizeOf(s: ShapeLike): number {
  return s.shape.reduce((a, b) => a * b, 1);
}

/**
 * Classify every path of `entries` (shape-only; nothing is allocated or mutated). Throws listing unclassified paths
 * and rules that matched nothing.
 */
export function classifyParams(entries: ReadonlyMap<string, ShapeLike>, spec: TrainSpec, opts: ClassifyOptions = {}): Classification {
  if (!Array.isArray(spec) || spec.length === 0) throw new Error('TrainSpec: expected a non-empty list of rules');
  spec.forEach((r: TrainRule, i: number) => {
    const bad = Object.keys(r).filter((k) => !['match', 'exclude', 'train', 'group', 'optional'].includes(k));
    if (bad.length) throw new Error(`TrainSpec rule #${i}: unknown key '${bad[0]}'; valid keys: exclude, group, match, optional, train`);
    if (typeof r.train !== 'boolean') throw new Error(`TrainSpec rule #${i} (${describePattern(patternList(r.match))}): 'train' must be true or false`);
    if (patternList(r.match).length === 0) throw new Error(`TrainSpec rule #${i}: 'match' has no pattern`);
  });
  const isEncoder = opts.isEncoder ?? defaultIsEncoder;
  const ruleOf = new Map<string, number>();
  const unclassified: string[] = [];
  const counts = spec.map(() => ({ tensors: 0, params: 0, encoderParams: 0 }));
  let encoderTotal = 0;
  for (const [path, v] of entries) {
    const n = sizeOf(v);
    const enc = isEncoder(path);
    if (enc && !ADAPTER.test(path)) encoderTotal += n;
    const i = spec.findIndex((r) => matchAny(path, patternList(r.match)) && !(r.exclude && matchAny(path, r.exclude)));
    if (i < 0) {
      unclassified.push(path);
      continue;
    }
    ruleOf.set(path, i);
    counts[i].tensors += 1;
    counts[i].params += n;
    if (enc) counts[i].encoderParams += n;
  }
  if (unclassified.length) {
    const list = unclassified.slice(0, 8).join(', ') + (unclassified.length > 8 ? `, … (${unclassified.length} in all)` : '');
    throw new Error(`TrainSpec: ${unclassified.length} parameter(s) matched no rule: ${list} (end the spec with FREEZE_REST to freeze the rest)`);
  }
  const empty = spec.map((r, i) => ({ r, i })).filter(({ r, i }) => !r.optional && counts[i].tensors === 0);
  if (empty.length) {
    const { r, i } = empty[0];
    throw new Error(`TrainSpec rule #${i} ('${r.group ?? describePattern(patternList(r.match))}', patterns ${describePattern(patternList(r.match))}) matches no parameter${empty.length > 1 ? ` (and ${empty.length - 1} more rule(s))` : ''}; mark it optional if that is expected`);
  }
  const denom = opts.encoderTotal ?? encoderTotal;
  const pct = (x: number): number => (denom > 0 ? (100 * x) / denom : 0);
  const rows: TrainSummaryRow[] = spec
    .map((r, i) => ({
      group: r.group ?? describePattern(patternList(r.match)),
      train: r.train,
      ...counts[i],
      pctEncoder: pct(counts[i].encoderParams),
    }))
    .filter((row) => row.tensors > 0);
  const trainable = rows.filter((r) => r.train).reduce((s, r) => s + r.params, 0);
  const trainableEncoder = rows.filter((r) => r.train).reduce((s, r) => s + r.encoderParams, 0);
  const total = rows.reduce((s, r) => s + r.params, 0);
  return {
    ruleOf,
    summary: { rows, trainable, trainableEncoder, frozen: total - trainable, total, encoderTotal: denom, pctEncoder: pct(trainableEncoder) },
  };
}

/** Result of resolving a spec over real variables. */
export interface TrainSelection {
  /** What trains, in source order (fixed for the optimizer's lifetime). */
  trainable: Map<string, tf.Variable>;
  frozen: Map<string, tf.Variable>;
  summary: TrainSummary;
  /** path → rule index */
  ruleOf: Map<string, number>;
}

/**
 * Resolve `spec` over the variables of `sources` and set every variable's `trainable` flag accordingly.
 * @example const sel = selectTrainable([vit.params, lora.params], [{match: 'lora_*', train: true}, FREEZE_REST]);
 *          trainStep({params: sel.trainable, ...}); console.log(formatTrainSummary(sel.summary));
 */
export function selectTrainable(sources: ParamSources, spec: TrainSpec, opts: ClassifyOptions = {}): TrainSelection {
  const entries = shapeMap(sources);
  for (const [p, v] of entries) {
    if (!(v instanceof tf.Variable)) throw new Error(`selectTrainable: '${p}' is not a tf.Variable (use classifyParams for shape-only counting)`);
    if (v.isDisposed) throw new Error(`selectTrainable: '${p}' is disposed`);
  }
  const { ruleOf, summary } = classifyParams(entries, spec, opts);
  const trainable = new Map<string, tf.Variable>();
  const frozen = new Map<string, tf.Variable>();
  for (const [p, v] of entries) {
    const on = spec[ruleOf.get(p)!].train;
    const variable = v as tf.Variable;
    variable.trainable = on;
    (on ? trainable : frozen).set(p, variable);
  }
  return { trainable, frozen, summary, ruleOf };
}

function fmtInt(n: number): string {
  return n.toLocaleString('en-US');
}

/** The summary as a plain-text table (group, trainable, tensors, params, % of encoder; totals below). */
export function formatTrainSummary(s: TrainSummary): string {
  const head = ['group', 'train', 'tensors', 'params', '% encoder'];
  const body = s.rows.map((r) => [r.group, r.train ? 'yes' : 'no', String(r.tensors), fmtInt(r.params), r.encoderParams ? r.pctEncoder.toFixed(2) : '-']);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)];
  out.push('');
  out.push(`trainable (encoder): ${fmtInt(s.trainableEncoder)} = ${s.pctEncoder.toFixed(2)}% of ${fmtInt(s.encoderTotal)} encoder parameters`);
  out.push(`trainable (all): ${fmtInt(s.trainable)}   frozen: ${fmtInt(s.frozen)}   total: ${fmtInt(s.total)}`);
  return out.join('\n');
}

/** Plain records of the summary rows plus a total row (for JSON logs, danfo or plotly). */
export function trainSummaryRecords(s: TrainSummary): Array<Record<string, string | number | boolean>> {
  return [
    ...s.rows.map((r) => ({ group: r.group, train: r.train, tensors: r.tensors, params: r.params, encoderParams: r.encoderParams, pctEncoder: r.pctEncoder })),
    { group: 'TOTAL trainable', train: true, tensors: s.rows.filter((r) => r.train).reduce((a, r) => a + r.tensors, 0), params: s.trainable, encoderParams: s.trainableEncoder, pctEncoder: s.pctEncoder },
  ];
}

/**
 * The summary as a danfo DataFrame (columns group, train, tensors, params, encoderParams, pctEncoder; last row =
 * trainable total). danfojs-node is loaded on first use only, so importing the kit stays fast.
 */
export function trainSummaryFrame(s: TrainSummary): import('danfojs-node').DataFrame {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const dfd = require('danfojs-node') as typeof import('danfojs-node');
  return new dfd.DataFrame(trainSummaryRecords(s));
}
