/**
 * Parameter trees: plain objects/arrays whose leaves are `tf.Variable`s. The path of a leaf is its chain of keys joined
 * by dots (`blocks.3.attn.qkv.weight`), which the kit keeps identical to the timm / DINOv2 / MAE checkpoint keys.
 *
 * tfjs variable names are global; a tree's variables get names `<scope>/<path>` with a scope unique to the tree, so
 * building the same model twice (a re-run notebook cell) never collides. Dispose trees you drop (`disposeTree`).
 */
import * as tf from '@tensorflow/tfjs';

/**
 * A tree of variables: a variable, or an object / array of trees (typed interfaces such as `VitParams` qualify).
 * `undefined` leaves are allowed (optional parts) and skipped.
 */
export type ParamTree = tf.Variable | object | undefined;

let scopeCounter = 0;
const scopeSalt = Math.floor(Math.random() * 0x7fffffff).toString(36);

/** A new unique scope name for the variables of one tree, e.g. `vit#3.k2j1`. */
export function newScope(kind: string): string {
  scopeCounter += 1;
  return `${kind}#${scopeCounter}.${scopeSalt}`;
}

/** Create a variable named `<scope>/<path>`. */
export function makeVariable(
  scope: string,
  path: string,
  values: Float32Array | Int32Array,
  shape: number[],
  trainable = true,
): tf.Variable {
  const size = shape.reduce((a, b) => a * b, 1);
  if (values.length !== size) {
    throw new Error(`makeVariable(${path}): ${values.length} values for shape [${shape}] (${size})`);
  }
  const dtype = values instanceof Int32Array ? 'int32' : 'float32';
  return tf.tidy(() => tf.variable(tf.tensor(values, shape, dtype), trainable, `${scope}/${path}`));
}

function isVariable(x: unknown): x is tf.Variable {
  return x instanceof tf.Variable;
}

/** Visit every leaf with its path, in a fixed order (object key order, then array index). */
export function forEachLeaf(tree: ParamTree, fn: (path: string, v: tf.Variable) => void, prefix = ''): void {
  if (tree === undefined) return;
  if (isVariable(tree)) {
    fn(prefix, tree);
    return;
  }
  if (Array.isArray(tree)) {
    (tree as ParamTree[]).forEach((sub, i) => forEachLeaf(sub, fn, prefix ? `${prefix}.${i}` : String(i)));
    return;
  }
  if (tree instanceof tf.Tensor) throw new Error(`forEachLeaf: '${prefix}' is a tensor, not a tf.Variable`);
  for (const [k, sub] of Object.entries(tree as Record<string, ParamTree>)) {
    forEachLeaf(sub, fn, prefix ? `${prefix}.${k}` : k);
  }
}

/** Flatten to an ordered map path → variable. */
export function flattenTree(tree: ParamTree, prefix = ''): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  forEachLeaf(
    tree,
    (p, v) => {
      if (out.has(p)) throw new Error(`flattenTree: duplicate path ${p}`);
      out.set(p, v);
    },
    prefix,
  );
  return out;
}

/** Total number of scalars in a tree or flat map. */
export function countParams(tree: ParamTree | Map<string, tf.Variable>): number {
  const map = tree instanceof Map ? tree : flattenTree(tree);
  let n = 0;
  for (const v of map.values()) n += v.size;
  return n;
}

/** Dispose every variable of a tree (safe to call twice). */
export function disposeTree(tree: ParamTree): void {
  forEachLeaf(tree, (_p, v) => {
    if (!v.isDisposed) v.dispose();
  });
}

/**
 * Throw if a variable of `tree` was disposed, naming it, the caller (`what`) and how it happened (`hint`, e.g.
 * 'disposeVit was called on this ViT'). tfjs itself only says "Tensor is disposed", and assigning to a disposed
 * variable silently revives it.
 */
export function assertLive(tree: ParamTree | ReadonlyMap<string, tf.Variable>, what: string, hint = ''): void {
  const check = (p: string, v: tf.Variable): void => {
    if (v.isDisposed) throw new Error(`${what}: parameter '${p}' was disposed${hint ? ` (${hint})` : ''}; create or load the model again`);
  };
  if (tree instanceof Map) tree.forEach((v, k) => check(k, v));
  else forEachLeaf(tree as ParamTree, check);
}
