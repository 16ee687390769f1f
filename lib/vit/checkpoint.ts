/**
 * Activation recomputation ("gradient checkpointing") per transformer block.
 *
 * A checkpointed block keeps only its input during the forward; its internal activations are freed at once. In the
 * backward it runs again under a fresh gradient tape and returns the gradients of its input and of the trainable
 * variables it uses. Memory for activations drops from all blocks' to one block's (plus one [B, N, D] input per
 * block); the cost is one more forward pass per step.
 *
 * Which variables get gradients: tfjs's `customGrad` only differentiates its explicit inputs, so the caller names the
 * trainable set (the same ordered map given to `trainStep`). A block at prefix `blocks.i` (or `decoder_blocks.i` in
 * the MAE decoder) receives the entries whose path starts with `blocks.i.` (its own weights, adapters named under it
 * such as `blocks.i.attn.qkv.lora_A`, PYRA's `blocks.i.pyra_a`); everything else is a constant there. If a trainable
 * variable outside that prefix turns out to be used inside the block (e.g. an adapter named elsewhere), the backward
 * throws an error naming it rather than silently dropping its gradient. Frozen weights get no gradient at all (the
 * recompute tape is pruned to the trainable inputs), so ExPLoRA-style training computes dW only for what trains.
 *
 * What the re-run must reproduce exactly:
 * - randomness (drop-path): the recompute uses a copy of the block's rng taken before the forward;
 * - token merging (ToMe / PYRA merge hooks): the matching is a data-dependent, gradient-free choice (argsort of key
 *   similarities); it is recorded in the forward (`ForwardEnv.replay`, mode 'record') and replayed in the re-run,
 *   so the backward merges the same tokens even where the recomputed keys differ in the last bits (non-deterministic
 *   GPU reductions) — a re-derived matching could silently change which gradients flow where;
 * - the token state around the block: the input sizes / sources, the recorded matching tensors and the input tokens
 *   are saved with the tape node (tfjs frees everything else of the forward before the backward starts); the output
 *   sizes / sources leave the block as plain tensors (they depend on no trainable variable).
 * Without an active gradient tape (inference) the block simply runs: nothing would be recomputed.
 *
 * Implementation note: the recompute calls tfjs's `gradients` from inside a gradient function. tfjs-core 4.22 keeps a
 * single active tape, which a nested call replaces and then clears; the outer tape reference is saved and restored
 * around the call (see `nestedGradients`).
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import type { BlockOptions, ForwardEnv, TokenState } from './forward';
import type { BlockParams } from './params';

/** What `VitForwardOptions.checkpoint` (and `MaeForwardOptions.checkpoint`) takes. */
export interface CheckpointOptions {
  /** The trainable set (path → variable), as given to `trainStep`. */
  trainable: ReadonlyMap<string, tf.Variable>;
}

/**
 * Data-dependent, gradient-free choices of one block run, keyed by site prefix (e.g. `blocks.3` → ToMe's matching).
 * A recorded value is null or a flat object; its `tf.Tensor` fields are kept for the re-run (saved with the tape).
 */
export interface ForwardReplay {
  mode: 'record' | 'replay';
  values: Map<string, unknown>;
}

/** A recorded choice for `key` (replay mode), or compute it with `make` (and record it in record mode). */
export function replayOr<T>(replay: ForwardReplay | null | undefined, key: string, make: () => T): T {
  if (replay && replay.mode === 'replay') {
    if (!replay.values.has(key)) throw new Error(`checkpoint: nothing was recorded for '${key}' in the forward; the re-run cannot reproduce it`);
    return replay.values.get(key) as T;
  }
  const v = make();
  if (replay && replay.mode === 'record') replay.values.set(key, v);
  return v;
}

/** Tensor fields of the recorded values, in a fixed order (to save them and put the saved copies back). */
function replayLayout(values: Map<string, unknown>): { key: string; fields: string[] }[] {
  const out: { key: string; fields: string[] }[] = [];
  for (const [key, v] of values) {
    const fields = v && typeof v === 'object' ? Object.keys(v).filter((k) => (v as Record<string, unknown>)[k] instanceof tf.Tensor) : [];
    out.push({ key, fields });
  }
  return out;
}

interface EngineState {
  activeTape: unknown[] | null;
  gradientDepth: number;
}

/** `tf.engine().gradients` called while another gradient computation is in progress (see the module note). */
function nestedGradients(f: () => tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor): Array<tf.Tensor | null> {
  const engine = tf.engine() as unknown as {
    state: EngineState;
    gradients(f: () => tf.Tensor, xs: tf.Tensor[], dy: tf.Tensor, allowNoGradients: boolean): { value: tf.Tensor; grads: Array<tf.Tensor | null> };
  };
  const outerTape = engine.state.activeTape;
  const depth = engine.state.gradientDepth;
  if (depth !== 0) throw new Error('checkpoint: higher-order gradients through a checkpointed block are not supported');
  try {
    const { value, grads } = engine.gradients(f, xs, dy, true);
    value.dispose();
    return grads.map((g) => g ?? null);
  } finally {
    engine.state.activeTape = outerTape;
  }
}

