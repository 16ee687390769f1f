/**
 * Replacements for the wasm backend's `Slice`, `SplitV` and `Identity` kernels that copy only what they must.
 *
 * The stock tfjs-backend-wasm 4.22 `Slice` first copies the whole input out of the heap (`readSync`) and then slices
 * the copy, so `tf.split(x, 3)` reads x three times over plus a full copy each time, and the gradient of `tf.concat`
 * (a SplitV) costs as much as several copies of the concatenated tensor. These kernels copy rows straight between
 * heap regions (`copyWithin`, a native memmove). Strings fall back to the stock kernels.
 *
 * `Identity` (what `tf.clone` runs, and the engine clones every tensor it saves for a gradient) copies the data on
 * stock wasm, doubling the memory of everything a training step keeps for its backward; here it shares the data with
 * a reference count, exactly like the stock wasm `Reshape` and the cpu backend's `Identity` (tensor data is immutable:
 * no kernel writes into its inputs, `Variable.assign` swaps the data id).
 */
import * as tf from '@tensorflow/tfjs';
import { Heap } from './wasm-heap';
import { replaceWasmKernel } from './wasm-replace';

type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs?: tf.NamedAttrMap };

function bytesPer(dtype: tf.DataType): number {
  if (dtype === 'float32' || dtype === 'int32') return 4;
  if (dtype === 'bool') return 1;
  throw new Error(`wasm slice: unsupported dtype ${dtype}`);
}

/** Copy the box [begin, begin + size) of x (shape `shape`) into the contiguous region at byte offset `dst`. */
function copyBox(heap: Heap, x: tf.TensorInfo, shape: number[], begin: number[], size: number[], dst: number): void {
  const bpe = bytesPer(x.dtype);
  const rank = shape.length;
  const n = size.reduce((a, b) => a * b, 1);
  if (n === 0) return;
  const src = heap.offset(x);
  const H = heap.be.wasm.HEAPU8;
  if (rank === 0) {
    H.copyWithin(dst, src, src + bpe);
    return;
  }
  // merge trailing dims that are taken whole into one contiguous row
  let inner = rank - 1;
  let rowLen = size[rank - 1];
  while (inner > 0 && size[inner] === shape[inner] && begin[inner] === 0) {
    inner--;
    rowLen *= size[inner];
  }
  // strides (elements) of x
  const strides = new Array<number>(rank);
  strides[rank - 1] = 1;
  for (let d = rank - 2; d >= 0; d--) strides[d] = strides[d + 1] * shape[d + 1];
  let base = 0;
  for (let d = 0; d < rank; d++) base += begin[d] * strides[d];
  const rowBytes = rowLen * bpe;
  const rows = n / rowLen;
  if (rows === 1) {
    H.copyWithin(dst, src + base * bpe, src + base * bpe + rowBytes);
    return;
  }
  // iterate over the outer index space [0, inner) of the box
  const idx = new Array<number>(inner).fill(0);
  let out = dst;
  for (let r = 0; r < rows; r++) {
    let off = base;
    for (let d = 0; d < inner; d++) off += idx[d] * strides[d];
    H.copyWithin(out, src + off * bpe, src + off * bpe + rowBytes);
    out += rowBytes;
    for (let d = inner - 1; d >= 0; d--) {
      if (++idx[d] < size[d]) break;
      idx[d] = 0;
    }
  }
}

let stockSlice: tf.KernelFunc | null = null;
let stockSplit: tf.KernelFunc | null = null;
let stockIdentity: tf.KernelFunc | null = null;

export function identityWasm(args: KernelArgs): tf.TensorInfo {
  const x = args.inputs.x as tf.TensorInfo;
  if (x.dtype === 'string' || x.dtype === 'complex64') return stockIdentity!(args as never) as tf.TensorInfo;
  (args.backend as { incRef(dataId: unknown): void }).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

export function sliceWasm(args: KernelArgs): tf.TensorInfo {
  const x = args.inputs.x as tf.TensorInfo;
  if (x.dtype === 'string' || x.dtype === 'complex64') return stockSlice!(args as never) as tf.TensorInfo;
  const { begin, size } = args.attrs as { begin: number | number[]; size: number | number[] };
  const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
  tf.slice_util.assertParamsValid(x as tf.Tensor, b, s);
  const heap = new Heap(args.backend);
  const out = heap.output(s, x.dtype);
  copyBox(heap, x, x.shape, b, s, heap.offset(out));
  return out;
}

export function splitVWasm(args: KernelArgs): tf.TensorInfo[] {
  const x = args.inputs.x as tf.TensorInfo;
  if (x.dtype === 'string' || x.dtype === 'complex64') return stockSplit!(args as never) as tf.TensorInfo[];
  const { numOrSizeSplits, axis } = args.attrs as { numOrSizeSplits: number | number[]; axis: number };
  const ax = tf.util.parseAxisParam(axis, x.shape)[0];
  const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, numOrSizeSplits, ax);
  const heap = new Heap(args.backend);
  const begin = new Array<number>(x.shape.length).fill(0);
  const outs: tf.TensorInfo[] = [];
  for (const sz of sizes) {
    const size = x.shape.slice();
    size[ax] = sz;
    const out = heap.output(size, x.dtype);
    copyBox(heap, x, x.shape, begin, size, heap.offset(out));
    outs.push(out);
    begin[ax] += sz;
  }
  return outs;
}

/** Install the replacements for 'wasm' (idempotent). */
export function installSlice(): void {
  const s = tf.getKernel('Slice', 'wasm');
  if (s && s.kernelFunc !== (sliceWasm as unknown)) stockSlice = s.kernelFunc;
  const v = tf.getKernel('SplitV', 'wasm');
  if (v && v.kernelFunc !== (splitVWasm as unknown)) stockSplit = v.kernelFunc;
  const c = tf.getKernel('Identity', 'wasm');
  if (c && c.kernelFunc !== (identityWasm as unknown)) stockIdentity = c.kernelFunc;
  if (stockSlice) replaceWasmKernel('Slice', sliceWasm as unknown as tf.KernelFunc);
  if (stockIdentity) replaceWasmKernel('Identity', identityWasm as unknown as tf.KernelFunc);
  if (stockSplit) replaceWasmKernel('SplitV', splitVWasm as unknown as tf.KernelFunc);
}
