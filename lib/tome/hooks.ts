/**
 * ToMe and PYRA as forward hooks: `VitHooks.merge` (between the attention residual and the MLP of every encoder block)
 * plus `propAttn` (log size added to every key's attention logit), built from a schedule. They compose with any
 * `linear` hook (LoRA): pass the LoRA hooks as `base` and the result carries both.
 *
 * @example
 *   const hooks = tomeHooks(vit.config, { schedule: 16 });                         // ToMe r = 16, off the shelf
 *   const hooks = pyraHooks(vit.config, pyra, {}, { linear: loraHooks(lora) });    // PYRA + LoRA (paper setting)
 *   vitForward(vit, images, { hooks, training: true, rng });
 * Only blocks whose site prefix is `blocks.<i>` merge (an MAE decoder's `decoder_blocks.<i>` is left alone).
 * Call the forward inside `tf.tidy` (the matching's index tensors are kept alive by the gradient tape).
 * With activation recomputation (`checkpoint`) the matching of each block is recorded in the forward and replayed
 * when the block is re-run in the backward (`ForwardEnv.replay`).
 */
import * as tf from '@tensorflow/tfjs';
import { checkKeys } from '../check';
import { VitConfig } from '../vit/config';
import { numPatches } from '../vit/params';
import { VitHooks, MergeSiteInput, TokenState } from '../vit/forward';
import { replayOr } from '../vit/checkpoint';
import { RSchedule, CapPolicy, resolveSchedule, tokenCounts } from './schedule';
import { bipartiteSoftMatching } from './matching';
import { mergeWavg, mergeSource, ScatterMode, SourceModulator } from './merge';
import { Pyra, pyraModulator } from './pyra';

export interface MergeHookOptions {
  /** Proportional attention: + log(size) on every key's logit (default true: ToMe's timm patch and PYRA, train + eval). */
  propAttn?: boolean;
  /** Track the 0/1 source map [B, N, N0] in `state.source` for visualisation (default false). */
  traceSource?: boolean;
  /** The sequence has a DeiT distillation token at position 1 (default false; the kit's ViT has none). */
  distillToken?: boolean;
  /** Scatter-add implementation (default 'segment'). */
  scatter?: ScatterMode;
  /** What to do when a block's r exceeds ⌊(N − protected)/2⌋ at run time (ToMe default 'cap'; PYRA always 'error'). */
  onCap?: CapPolicy;
}

export interface TomeHookOptions extends MergeHookOptions {
  /** r schedule: constant, {r, inflect} or per-layer list (see schedule.ts). */
  schedule: RSchedule;
}

const MERGE_KEYS = ['propAttn', 'traceSource', 'distillToken', 'scatter', 'onCap'];

function checkModel(cfg: VitConfig, what: string): void {
  if (cfg.numRegisters > 0) {
    throw new Error(
      `${what}: the model has ${cfg.numRegisters} register tokens; token merging would merge and reorder them ` +
        `(ToMe / PYRA protect only cls and distillation tokens). Use a model without registers.`,
    );
  }
}

/** The per-block merge hook shared by ToMe and PYRA. */
function makeMerge(
  rs: readonly number[],
  opts: MergeHookOptions,
  modulatorFor: (index: number) => SourceModulator | undefined,
): (input: MergeSiteInput) => TokenState {
  const distillToken = opts.distillToken ?? false;
  const onCap = opts.onCap ?? 'cap';
  return ({ index, prefix, state, keyMean, env }: MergeSiteInput): TokenState => {
    if (prefix !== `blocks.${index}`) return state; // decoder blocks etc.
    const r = rs[index] ?? 0;
    if (r === 0) return state;
    const [B, N] = state.x.shape;
    // under activation recomputation the backward's re-run replays the forward's matching (lib/vit/checkpoint.ts)
    const m = replayOr(env.replay, prefix, () => bipartiteSoftMatching(keyMean, r, { classToken: true, distillToken }));
    if (onCap === 'error' && (m?.r ?? 0) < r) {
      const prot = distillToken ? 2 : 1;
      throw new Error(
        `${prefix}: r = ${r} exceeds the cap ⌊(${N} − ${prot})/2⌋ = ${m?.r ?? 0} on this input (${N} tokens); merging more ` +
          `would reach the protected cls token. Lower r or use a larger input.`,
      );
    }
    if (!m) return state;
    const source = opts.traceSource ? mergeSource(m, state.source, N, B) : state.source;
    const merged = mergeWavg(m, state.x, state.size, { modulate: modulatorFor(index), scatter: opts.scatter });
    return { x: merged.x, size: merged.size, source };
  };
}