/** A copy of an rng at its current position (the class has only plain fields). */
function snapshotRng(r: Rng | null): Rng | null {
  return r ? (Object.assign(Object.create(Rng.prototype), r) as Rng) : null;
}

type BlockFn = (p: BlockParams, state: TokenState, o: BlockOptions, env: ForwardEnv) => TokenState;

/** Whether operations are being recorded for a gradient right now (outside any kernel). */
function tapeOn(): boolean {
  return (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

/**
 * Run `block` on `state` with recomputation in the backward. Same result as `block(p, state, o, env)`, merge hooks
 * included (tokens, sizes and sources).
 */
export function checkpointedBlock(
  block: BlockFn,
  p: BlockParams,
  state: TokenState,
  o: BlockOptions,
  env: ForwardEnv,
  ck: CheckpointOptions,
): TokenState {
  if (!tapeOn()) return block(p, state, o, env);
  const mine: tf.Variable[] = [];
  const others: tf.Variable[] = [];
  const otherNames: string[] = [];
  for (const [path, v] of ck.trainable) {
    if (path.startsWith(`${o.prefix}.`)) {
      mine.push(v);
    } else {
      others.push(v);
      otherNames.push(path);
    }
  }
  const rng0 = snapshotRng(env.rng);
  const record: ForwardReplay = { mode: 'record', values: new Map() };
  // Output sizes / sources produced inside the block: tfjs runs a customGrad forward inside its own tidy, so they are
  // kept there and handed to the caller's scope as clones below.
  let keptOut: { size: tf.Tensor3D | null; source: tf.Tensor3D | null } = { size: null, source: null };
  let layout: { key: string; fields: string[] }[] = [];
  const f = tf.customGrad((...args: unknown[]) => {
    const x = args[0] as tf.Tensor3D;
    const save = args[args.length - 1] as tf.GradSaveFunc;
    // advances env.rng exactly like the plain forward; records the block's gradient-free choices
    const s = block(p, { ...state, x }, o, { ...env, replay: record });
    const fresh = (t: tf.Tensor3D | null, input: tf.Tensor3D | null): tf.Tensor3D | null => (t && t !== input ? tf.keep(t) : null);
    keptOut = { size: fresh(s.size, state.size), source: fresh(s.source, state.source) };
    layout = replayLayout(record.values);
    const replayTensors: tf.Tensor[] = [];
    for (const { key, fields } of layout) for (const fld of fields) replayTensors.push((record.values.get(key) as Record<string, tf.Tensor>)[fld]);
    // saved with the tape node (cloned by the engine): input tokens, input sizes / sources, the recorded choices
    save([x, ...(state.size ? [state.size] : []), ...(state.source ? [state.source] : []), ...replayTensors]);
    const y = s.x;
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        let j = 0;
        const xs = saved[j++] as tf.Tensor3D;
        const sizeIn = state.size ? (saved[j++] as tf.Tensor3D) : null;
        const sourceIn = state.source ? (saved[j++] as tf.Tensor3D) : null;
        const values = new Map<string, unknown>();
        for (const { key, fields } of layout) {
          const v = record.values.get(key);
          if (fields.length === 0) {
            values.set(key, v);
            continue;
          }
          const copy: Record<string, unknown> = { ...(v as Record<string, unknown>) };
          for (const fld of fields) copy[fld] = saved[j++];
          values.set(key, copy);
        }
        const replay: ForwardReplay = { mode: 'replay', values };
        const run = (): tf.Tensor3D => block(p, { x: xs, size: sizeIn, source: sourceIn }, o, { ...env, rng: snapshotRng(rng0), replay }).x;
        const grads = nestedGradients(run, [xs, ...mine, ...others], dy);
        for (let i = 0; i < others.length; i++) {
          if (grads[1 + mine.length + i]) {
            tf.dispose(grads.filter((g): g is tf.Tensor => g !== null));
            throw new Error(
              `checkpoint: trainable variable '${otherNames[i]}' is used inside ${o.prefix} but is not named under '${o.prefix}.'; ` +
                'name it under the block (e.g. blocks.i.attn.qkv.lora_A) or train without checkpointing',
            );
          }
        }
        const out: tf.Tensor[] = [grads[0] ?? tf.zerosLike(xs)];
        mine.forEach((v, i) => out.push(grads[1 + i] ?? tf.zerosLike(v)));
        return out;
      },
    };
  });
  const y = f(state.x, ...mine) as tf.Tensor3D;
  const handOver = (kept: tf.Tensor3D | null, input: tf.Tensor3D | null): tf.Tensor3D | null => {
    if (!kept) return input; // unchanged by the block (or absent)
    const c = kept.clone(); // shares the data; tracked by the caller's scope like any forward tensor
    kept.dispose();
    return c;
  };
  return { x: y, size: handOver(keptOut.size, state.size), source: handOver(keptOut.source, state.source) };
}
