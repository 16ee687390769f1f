/**
 * Decode limits: how large one image may be, and how much memory the decodes in flight may take together.
 *
 * Every decode reads the image header first and checks, before anything large is allocated:
 * - `maxPixels` (H × W, default 178,956,970): Pillow's DecompressionBombError threshold. The papers' reference loaders
 *   (SatMAE/ExPLoRA, torchvision ImageFolder) open images through Pillow, so an image they can train on with Pillow's
 *   default is below it (large fMoW-RGB frames included); a 4000² 13-band GeoTIFF (16 M pixels) passes this check on
 *   purpose.
 * - `maxExpansion` (default 1000): a decode of more than 64 MiB that is over 1000× its file size is refused as a
 *   decompression bomb (e.g. a 136 KB deflate GeoTIFF claiming 4000² × 13 float samples: 12,000×). Real imagery
 *   compresses ~2–20× (JPEG, PNG, deflate rasters); large flat synthetic images are the case to raise it for.
 * - `memoryBudget` (default 4 GiB): the estimated peak memory of all decodes in flight in this process (file bytes +
 *   decoder output + the float32 image). Loaders run up to 8 decodes at once; when they would exceed the budget, the
 *   later ones wait. One image needing more than the whole budget is an error.
 * Errors name the file, its size and the limit to raise (`setDecodeLimits` for the process, or `DecodeOptions` per
 * call).
 */

/** See the module comment. */
export interface DecodeLimits {
  maxPixels: number;
  maxExpansion: number;
  memoryBudget: number;
}

/** Pillow's `Image.MAX_IMAGE_PIXELS` × 2: above this Pillow raises DecompressionBombError. */
export const PILLOW_MAX_PIXELS = 2 * 89_478_485;

const DEFAULTS: DecodeLimits = { maxPixels: PILLOW_MAX_PIXELS, maxExpansion: 1000, memoryBudget: 4 * 2 ** 30 };
/** Decodes smaller than this are never refused for their expansion ratio. */
const EXPANSION_FLOOR = 64 * 2 ** 20;

let limits: DecodeLimits = { ...DEFAULTS };

const fmtBytes = (b: number): string => (b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`);

function checkLimit(k: keyof DecodeLimits, v: unknown): void {
  if (typeof v !== 'number' || !(v > 0)) throw new Error(`setDecodeLimits: ${k} must be a number > 0 (Infinity allowed), got ${JSON.stringify(v) ?? String(v)}`);
}

/** Change the process-wide decode limits (missing keys keep their value); returns the previous limits. */
export function setDecodeLimits(l: Partial<DecodeLimits>): DecodeLimits {
  const prev = { ...limits };
  for (const [k, v] of Object.entries(l)) {
    if (!(k in DEFAULTS)) throw new Error(`setDecodeLimits: unknown key '${k}'; valid keys: ${Object.keys(DEFAULTS).join(', ')}`);
    checkLimit(k as keyof DecodeLimits, v);
  }
  limits = { ...limits, ...l };
  return prev;
}

/** The current process-wide decode limits. */
export function decodeLimits(): DecodeLimits {
  return { ...limits };
}

/** What a decode is about to produce, read from the header. */
export interface DecodePlan {
  height: number;
  width: number;
  /** Channels of the decoded image. */
  channels: number;
  /** Bytes per sample of the decoder's output (1 for 8-bit, 2 for 16-bit, 4 for 32-bit...). */
  bytesPerSample: number;
  /** Size of the encoded file. */
  fileBytes: number;
}

/** Estimated peak bytes of a decode: file + decoder output + float32 image. */
export function decodeBytes(p: DecodePlan): number {
  return p.fileBytes + p.height * p.width * p.channels * (p.bytesPerSample + 4);
}

/** A decode refused by a limit (kept apart from decoder errors so its message reaches the caller unwrapped). */
export class DecodeLimitError extends Error {}

/** Throw (naming `source`) if the decode of `p` breaks a limit; `over` holds per-call overrides. */
export function checkDecodePlan(p: DecodePlan, source: string, over: Partial<Pick<DecodeLimits, 'maxPixels' | 'maxExpansion'>> = {}): void {
  const maxPixels = over.maxPixels ?? limits.maxPixels;
  const maxExpansion = over.maxExpansion ?? limits.maxExpansion;
  const shape = `${p.height}×${p.width}×${p.channels}`;
  if (!(p.height > 0 && p.width > 0 && p.channels > 0)) throw new DecodeLimitError(`${source}: image header declares an empty image (${shape})`);
  const pixels = p.height * p.width;
  if (pixels > maxPixels) {
    throw new DecodeLimitError(
      `${source}: ${p.height}×${p.width} = ${pixels.toLocaleString('en')} pixels is over the limit of ${maxPixels.toLocaleString('en')} (maxPixels; raise it with setDecodeLimits or DecodeOptions if the image is genuine)`,
    );
  }
  const out = p.height * p.width * p.channels * p.bytesPerSample;
  if (out > EXPANSION_FLOOR && out > maxExpansion * p.fileBytes) {
    throw new DecodeLimitError(
      `${source}: a ${p.fileBytes.toLocaleString('en')}-byte file declares ${shape} samples (${fmtBytes(out)} decoded, ${Math.round(out / p.fileBytes)}× its size): refused as a decompression bomb (maxExpansion ${maxExpansion}; raise it with setDecodeLimits or DecodeOptions if the image is genuine)`,
    );
  }
  const need = decodeBytes(p);
  if (need > limits.memoryBudget) {
    throw new DecodeLimitError(
      `${source}: decoding ${shape} needs ≈ ${fmtBytes(need)}, more than the decode memory budget of ${fmtBytes(limits.memoryBudget)} (setDecodeLimits({memoryBudget}))`,
    );
  }
}

// ------------------------------------------------------------------------------------------------------------------
// The memory budget of the decodes in flight (FIFO, so a large decode is not starved by small ones).

let inUse = 0;
let highWater = 0;
const queue: Array<{ bytes: number; go: () => void }> = [];

function pump(): void {
  // (the head also runs when nothing is in flight, so lowering the budget while decodes wait cannot stall them)
  while (queue.length && (inUse + queue[0].bytes <= limits.memoryBudget || inUse === 0)) {
    const q = queue.shift()!;
    inUse += q.bytes;
    highWater = Math.max(highWater, inUse);
    q.go();
  }
}

/**
 * Run `fn` holding `bytes` of the decode memory budget (waits for room first). The plan must have passed
 * `checkDecodePlan`, so `bytes` ≤ the budget and the wait ends.
 */
export async function withDecodeMemory<T>(bytes: number, fn: () => Promise<T>): Promise<T> {
  await new Promise<void>((go) => {
    queue.push({ bytes, go });
    pump();
  });
  try {
    return await fn();
  } finally {
    inUse -= bytes;
    pump();
  }
}

/** Bytes held by decodes in flight now, and the most held at once since the last reset (tests, benchmarks). */
export function decodeMemoryStats(reset = false): { inUse: number; highWater: number } {
  const s = { inUse, highWater };
  if (reset) highWater = inUse;
  return s;
}
