/**
 * ExPLoRA's released checkpoints ↔ the kit (samar-khanna/ExPLoRA).
 *
 * Confirmed from the official repository (`linprobe/util/misc.py` `load_pretrained_weights`, `linprobe/eval_setup.py`,
 * `linprobe/configs/fmow_vitl14.yaml`, `scripts/linprobe.sh`): the encoder-only files
 * (`explora_dinov2_vit_large_fmow_rgb_encoder_only.pth`) hold the weights under `model`; the full files
 * (`explora_dinov2_vit_large_fmow_rgb.pth`) under `teacher`, and the official loader removes every `module.` and
 * `backbone.` and loads the rest with `strict=False` into a plain DINOv2 ViT with a **fused** `attn.qkv`: the fused,
 * merged qkv is what the released weights mean, so it is what this map loads.
 *
 * UNCONFIRMED (the training code — `dinov2/`, `mae/`, its LoRA layers — is not in the official repository as read):
 * the spelling of the split attention modules (`attn.q_proj` / `k_proj` / `v_proj`, from the README's description)
 * and of the LoRA factors in them (`lora_A` [r, in] / `lora_B` [out, r], with or without `.weight`). Both are
 * options (`projNames`, `loraNames`), and the map handles what it finds:
 * - fused qkv and split projections both present → the split ones are checked to be the qkv rows (Q, K, V), bitwise;
 *   a mismatch is an error naming the keys (choose `qkvFrom: 'proj'` or `'qkv'` to load anyway);
 * - only split projections → the fused qkv is built from them (cat of Q, K, V rows, as ExPLoRA rebuilds it);
 * - LoRA factors → returned in `extras` under the kit's adapter names (`blocks.i.attn.qkv.lora_A.q.weight`, torch
 *   layout) and reported as ignored: the README says released adapters are already merged into the weights.
 * The rest (DINOv2 training prefixes, chunked blocks, heads; MAE/SatMAE names) is handled like dinov2 / mae maps.
 */
import type { SafeTensor } from '../safetensors';
import { KeyMap, MapBuilder, Mapped, concat0, rows0, sameTensor } from './common';
import { dinov2KeyMap, Dinov2MapOptions } from './dinov2';

export interface ExploraMapOptions extends Dinov2MapOptions {
  /** Names of the split attention projections (UNCONFIRMED spelling; default q_proj / k_proj / v_proj). */
  projNames?: { q: string; k: string; v: string };
  /** Names of the LoRA factors inside a projection (UNCONFIRMED; default ['lora_A', 'lora_B']). */
  loraNames?: [string, string];
  /** When both a fused qkv and split projections exist and disagree, which to load (default: error). */
  qkvFrom?: 'qkv' | 'proj';
  /** fromKit: also write split `q_proj` / `k_proj` / `v_proj` copies next to the fused qkv (the full-file layout). */
  writeProj?: boolean;
}

const ATTN = /^(.*\battn)\.([^.]+)\.(weight|bias)$/;