function compose(base: VitHooks, merge: VitHooks['merge'], propAttn: boolean, what: string): VitHooks {
  if (base.merge) throw new Error(`${what}: the base hooks already have a merge hook (only one token-merging method per forward)`);
  return { ...base, merge, propAttn };
}

/**
 * ToMe hooks (off the shelf or for training; no parameters).
 * @param base hooks to keep (e.g. LoRA's `linear`)
 */
export function tomeHooks(cfg: VitConfig, opts: TomeHookOptions, base: VitHooks = {}): VitHooks {
  checkKeys('tomeHooks options', opts, ['schedule', ...MERGE_KEYS]);
  checkModel(cfg, 'tomeHooks');
  const rs = resolveSchedule(opts.schedule, cfg.depth);
  if ((opts.onCap ?? 'cap') === 'error') {
    tokenCounts(rs, cfg.depth, { numTokens: 1 + numPatches(cfg), protectedTokens: opts.distillToken ? 2 : 1, onCap: 'error' });
  }
  return compose(base, makeMerge(rs, opts, () => undefined), opts.propAttn ?? true, 'tomeHooks');
}

/**
 * PYRA hooks: ToMe with the per-block re-activation of `pyra` (its schedule is the one it was created for).
 * The schedule is validated against the configured input size: the cap must never bind (W_r is sized by r_l).
 */
export function pyraHooks(cfg: VitConfig, pyra: Pyra, opts: Omit<MergeHookOptions, 'onCap'> = {}, base: VitHooks = {}): VitHooks {
  checkKeys('pyraHooks options', opts, MERGE_KEYS.filter((k) => k !== 'onCap'));
  checkModel(cfg, 'pyraHooks');
  if (pyra.embedDim !== cfg.embedDim) throw new Error(`pyraHooks: PYRA width ${pyra.embedDim} ≠ model width ${cfg.embedDim}`);
  if (pyra.schedule.length !== cfg.depth) {
    throw new Error(`pyraHooks: PYRA has ${pyra.schedule.length} blocks, the model ${cfg.depth}`);
  }
  pyra.params.blocks.forEach((b, i) => {
    const r = pyra.schedule[i];
    if ((r > 0) !== (b !== undefined) || (b && (b.pyra_a.isDisposed || b.pyra_a.shape[0] !== r))) {
      throw new Error(`pyraHooks: blocks.${i} parameters do not match schedule r = ${r} (disposed or resized?)`);
    }
  });
  tokenCounts(pyra.schedule, cfg.depth, { numTokens: 1 + numPatches(cfg), protectedTokens: opts.distillToken ? 2 : 1, onCap: 'error' });
  const mods = pyra.params.blocks.map((b, i) => (b ? pyraModulator(b, i) : undefined));
  const merge = makeMerge(pyra.schedule, { ...opts, onCap: 'error' }, (i) => mods[i]);
  return compose(base, merge, opts.propAttn ?? true, 'pyraHooks');
}

/** Sizes of the final tokens [B, N'] as numbers (for checks and notebooks); all ones if nothing merged. */
export function finalSizes(state: TokenState): number[][] {
  const [B, N] = state.x.shape;
  if (!state.size) return Array.from({ length: B }, () => new Array<number>(N).fill(1));
  return tf.tidy(() => state.size!.reshape([B, N]).arraySync() as number[][]);
}
