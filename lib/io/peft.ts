/**
 * LoRA adapters ↔ Hugging Face peft's on-disk format (huggingface/peft `docs/source/developer_guides/checkpoint.md`,
 * `src/peft/utils/save_and_load.py`, `src/peft/tuners/lora/{config,layer}.py`):
 *   adapter_config.json        {"peft_type": "LORA", "r", "lora_alpha", "target_modules", "rank_pattern",
 *                               "alpha_pattern", "lora_dropout", "bias": "none", "use_rslora", …}
 *   adapter_model.safetensors  base_model.model.<module>.lora_A.weight [r, in], …lora_B.weight [out, r]
 * peft computes y = W x + b + s · B (A dropout(x)) with s = lora_alpha / r (lora_alpha / √r with use_rslora);
 * rank_pattern / alpha_pattern override r and lora_alpha per module (matched against the module name's end).
 *
 * Module names depend on the base model peft wraps (`base`):
 * - 'hf-dinov2' (transformers Dinov2Model): `encoder.layer.i.attention.attention.{query,key,value}`,
 *   `…attention.output.dense`, `…mlp.fc1`, `…mlp.fc2` — the kit's per-slice Q / V adapters (ExPLoRA, `qvTarget`) map
 *   one to one onto `query` / `value`;
 * - 'hf-vitmae' (ViTMAEModel, or ViTMAEForPreTraining with prefix 'vit.'): `encoder.layer.i.attention.attention.*`,
 *   `…attention.output.dense`, `…intermediate.dense`, `…output.dense`, decoder `decoder.decoder_layers.i.*`;
 * - 'timm' (timm VisionTransformer): the kit's own site names (`blocks.i.attn.qkv`, `…attn.proj`, `…mlp.fc1`).
 * Exact representations where the module structure differs:
 * - an adapter over the whole fused qkv (kind 'linear' on qkv, or PYRA's 'shared-qkv') on an HF base → one adapter
 *   per query / key / value module, each with the same A and its rows of B (inference identical; in peft the three
 *   A copies would then train separately);
 * - per-slice Q / V adapters on a timm base (peft cannot target a slice of a fused qkv, peft #691) → one adapter on
 *   `qkv` of rank (#slices · r): A = [A_q; A_v] stacked, B block-diagonal over the Q / V rows (ΔW identical).
 * Importing maps module names back to kit sites (q/k/v modules of one layer → a 'qkv' adapter with those slices).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { LoraAdapters, LoraBase, LoraModule, LoraTarget, createLora, disposeLora } from '../peft/lora';
import { SafeTensor, TensorToWrite, readSafetensors, writeFileAtomic, writeSafetensors } from './safetensors';
import { readTorchCheckpoint } from './pth';

export type PeftBase = 'hf-dinov2' | 'hf-vitmae' | 'timm';

export interface PeftExportOptions {
  /** Which model's module names peft will see. */
  base: PeftBase;
  /** Prefix of the modules inside the wrapped model ('dinov2.' for Dinov2ForImageClassification, 'vit.' for ViTMAEForPreTraining encoders). */
  prefix?: string;
  /** `base_model_name_or_path` in adapter_config.json (e.g. 'facebook/dinov2-large'). */
  baseModelName?: string | null;
  taskType?: string | null;
}

/** One peft LoRA module: its name (relative to the base model) and torch-layout factors. */
interface PeftModule {
  name: string;
  A: Float32Array; // [r, in]
  B: Float32Array; // [out, r]
  rank: number;
  din: number;
  dout: number;
  scale: number;
  note?: string;
}

const QKV_NAMES = { q: 'query', k: 'key', v: 'value' } as const;

