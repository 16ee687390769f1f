/**
 * Recipes in notebook tables: what a set of runs shares and where the runs differ, key by key (the flattened recipe:
 * `adapters.notation`, `lr.base`, `eval.probe.epochs`, …).
 */
import { flattenConfig } from '../lib/report/runs';
import type { Recipe } from './recipe';

/** Rows `{key, value}` for the settings all recipes share and `{key, <run>…}` for the ones that differ. */
export function recipeTables(recipes: Record<string, Recipe>): { common: Array<{ key: string; value: unknown }>; differing: Array<Record<string, unknown>> } {
  const names = Object.keys(recipes);
  const flat = names.map((n) => flattenConfig(recipes[n] as unknown as Record<string, unknown>));
  const keys = [...new Set(flat.flatMap((f) => Object.keys(f)))];
  const show = (v: unknown): unknown => (v === undefined ? '—' : Array.isArray(v) || (v !== null && typeof v === 'object') ? JSON.stringify(v) : v);
  const common: Array<{ key: string; value: unknown }> = [];
  const differing: Array<Record<string, unknown>> = [];
  for (const k of keys) {
    const vals = flat.map((f) => f[k]);
    if (vals.every((v) => JSON.stringify(v) === JSON.stringify(vals[0]))) common.push({ key: k, value: show(vals[0]) });
    else differing.push({ key: k, ...Object.fromEntries(names.map((n, i) => [n, show(vals[i])])) });
  }
  return { common, differing };
}
