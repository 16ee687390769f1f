/**
 * A kit model (typically a merged encoder after ExPLoRA: `mergeLora`) written as a Hugging Face transformers model
 * folder — `config.json` + `model.safetensors` — loadable with `Dinov2Model.from_pretrained(dir)` /
 * `ViTMAEModel` / `ViTMAEForPreTraining`: names from the HF key maps (keymaps/hf.ts, the inverse of transformers'
 * conversion scripts), config from io/hf-config.ts. (timm: io/timm.ts `saveTimmCheckpoint`.)
 */
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { ParamTree, flattenTree } from '../tree';
import { kitToTorch } from './checkpoint';
import type { SafeTensor, TensorToWrite } from './safetensors';
import { writeFileAtomic, writeSafetensors } from './safetensors';
import { hfDinov2KeyMap, hfVitMaeKeyMap } from './keymaps/hf';
import { hfConfigFromKit } from './hf-config';
import type { Vit } from '../vit/params';
import { Mae, maeVariables } from '../mae/mae';

/** Kit parameters as torch-layout tensors (what a checkpoint file holds), in tree order. */
export function kitTorchTensors(params: ParamTree | ReadonlyMap<string, tf.Variable>): Map<string, SafeTensor> {
  const vars = params instanceof Map ? (params as ReadonlyMap<string, tf.Variable>) : flattenTree(params as ParamTree);
  const out = new Map<string, SafeTensor>();
  for (const [k, v] of vars) {
    const t = tf.tidy(() => kitToTorch(k, v));
    const d = t.dataSync();
    out.set(k, { dtype: v.dtype === 'int32' ? 'I32' : 'F32', shape: [...t.shape], data: v.dtype === 'int32' ? Int32Array.from(d) : Float32Array.from(d) });
    t.dispose();
  }
  return out;
}

const isMae = (m: Vit | Mae): m is Mae => (m as Mae).decoder !== undefined;

/**
 * The transformers state dict of a kit ViT ('dinov2': Dinov2Model / Dinov2WithRegistersModel, needs LayerScale;
 * 'vit_mae': ViTMAEModel) or MAE (ViTMAEForPreTraining). A head is refused (HF heads read other features).
 */
export function hfStateDict(model: Vit | Mae, kind: 'dinov2' | 'vit_mae'): Map<string, TensorToWrite> {
  const enc = isMae(model) ? model.encoder : model;
  if (enc.params.head) throw new Error('hfStateDict: the model has a head; transformers heads read other features (export the encoder without it)');
  if (enc.config.pool !== 'cls') throw new Error("hfStateDict: transformers Dinov2 / ViTMAE end with a final LayerNorm ('cls' pool); this model uses fc_norm");
  const kit = kitTorchTensors(isMae(model) ? maeVariables(model) : model.params);
  if (kind === 'dinov2' && isMae(model)) throw new Error("hfStateDict: an MAE exports as 'vit_mae'");
  const hf = kind === 'dinov2' ? hfDinov2KeyMap.fromKit(kit) : hfVitMaeKeyMap.fromKit(kit);
  return new Map([...hf].map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: t.data as Float32Array }]));
}

/** Write `config.json` + `model.safetensors` for transformers into `dir` (atomic writes). */
export function saveHfPretrained(dir: string, model: Vit | Mae, kind: 'dinov2' | 'vit_mae'): void {
  const tensors = hfStateDict(model, kind);
  const enc = isMae(model) ? model.encoder : model;
  const config = hfConfigFromKit(enc.config, kind, isMae(model) ? model.config.decoder : undefined);
  fs.mkdirSync(dir, { recursive: true });
  writeSafetensors(path.join(dir, 'model.safetensors'), tensors, { format: 'pt' });
  writeFileAtomic(path.join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
}
