/**
 * One entry point for external checkpoints: read any supported file (safetensors, torch `.pth`/`.pt`/`.bin` zip or
 * legacy, numpy `.npz`), convert its names with a key map, load it into kit parameters all-or-nothing, and return the
 * key report (one row per key: loaded / converted / resized / kept / ignored / checked).
 *
 * @example
 * const vit = createVit('vit_large_patch14_dinov2', {}, {skipInit: true});
 * const report = loadConverted('dinov2_vitl14_pretrain.pth', vit.params, {map: 'dinov2'});
 * showTable(keyReportRows(report));
 */
import * as tf from '@tensorflow/tfjs';
import type { SafeFile } from './safetensors';
import { readSafetensors } from './safetensors';
import { readTorchCheckpoint, ReadPthOptions } from './pth';
import { readNpz } from './npz';
import { fileSource, ZipReader } from './zip';
import { ParamTree } from '../tree';
import { KeyMap, KeyReport, LoadMappedOptions, Mapped, loadMapped } from './keymaps/common';
import { dinov2KeyMap } from './keymaps/dinov2';
import { maeKeyMap } from './keymaps/mae';
import { exploraKeyMap } from './keymaps/explora';
import { hfDinov2KeyMap, hfVitMaeKeyMap } from './keymaps/hf';
import { bigVisionKeyMap } from './keymaps/big-vision';
import { timmKeyMap } from './keymaps/timm';

export type CheckpointFormat = 'safetensors' | 'pth' | 'npz';

/** The kit's key maps by name. */
export const KEY_MAPS = {
  dinov2: dinov2KeyMap,
  mae: maeKeyMap,
  explora: exploraKeyMap,
  'hf-dinov2': hfDinov2KeyMap,
  'hf-vitmae': hfVitMaeKeyMap,
  'big-vision': bigVisionKeyMap,
  timm: timmKeyMap,
} as const;
export type KeyMapName = keyof typeof KEY_MAPS;

/** Which container a file is, from its first bytes. */
export function detectFormat(file: string): CheckpointFormat {
  const src = fileSource(file);
  try {
    const head = src.read(0, Math.min(src.size, 16));
    if (head.length >= 9 && head.readUInt32LE(0) === 0x04034b50) {
      const zip = new ZipReader(src, file);
      return zip.entries.length > 0 && zip.entries.every((e) => e.name.endsWith('.npy')) ? 'npz' : 'pth';
    }
    if (head.length >= 1 && head[0] === 0x80) return 'pth';
    if (head.length >= 9 && head[8] === 0x7b /* '{' */) return 'safetensors';
    throw new Error(`${file}: not a safetensors, torch or npz file (first bytes ${head.subarray(0, 8).toString('hex')})`);
  } finally {
    src.close();
  }
}

export interface ReadStateDictOptions extends ReadPthOptions {}

/** Read a checkpoint file into memory (torch layout, the file's own names). */
export function readStateDict(file: string, opts: ReadStateDictOptions = {}): SafeFile & { format: CheckpointFormat } {
  const format = detectFormat(file);
  if (format === 'safetensors') return { ...readSafetensors(file), format };
  if (format === 'npz') return { ...readNpz(file), format };
  return { ...readTorchCheckpoint(file, opts), format };
}

/** Guess the key map from the key names (null when nothing distinctive is found). */
export function detectKeyMap(keys: Iterable<string>): KeyMapName | null {
  const ks = [...keys];
  const has = (re: RegExp): boolean => ks.some((k) => re.test(k));
  if (has(/(^|\/)embedding\/kernel$/)) return 'big-vision';
  if (has(/^(dinov2\.)?embeddings\.patch_embeddings\./) && has(/\.layer_scale1\./)) return 'hf-dinov2';
  if (has(/^(vit\.)?embeddings\.patch_embeddings\./)) return 'hf-vitmae';
  if (has(/\battn\.[qkv]_proj\./)) return 'explora';
  if (has(/^(teacher|student)\.backbone\./) || has(/^backbone\./)) return 'dinov2';
  if (has(/^reg_token$/)) return 'timm';
  if (has(/^(decoder_|channel_embed$)/) || has(/^patch_embed\.\d+\.proj\./)) return 'mae';
  if (has(/^blocks\.\d+\.attn\.qkv\./)) return 'dinov2'; // kit / DINOv2 / timm / MAE encoders share the names
  return null;
}

export interface LoadConvertedOptions extends LoadMappedOptions, ReadPthOptions {
  /** Key map (name or object); default: detected from the key names. */
  map?: KeyMapName | KeyMap<never>;
  /** Options of the key map (e.g. `{part: 'student'}`, `{encoderOnly: true}`). */
  mapOptions?: Record<string, unknown>;
}

/** A load's report plus where it came from. */
export interface ConvertedReport extends KeyReport {
  file: string;
  format: CheckpointFormat | 'memory';
  map: string;
  extras: Mapped['extras'];
  info: Mapped['info'];
}

/**
 * Read `source` (a path, or a state dict already in memory), convert it with a key map and load it into `params`
 * all-or-nothing. Errors name the source keys and shapes; the report lists every key.
 */
export function loadConverted(
  source: string | SafeFile,
  params: ParamTree | ReadonlyMap<string, tf.Variable>,
  opts: LoadConvertedOptions = {},
): ConvertedReport {
  const { map, mapOptions, select, allow, checkCrc, ...load } = opts;
  const file = typeof source === 'string' ? source : (load.source ?? '<state dict>');
  const sd = typeof source === 'string' ? readStateDict(source, { select, allow, checkCrc }) : { ...source, format: 'memory' as const };
  const name = map ?? detectKeyMap(sd.tensors.keys());
  if (!name) throw new Error(`${file}: cannot tell which key map fits (keys: ${[...sd.tensors.keys()].slice(0, 6).join(', ')}…); pass map: ${Object.keys(KEY_MAPS).join(' | ')}`);
  const km = (typeof name === 'string' ? KEY_MAPS[name] : name) as KeyMap<Record<string, unknown>>;
  if (!km) throw new Error(`loadConverted: unknown key map '${String(name)}' (known: ${Object.keys(KEY_MAPS).join(', ')})`);
  const mapped = km.toKit(sd.tensors, mapOptions ?? {});
  const report = loadMapped(mapped, params, { ...load, source: file });
  return { ...report, file, format: sd.format, map: km.name, extras: mapped.extras, info: mapped.info };
}