export const exploraKeyMap: KeyMap<ExploraMapOptions> = {
  name: 'explora',
  reference: 'samar-khanna/ExPLoRA linprobe/util/misc.py (load_pretrained_weights), linprobe/configs/fmow_vitl14.yaml',
  toKit(src: ReadonlyMap<string, SafeTensor>, opts: ExploraMapOptions = {}): Mapped {
    const names = opts.projNames ?? { q: 'q_proj', k: 'k_proj', v: 'v_proj' };
    const [la, lb] = opts.loraNames ?? ['lora_A', 'lora_B'];
    const slice: Record<string, 'q' | 'k' | 'v'> = { [names.q]: 'q', [names.k]: 'k', [names.v]: 'v' };
    // 1. pull LoRA factors and split projections aside; the rest goes through the DINOv2 map (prefixes, chunks, heads)
    const rest = new Map<string, SafeTensor>();
    const lora: Array<[string, string, 'A' | 'B', 'q' | 'k' | 'v']> = []; // [source key, attn prefix, A/B, slice]
    const proj = new Map<string, Map<'q' | 'k' | 'v', Map<'weight' | 'bias', string>>>(); // attn prefix → slice → param → key
    for (const k of src.keys()) {
      const lm = new RegExp(`^(.*\\battn)\\.([^.]+)\\.(${la}|${lb})(\\.weight)?$`).exec(k);
      if (lm && lm[2] in slice) {
        lora.push([k, lm[1], lm[3] === la ? 'A' : 'B', slice[lm[2]]]);
        continue;
      }
      const pm = ATTN.exec(k);
      if (pm && pm[2] in slice) {
        const bySlice = proj.get(pm[1]) ?? new Map();
        const byParam = bySlice.get(slice[pm[2]]) ?? new Map();
        byParam.set(pm[3] as 'weight' | 'bias', k);
        bySlice.set(slice[pm[2]], byParam);
        proj.set(pm[1], bySlice);
        continue;
      }
      rest.set(k, src.get(k)!);
    }
    const inner = dinov2KeyMap.toKit(rest, opts);
    const b = new MapBuilder(src, 'ExPLoRA checkpoint');
    for (const r of inner.rows) {
      if (r.target) b.put(r.target, inner.tensors.get(r.target)!, r.sources, r.status, r.note);
      else b.skip(r.sources[0], r.status as 'ignored' | 'unexpected', r.note ?? '');
    }
    // kit name of an attention prefix: run a fake key through the DINOv2 map's prefix/chunk handling
    const kitAttn = (attn: string): string | null => {
      const probe = dinov2KeyMap.toKit(new Map([[`${attn}.qkv.weight`, { dtype: 'F32', shape: [0], data: new Float32Array(0) }]]), opts);
      const t = probe.rows[0];
      return t.target ? t.target.slice(0, -'.qkv.weight'.length) : null;
    };
    // 2. split projections: check against the fused qkv, or build it
    let checked = 0;
    let built = 0;
    for (const [attn, bySlice] of proj) {
      const ka = kitAttn(attn);
      if (ka === null) {
        for (const m of bySlice.values()) for (const key of m.values()) b.skip(key, 'ignored', `other part (part '${opts.part ?? 'teacher'}' selected)`);
        continue;
      }
      for (const param of ['weight', 'bias'] as const) {
        const keys = (['q', 'k', 'v'] as const).map((s) => bySlice.get(s)?.get(param));
        if (keys.every((x) => x === undefined)) continue;
        if (keys.some((x) => x === undefined)) {
          throw new Error(`ExPLoRA checkpoint: ${attn} has only some of ${names.q}/${names.k}/${names.v}.${param} (${keys.filter(Boolean).join(', ')})`);
        }
        const parts = keys.map((x) => src.get(x!)!);
        const target = `${ka}.qkv.${param}`;
        const fused = b.tensors.get(target);
        if (fused) {
          const D = parts[0].shape[0];
          const agree = parts.every((p, i) => sameTensor(p, rows0(fused, i * D, D)));
          if (!agree && opts.qkvFrom !== 'qkv') {
            if (opts.qkvFrom !== 'proj') {
              throw new Error(`ExPLoRA checkpoint: '${keys.join("', '")}' differ from the rows of the fused '${target}' (pass qkvFrom: 'qkv' or 'proj' to choose)`);
            }
            b.tensors.set(target, concat0(parts, target));
            for (const x of keys) b.skip(x!, 'checked', `differs from the fused qkv; loaded instead of it (qkvFrom: 'proj')`);
            continue;
          }
          for (const x of keys) b.skip(x!, 'checked', agree ? `equals its rows of the fused '${target}'` : `differs from the fused qkv; ignored (qkvFrom: 'qkv')`);
          checked++;
        } else {
          b.put(target, concat0(parts, target), keys as string[], 'converted', `fused from ${names.q}/${names.k}/${names.v} (Q, K, V rows)`);
          built++;
        }
      }
    }
    // 3. LoRA factors → extras in the kit's adapter names (torch layout: A [r, in], B [out, r])
    const extras = new Map<string, SafeTensor>();
    for (const [key, attn, ab, s] of lora) {
      const ka = kitAttn(attn);
      if (ka === null) {
        b.skip(key, 'ignored', `other part (part '${opts.part ?? 'teacher'}' selected)`);
        continue;
      }
      extras.set(`${ka}.qkv.lora_${ab}.${s}.weight`, src.get(key)!);
      b.skip(key, 'ignored', `LoRA ${ab} of the ${s} slice: already merged into the weights (returned in extras as '${ka}.qkv.lora_${ab}.${s}.weight')`);
    }
    return b.finish({ extras, info: { ...inner.info, splitProjectionsChecked: checked, qkvBuiltFromSplit: built, loraFactors: lora.length } });
  },
  fromKit(kit: ReadonlyMap<string, SafeTensor>, opts: ExploraMapOptions = {}): Map<string, SafeTensor> {
    const out = dinov2KeyMap.fromKit(kit, opts);
    if (!opts.writeProj) return out;
    const names = opts.projNames ?? { q: 'q_proj', k: 'k_proj', v: 'v_proj' };
    for (const [k, t] of [...out]) {
      const m = /^(.*\battn)\.qkv\.(weight|bias)$/.exec(k);
      if (!m) continue;
      const D = t.shape[0] / 3;
      (['q', 'k', 'v'] as const).forEach((s, i) => out.set(`${m[1]}.${names[s]}.${m[2]}`, rows0(t, i * D, D)));
    }
    return out;
  },
};