/** HF module name of a kit site (whole linear) or of one slice of a fused qkv. */
function hfModule(base: 'hf-dinov2' | 'hf-vitmae', site: string, slice: 'q' | 'k' | 'v' | '', prefix: string): string {
  const m = /^(decoder_)?blocks\.(\d+)\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)$/.exec(site);
  if (m) {
    const dec = m[1] === 'decoder_';
    if (dec && base !== 'hf-vitmae') throw new Error(`peft export: decoder site '${site}' needs base 'hf-vitmae'`);
    const layer = dec ? `decoder.decoder_layers.${m[2]}` : `${prefix}encoder.layer.${m[2]}`;
    switch (m[3]) {
      case 'attn.qkv':
        if (!slice) throw new Error(`peft export: '${site}' without a slice`);
        return `${layer}.attention.attention.${QKV_NAMES[slice]}`;
      case 'attn.proj':
        return `${layer}.attention.output.dense`;
      case 'mlp.fc1':
        return base === 'hf-dinov2' ? `${layer}.mlp.fc1` : `${layer}.intermediate.dense`;
      default:
        return base === 'hf-dinov2' ? `${layer}.mlp.fc2` : `${layer}.output.dense`;
    }
  }
  if (base === 'hf-vitmae' && (site === 'decoder_embed' || site === 'decoder_pred')) return `decoder.${site}`;
  throw new Error(`peft export: kit site '${site}' has no ${base} module name (the patch embedding and heads are not peft LoRA targets here)`);
}

/** Kit site + slice of an HF module name (inverse of hfModule). */
function kitSite(base: PeftBase, name: string, prefix: string): { site: string; slice: 'q' | 'k' | 'v' | '' } {
  if (base === 'timm') return { site: name, slice: '' };
  const n = prefix && name.startsWith(prefix) ? name.slice(prefix.length) : name;
  const m = /^(encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.+)$/.exec(n);
  if (m) {
    const kp = `${m[1] === 'encoder.layer' ? '' : 'decoder_'}blocks.${m[2]}`;
    const q = /^attention\.attention\.(query|key|value)$/.exec(m[3]);
    if (q) return { site: `${kp}.attn.qkv`, slice: q[1] === 'query' ? 'q' : q[1] === 'key' ? 'k' : 'v' };
    const map: Record<string, string> =
      base === 'hf-dinov2'
        ? { 'attention.output.dense': 'attn.proj', 'mlp.fc1': 'mlp.fc1', 'mlp.fc2': 'mlp.fc2' }
        : { 'attention.output.dense': 'attn.proj', 'intermediate.dense': 'mlp.fc1', 'output.dense': 'mlp.fc2' };
    if (map[m[3]]) return { site: `${kp}.${map[m[3]]}`, slice: '' };
  }
  if (base === 'hf-vitmae' && (n === 'decoder.decoder_embed' || n === 'decoder.decoder_pred')) return { site: n.slice(8), slice: '' };
  throw new Error(`peft import: module '${name}' has no kit site for base '${base}'`);
}

const t2 = (x: Float32Array, rows: number, cols: number): Float32Array => {
  const o = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) o[j * rows + i] = x[i * cols + j];
  return o;
};

