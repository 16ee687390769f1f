/**
 * Replace stock kernels of the wasm backend with the kit's faster ones, and put them back.
 *
 * `replaceWasmKernel(name, func)` keeps the stock kernel config the first time and registers `func` for 'wasm';
 * `restoreWasmKernels()` re-registers every stock config (used by `setFastOps(false)`, so the plain path really is
 * stock tfjs). Only the 'wasm' registrations are touched.
 */
import * as tf from '@tensorflow/tfjs';

const stock = new Map<string, tf.KernelConfig>();
const ours = new Map<string, tf.KernelFunc>();

/** Register `func` as the wasm kernel `name` (idempotent), remembering the stock config. */
export function replaceWasmKernel(name: string, func: tf.KernelFunc): void {
  const cur = tf.getKernel(name, 'wasm');
  if (cur && cur.kernelFunc === func) return;
  if (cur) {
    if (!stock.has(name) && cur.kernelFunc !== ours.get(name)) stock.set(name, cur);
    tf.unregisterKernel(name, 'wasm');
  }
  ours.set(name, func);
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc: func });
}

/** Put every replaced wasm kernel's stock config back. */
export function restoreWasmKernels(): void {
  for (const [name, cfg] of stock) {
    const cur = tf.getKernel(name, 'wasm');
    if (cur && cur.kernelFunc === ours.get(name)) {
      tf.unregisterKernel(name, 'wasm');
      tf.registerKernel(cfg);
    }
  }
}

/** Whether the wasm kernel `name` is currently the kit's replacement. */
export function isReplaced(name: string): boolean {
  const cur = tf.getKernel(name, 'wasm');
  return !!cur && cur.kernelFunc === ours.get(name);
}
