/**
 * Activation recomputation ("gradient checkpointing") per transformer block.
 *
 * A checkpointed block keeps only its input during the forward; its internal activations are freed at once. In the
 * backward it runs again under a fresh gradient tape and returns the gradients of its input and of the trainable
 * variables it uses. Memory for activations drops from all blocks' to one block's (plus one [B, N, D] input per
 * block); the cost is one more forward pass per step.
 *
 * Which variables get gradients: tfjs's `customGrad` only differentiates its explicit inputs, so the caller names the
 * trainable set (the same ordered map given to `trainStep`). A block at prefix `blocks.i` receives the entries whose
 * path starts with `blocks.i.` (its own weights, and adapters named under it such as
 * `blocks.i.attn.qkv.lora_A`); everything else is a constant there. If a trainable variable outside that prefix turns
 * out to be used inside the block (e.g. an adapter named elsewhere), the backward throws an error naming it rather
 * than silently dropping its gradient. Frozen weights get no gradient at all (the recompute tape is pruned to the
 * trainable inputs), so ExPLoRA-style training computes dW only for what trains.
 *
 * Randomness (drop-path) is replayed exactly: the recompute uses a copy of the block's rng taken before the forward.
 * Merge hooks (ToMe / PYRA change the token count and sizes) are not supported under checkpointing: an error says so.
 *
 * Implementation note: the recompute calls tfjs's `gradients` from inside a gradient function. tfjs-core 4.22 keeps a
 * single active tape, which a nested call replaces and then clears; the outer tape reference is saved and restored
 * around the call (see `nestedGradients`).
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../rng';
import type { BlockOptions, ForwardEnv, TokenState } from './forward';
import type { BlockParams } from './params';

/** What `VitForwardOptions.checkpoint` takes. */
export interface CheckpointOptions {
  /** The trainable set (path → variable), as given to `trainStep`. */
  trainable: ReadonlyMap<string, tf.Variable>;
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

/**
 * Run `block` on `state` with recomputation in the backward. Same result as `block(p, state, o, env)` (tokens only:
 * no merge hook allowed).
 */
export function checkpointedBlock(
  block: BlockFn,
  p: BlockParams,
  state: TokenState,
  o: BlockOptions,
  env: ForwardEnv,
  ck: CheckpointOptions,
): TokenState {
  if (env.hooks.merge) {
    throw new Error(`checkpoint: ${o.prefix} has a merge hook (ToMe / PYRA); activation recomputation supports token-preserving blocks only`);
  }
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
  const run = (x: tf.Tensor3D, rng: Rng | null): tf.Tensor3D => block(p, { ...state, x }, o, { ...env, rng }).x;
  const f = tf.customGrad((...args: unknown[]) => {
    const x = args[0] as tf.Tensor3D;
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const y = tf.tidy(() => run(x, env.rng)); // advances env.rng exactly like the plain forward
    save([x]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const xs = saved[0] as tf.Tensor3D;
        const grads = nestedGradients(() => run(xs, snapshotRng(rng0)), [xs, ...mine, ...others], dy);
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
  return { ...state, x: y };
}