/** The peft modules of a kit adapter module (torch layout: A [r, in], B [out, r]). */
function modulesOf(m: LoraModule, base: PeftBase, prefix: string): PeftModule[] {
  const vals = m.slices.map((s) => ({ s, A: s.A.dataSync() as Float32Array, B: s.B.dataSync() as Float32Array })); // kit A [in, r], B [r, width]
  const r = m.rank;
  if (base === 'timm') {
    if (m.kind !== 'qkv') {
      const s = vals[0];
      return [{ name: m.site, A: t2(s.A, m.din, r), B: t2(s.B, r, m.dout), rank: r, din: m.din, dout: m.dout, scale: m.scale }];
    }
    // per-slice adapters on a fused qkv → one rank (k·r) adapter: A stacked, B block-diagonal over the slices' rows
    const k = vals.length;
    const R = k * r;
    const A = new Float32Array(R * m.din);
    const B = new Float32Array(m.dout * R);
    vals.forEach(({ s, A: a, B: b }, j) => {
      A.set(t2(a, m.din, r), j * r * m.din); // rows j·r … of [R, in]
      const bt = t2(b, r, s.width); // [width, r]
      for (let o = 0; o < s.width; o++) for (let c = 0; c < r; c++) B[(s.offset + o) * R + j * r + c] = bt[o * r + c];
    });
    return [{ name: m.site, A, B, rank: R, din: m.din, dout: m.dout, scale: m.scale, note: `slices ${m.slices.map((s) => s.name).join('+')} as one rank-${R} block adapter` }];
  }
  if (m.kind === 'qkv') {
    return vals.map(({ s, A, B }) => ({ name: hfModule(base, m.site, s.name as 'q' | 'k' | 'v', prefix), A: t2(A, m.din, r), B: t2(B, r, s.width), rank: r, din: m.din, dout: s.width, scale: m.scale }));
  }
  if (/\.attn\.qkv$/.test(m.site)) {
    // whole-qkv adapter (linear or shared-qkv) → query / key / value modules sharing A, each with its rows of B
    const { A, B } = vals[0];
    const At = t2(A, m.din, r);
    const Bt = t2(B, r, m.dout); // [3D, r]
    const D = m.dout / 3;
    return (['q', 'k', 'v'] as const).map((sl, j) => ({
      name: hfModule(base, m.site, sl, prefix), A: At.slice(), B: Bt.slice(j * D * r, (j + 1) * D * r), rank: r, din: m.din, dout: D, scale: m.scale,
      note: 'whole-qkv adapter: A copied to query/key/value, B split by rows',
    }));
  }
  const { A, B } = vals[0];
  return [{ name: hfModule(base, m.site, '', prefix), A: t2(A, m.din, r), B: t2(B, r, m.dout), rank: r, din: m.din, dout: m.dout, scale: m.scale }];
}

/** adapter_config.json content and adapter tensors for kit adapters. */
export function peftAdapterFiles(adapters: LoraAdapters | readonly LoraAdapters[], opts: PeftExportOptions): { config: Record<string, unknown>; tensors: Map<string, TensorToWrite>; notes: string[] } {
  const sets = Array.isArray(adapters) ? (adapters as readonly LoraAdapters[]) : [adapters as LoraAdapters];
  const prefix = opts.prefix ?? '';
  const mods: PeftModule[] = [];
  const drops = new Set<number>();
  for (const a of sets) {
    for (const m of a.modules.values()) {
      if (m.weightShape.length !== 2) throw new Error(`peft export: '${m.site}' is not a Linear (shape [${m.weightShape}])`);
      drops.add(m.dropout);
      mods.push(...modulesOf(m, opts.base, prefix));
    }
  }
  if (mods.length === 0) throw new Error('peft export: no adapters');
  if (drops.size > 1) throw new Error(`peft export: peft has one lora_dropout for all modules; these adapters use ${[...drops].join(', ')}`);
  // the most common (rank, alpha) becomes r / lora_alpha; the others go to rank_pattern / alpha_pattern
  const count = new Map<number, number>();
  for (const m of mods) count.set(m.rank, (count.get(m.rank) ?? 0) + 1);
  const r = [...count].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0];
  const alphas = new Map<number, number>();
  for (const m of mods) if (m.rank === r) alphas.set(m.scale * r, (alphas.get(m.scale * r) ?? 0) + 1);
  const alpha = [...alphas].sort((a, b) => b[1] - a[1])[0]?.[0] ?? mods[0].scale * mods[0].rank;
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  const tensors = new Map<string, TensorToWrite>();
  const names = new Set<string>();
  for (const m of mods) {
    if (names.has(m.name)) throw new Error(`peft export: module '${m.name}' is adapted twice`);
    names.add(m.name);
    if (m.rank !== r) rankPattern[m.name] = m.rank;
    if (m.scale * m.rank !== alpha) alphaPattern[m.name] = m.scale * m.rank;
    tensors.set(`base_model.model.${m.name}.lora_A.weight`, { dtype: 'F32', shape: [m.rank, m.din], data: m.A });
    tensors.set(`base_model.model.${m.name}.lora_B.weight`, { dtype: 'F32', shape: [m.dout, m.rank], data: m.B });
  }
  const config = {
    peft_type: 'LORA',
    task_type: opts.taskType ?? null,
    base_model_name_or_path: opts.baseModelName ?? null,
    revision: null,
    inference_mode: true,
    r,
    lora_alpha: alpha,
    lora_dropout: [...drops][0],
    target_modules: [...names],
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
    bias: 'none',
    fan_in_fan_out: false,
    modules_to_save: null,
    init_lora_weights: true,
    use_rslora: false,
    use_dora: false,
    layers_to_transform: null,
    layers_pattern: null,
  };
  return { config, tensors, notes: [...new Set(mods.filter((m) => m.note).map((m) => `${m.name}: ${m.note}`))] };
}

