/**
 * The segmentation sources of a recipe: SpaceNet-v1 building chips, from the real `SN1_buildings` folder
 * (`spacenet1`) or the kit's embedded building domain (`embedded` / 'buildings', the same layout generated from a
 * seed). Splits:
 *
 * - `train`, `val`, `test`: chips with their rasterised building masks (`Sample.mask`, 0 background / 1 building);
 * - `pretrain`: the `train` chips **without** masks — the unlabelled target-domain images an extended (ExPLoRA)
 *   pre-training reads; their masks are never loaded.
 *
 * The real SpaceNet-v1 has no official split (SatMAE issue #8: 5,000 train / 1,940 test, ids not published): a chip
 * goes to `test` when `u < testFraction` with u = fmix32(hash32('spacenet1-split', id)) / 2^32 (FNV-1a alone
 * spreads consecutive ids badly: 40 ids gave no `val` chip; MurmurHash3's finaliser mixes it), to `val` below `testFraction +
 * valFraction`, else to `train` — stable under adding or removing other chips. The embedded domain keeps its own
 * split by id (60 / 20 / 20 %).
 */
import { hash32 } from '../lib/rng';
import { Dataset, Sample, filterDataset } from '../data-loaders/dataset';
import { makeImg } from '../data-loaders/image';
import { loadEmbeddedBuildings } from '../data-loaders/embedded-beyond';
import { spacenet1 } from '../data-loaders/formats/spacenet';
import { RecipeError } from './schema';
import type { SourceSpec } from './recipe';

/** The split names of a building source. */
export const BUILDING_SPLITS = ['pretrain', 'train', 'val', 'test'] as const;

type BuildingSource = Extract<SourceSpec, { kind: 'spacenet1' }> | (Extract<SourceSpec, { kind: 'embedded' }> & { domain: 'buildings' });

/** Whether a source spec is a building (segmentation) source. */
export function isBuildingSource(s: SourceSpec): s is BuildingSource {
  return s.kind === 'spacenet1' || (s.kind === 'embedded' && s.domain === 'buildings');
}

/** The split of a SpaceNet image id by the hash rule above. */
export function spacenetSplitOf(id: number, valFraction: number, testFraction: number): 'train' | 'val' | 'test' {
  let h = hash32('spacenet1-split', id);
  h ^= h >>> 16; // MurmurHash3 fmix32
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  const u = (h >>> 0) / 2 ** 32;
  return u < testFraction ? 'test' : u < testFraction + valFraction ? 'val' : 'train';
}

/** A dataset's samples without their masks (and without reading the label files). */
export function withoutMasks(ds: Dataset, name: string): Dataset {
  return {
    name,
    length: ds.length,
    classes: ds.classes,
    info: (i) => {
      const { extraPaths: _e, ...inf } = ds.info(i);
      return inf;
    },
    get: async (i, rng) => {
      const { mask: _m, ...s } = await ds.get(i, rng);
      return s as Sample;
    },
  };
}

/**
 * The 3-band product is 8-bit RGB, and GeoTIFFs decode to raw sample values (0…255): scaled by 1/255 to [0, 1] here,
 * as PIL + ToTensor would give, so the named normalisations (ImageNet statistics in [0, 1] units) apply. A value above
 * 255 is an error naming the file (not an 8-bit product). The 8- and 13-band products stay raw (their own statistics).
 */
export function scaled8bit(ds: Dataset): Dataset {
  return {
    name: ds.name,
    length: ds.length,
    classes: ds.classes,
    info: (i) => ds.info(i),
    get: async (i, rng) => {
      const s = await ds.get(i, rng);
      const im = s.image!;
      const out = makeImg(im.height, im.width, im.channels);
      for (let k = 0; k < im.data.length; k++) {
        const v = im.data[k];
        if (v > 255) throw new Error(`${ds.info(i).path ?? `${ds.name} sample ${i}`}: value ${v} in the 3-band product; expected 8-bit samples (0…255)`);
        out.data[k] = v / 255;
      }
      return { ...s, image: out };
    },
  };
}

/** Open the four splits of a building source (once; the caller caches by split name). */
export function openBuildingSplits(spec: BuildingSource): (name: string) => Promise<Dataset> {
  let all: Promise<Record<'train' | 'val' | 'test', Dataset>> | null = null;
  const load = (): Promise<Record<'train' | 'val' | 'test', Dataset>> =>
    (all ??= (async () => {
      if (spec.kind === 'embedded') {
        const d = await loadEmbeddedBuildings({ seed: spec.seed, size: spec.size, product: spec.product ?? '3band', ...(spec.count ? { chips: spec.count } : {}) });
        const f = (x: Dataset): Dataset => ((spec.product ?? '3band') === '3band' ? scaled8bit(x) : x);
        return { train: f(d.train), val: f(d.val), test: f(d.test) };
      }
      const ds = await spacenet1(spec.root, { split: 'train', image: spec.product, name: `spacenet1-${spec.product}` });
      const part = (s: 'train' | 'val' | 'test'): Dataset =>
        filterDataset(ds, (inf) => spacenetSplitOf((inf.meta as { imageId: number }).imageId, spec.valFraction, spec.testFraction) === s, `spacenet1-${spec.product}-${s}`);
      const f = (x: Dataset): Dataset => (spec.product === '3band' ? scaled8bit(x) : x);
      return { train: f(part('train')), val: f(part('val')), test: f(part('test')) };
    })());
  return async (name) => {
    const d = await load();
    return name === 'pretrain' ? withoutMasks(d.train, `${d.train.name}-pretrain`) : d[name as 'train' | 'val' | 'test'];
  };
}

/** Errors for source options that only the building domain reads. */
export function checkBuildingOptions(spec: SourceSpec): void {
  if (spec.kind === 'embedded' && spec.domain !== 'buildings' && spec.product !== undefined) {
    throw new RecipeError('recipe.data.source.product', `selects the image product of the 'buildings' domain only; '${spec.domain}' has none`);
  }
}
