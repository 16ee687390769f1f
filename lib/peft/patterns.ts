/**
 * Path patterns shared by LoRA targeting (`lora.ts`) and declarative trainability (`trainable.ts`).
 *
 * A path is a dotted parameter or site name in checkpoint spelling (`blocks.3.attn.qkv`, `blocks.3.norm1.weight`).
 * A pattern is
 * - a **string**: a glob (`*` matches any run of characters, dots included; everything else is literal) that must
 *   match the whole path **or a dotted suffix of it** — so `attn.qkv` matches `blocks.3.attn.qkv` (PEFT's
 *   `target_modules` "exact or suffix" rule), `blocks.23.*` matches everything in block 23 and `norm1.weight` matches
 *   every block's `norm1.weight` but not `fc_norm1.weight`;
 * - a **RegExp**: tested with `RegExp.test` (search semantics; anchor with `^…$` for a full match).
 *
 * Layer indices (`layers` filters) are read from the first `<name>blocks.<i>.` component (`blocks.7.mlp.fc1` → 7,
 * `decoder_blocks.2.attn.qkv` → 2); paths without one have no layer index.
 */

/** A path pattern: glob string (whole path or dotted suffix) or RegExp (tested with `.test`). */
export type PathPattern = string | RegExp;

const globCache = new Map<string, RegExp>();

function globToRegExp(glob: string): RegExp {
  let re = globCache.get(glob);
  if (!re) {
    const body = glob
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*');
    // whole path, or a suffix starting right after a dot
    re = new RegExp(`(?:^|\\.)(?:${body})$`);
    globCache.set(glob, re);
  }
  return re;
}

/** Whether `path` matches `pattern` (see the module comment for the rules). */
export function matchPath(path: string, pattern: PathPattern): boolean {
  if (pattern instanceof RegExp) {
    pattern.lastIndex = 0; // a /g or /y regex keeps state between calls
    return pattern.test(path);
  }
  if (typeof pattern !== 'string' || pattern.length === 0) {
    throw new Error(`path pattern: expected a non-empty string or a RegExp, got ${JSON.stringify(pattern)}`);
  }
  if (pattern === path) return true;
  return globToRegExp(pattern).test(path);
}

/** Whether `path` matches any of `patterns`. */
export function matchAny(path: string, patterns: readonly PathPattern[]): boolean {
  return patterns.some((p) => matchPath(path, p));
}

/** Readable form of a pattern for messages and tables: `"attn.qkv"` or `/^blocks\.\d+\./`. */
export function describePattern(p: PathPattern | readonly PathPattern[]): string {
  if (Array.isArray(p)) return `[${(p as readonly PathPattern[]).map((x) => describePattern(x)).join(', ')}]`;
  return p instanceof RegExp ? String(p) : JSON.stringify(p);
}

/** Default layer-index pattern: the index after the first `…blocks.` component. */
export const LAYER_INDEX_PATTERN = /(?:^|\.)[A-Za-z_]*blocks\.(\d+)(?:\.|$)/;

/** Layer index of a path (`blocks.7.mlp.fc1` → 7), or null when the path is not inside a numbered block. */
export function layerIndexOf(path: string, pattern: RegExp = LAYER_INDEX_PATTERN): number | null {
  const m = pattern.exec(path);
  if (!m) return null;
  if (m[1] === undefined) throw new Error(`layersPattern ${String(pattern)} must capture the layer index in group 1`);
  return Number(m[1]);
}

/** Normalise one pattern or a list of them to a list. */
export function patternList(p: PathPattern | readonly PathPattern[] | undefined): readonly PathPattern[] {
  if (p === undefined) return [];
  return Array.isArray(p) ? (p as readonly PathPattern[]) : [p as PathPattern];
}