/** Write `adapter_config.json` + `adapter_model.safetensors` into `dir` (atomic writes). */
export function savePeftAdapter(dir: string, adapters: LoraAdapters | readonly LoraAdapters[], opts: PeftExportOptions): { notes: string[] } {
  const { config, tensors, notes } = peftAdapterFiles(adapters, opts);
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });
  writeFileAtomic(path.join(dir, 'adapter_config.json'), JSON.stringify(config, null, 2) + '\n');
  return { notes };
}

export interface PeftImportOptions {
  /** Module-name convention of the adapter (default: inferred from the names). */
  base?: PeftBase;
  /** Module prefix inside the wrapped model (default: inferred: 'dinov2.' / 'vit.' when present). */
  prefix?: string;
  seed?: number;
}

/** Pattern lookup as peft does it: the key whose regex matches the end of the module name. */
function patternValue(pattern: Record<string, number> | undefined, name: string): number | undefined {
  for (const [k, v] of Object.entries(pattern ?? {})) if (new RegExp(`(^|.*\\.)(${k})$`).test(name)) return v;
  return undefined;
}

/**
 * Read a peft LoRA adapter folder (adapter_config.json + adapter_model.safetensors, or adapter_model.bin through the
 * safe .pth reader) into kit adapters over `base` (a ViT's params, or [encoder, decoder] trees). Refuses what is not
 * plain LoRA (DoRA, trained biases, embedding adapters), naming it; `modules_to_save` entries are reported, not loaded.
 */
export function loadPeftAdapter(dir: string, base: LoraBase, opts: PeftImportOptions = {}): { adapters: LoraAdapters; config: Record<string, unknown>; notes: string[] } {
  const cfgFile = path.join(dir, 'adapter_config.json');
  let cfg: Record<string, unknown>;
  try {
    cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
  } catch (e) {
    throw new Error(`${cfgFile}: cannot read the adapter config (${(e as Error).message})`);
  }
  if (cfg.peft_type !== 'LORA') throw new Error(`${cfgFile}: peft_type '${String(cfg.peft_type)}' is not LORA`);
  if (cfg.use_dora) throw new Error(`${cfgFile}: use_dora (DoRA adds a magnitude vector; not plain LoRA)`);
  if (cfg.bias && cfg.bias !== 'none') throw new Error(`${cfgFile}: bias '${String(cfg.bias)}' (trained biases) is not supported`);
  if (cfg.fan_in_fan_out) throw new Error(`${cfgFile}: fan_in_fan_out (Conv1D weights) is not supported`);
  const st = path.join(dir, 'adapter_model.safetensors');
  const bin = path.join(dir, 'adapter_model.bin');
  const tensors = fs.existsSync(st) ? readSafetensors(st).tensors : fs.existsSync(bin) ? readTorchCheckpoint(bin, { select: '' }).tensors : null;
  if (!tensors) throw new Error(`${dir}: no adapter_model.safetensors or adapter_model.bin`);
  const notes: string[] = [];
  const byModule = new Map<string, { A?: SafeTensor; B?: SafeTensor }>();
  for (const [k, t] of tensors) {
    const m = /^base_model\.model\.(.+)\.lora_([AB])(?:\.default)?\.weight$/.exec(k);
    if (!m) {
      if (/lora_magnitude_vector|lora_embedding_/.test(k)) throw new Error(`${dir}: '${k}' is not a plain LoRA factor`);
      notes.push(`'${k}' not loaded (modules_to_save or other non-LoRA tensor)`);
      continue;
    }
    const e = byModule.get(m[1]) ?? {};
    e[m[2] as 'A' | 'B'] = t;
    byModule.set(m[1], e);
  }
  const names = [...byModule.keys()];
  const bare = (n: string): string => n.replace(/^(dinov2|vit)\./, '');
  const hf = names.some((n) => /^(encoder\.layer|decoder\.)/.test(bare(n)));
  const vitmae = names.some((n) => n.startsWith('vit.') || /^decoder\./.test(n) || /\.(intermediate\.dense|layer\.\d+\.output\.dense)$/.test(n));
  const guess: PeftBase = !hf ? 'timm' : vitmae ? 'hf-vitmae' : 'hf-dinov2';
  const kind = opts.base ?? guess;
  const prefix = opts.prefix ?? (names.some((n) => n.startsWith('dinov2.')) ? 'dinov2.' : names.some((n) => n.startsWith('vit.')) ? 'vit.' : '');
  const rsl = cfg.use_rslora === true;
  const r0 = Number(cfg.r ?? 8);
  const a0 = Number(cfg.lora_alpha ?? 8);
  const dropout = Number(cfg.lora_dropout ?? 0);
  // group by kit site
  const sites = new Map<string, { slices: Map<string, { A: SafeTensor; B: SafeTensor }>; rank: number; scale: number; module: string }>();
  for (const [name, { A, B }] of byModule) {
    if (!A || !B) throw new Error(`${dir}: module '${name}' has lora_${A ? 'B' : 'A'} missing`);
    const rank = patternValue(cfg.rank_pattern as Record<string, number>, name) ?? r0;
    const alpha = patternValue(cfg.alpha_pattern as Record<string, number>, name) ?? a0;
    if (A.shape.length !== 2 || B.shape.length !== 2 || A.shape[0] !== rank || B.shape[1] !== rank) {
      throw new Error(`${dir}: module '${name}' has lora_A [${A.shape}] and lora_B [${B.shape}] but rank ${rank} from the config`);
    }
    const scale = rsl ? alpha / Math.sqrt(rank) : alpha / rank;
    const { site, slice } = kitSite(kind, name, prefix);
    const e = sites.get(site) ?? { slices: new Map(), rank, scale, module: name };
    if (e.rank !== rank || e.scale !== scale) throw new Error(`${dir}: '${name}' and '${e.module}' (both kit site '${site}') differ in rank or scale; the kit's qkv adapter has one of each`);
    e.slices.set(slice, { A, B });
    sites.set(site, e);
  }
  const targets: LoraTarget[] = [...sites].map(([site, e]) => {
    const sl = [...e.slices.keys()];
    const exact = new RegExp(`^${site.replace(/\./g, '\\.')}$`);
    return sl[0] === ''
      ? { sites: exact, kind: 'linear' as const, rank: e.rank, scaling: e.scale, dropout }
      : { sites: exact, kind: 'qkv' as const, slices: sl as Array<'q' | 'k' | 'v'>, rank: e.rank, scaling: e.scale, dropout };
  });
  const adapters = createLora(base, { rank: r0, alpha: a0, dropout, targets }, { seed: opts.seed ?? 0 });
  try {
    for (const [site, m] of adapters.modules) {
      const e = sites.get(site)!;
      for (const s of m.slices) {
        const { A, B } = e.slices.get(s.name)!;
        const where = `${dir}: '${site}${s.name ? ` (${s.name})` : ''}'`;
        if (A.shape[1] !== m.din || B.shape[0] !== s.width) throw new Error(`${where}: lora_A [${A.shape}] / lora_B [${B.shape}] do not fit the kit weight (in ${m.din}, out ${s.width})`);
        tf.tidy(() => {
          s.A.assign(tf.tensor2d(A.data as Float32Array, A.shape as [number, number]).transpose()); // [r, in] → [in, r]
          s.B.assign(tf.tensor2d(B.data as Float32Array, B.shape as [number, number]).transpose()); // [out, r] → [r, out]
        });
      }
    }
  } catch (e) {
    disposeLora(adapters);
    throw e;
  }
  return { adapters, config: cfg, notes };
}
