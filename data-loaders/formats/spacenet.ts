/**
 * SpaceNet v1 (buildings, Rio) in torchgeo's layout: `<root>/SN1_buildings/<split>/{3band,8band,geojson}/` with files
 * `3band_AOI_1_RIO_img<id>.tif`, `8band_…`, `Geo_AOI_1_RIO_img<id>.geojson`, paired by the numeric id after `_img`.
 * Building polygons (lon/lat, EPSG:4326 like the rasters) are rasterised to a binary mask on the image grid as
 * rasterio does with `all_touched=False`: a pixel is building iff its centre lies inside a polygon (even–odd rule over
 * the polygon's rings, so holes stay background). An empty GeoJSON file or one without features is an all-zero mask.
 */
import * as path from 'path';
import { writeFileAtomic } from '../../lib/io/atomic';
import { RecordDataset, SampleInfo } from '../dataset';
import { GeoInfo, loadGeoTiff, readFileChecked } from '../decode';
import { Img, makeImg } from '../image';
import { listDir } from './common';

type Ring = number[][];
/** A polygon: outer ring then holes, coordinates [x, y(, z)] in the raster's CRS. */
export type Polygon = Ring[];

/** Polygons of a GeoJSON text (Feature, FeatureCollection, Polygon, MultiPolygon; null geometries skipped). */
export function geojsonPolygons(text: string, source: string): Polygon[] {
  if (text.trim() === '') return [];
  let j: any;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: invalid GeoJSON (${(e as Error).message})`);
  }
  const out: Polygon[] = [];
  const geom = (g: any, where: string): void => {
    if (g === null || g === undefined) return;
    if (g.type === 'Polygon') out.push(checkPolygon(g.coordinates, `${source}: ${where}`));
    else if (g.type === 'MultiPolygon') {
      if (!Array.isArray(g.coordinates)) throw new Error(`${source}: ${where}: MultiPolygon without coordinates`);
      g.coordinates.forEach((p: unknown, k: number) => out.push(checkPolygon(p, `${source}: ${where}[${k}]`)));
    } else if (g.type === 'GeometryCollection') (g.geometries ?? []).forEach((x: any, k: number) => geom(x, `${where}.geometries[${k}]`));
    else if (g.type !== 'Point' && g.type !== 'LineString' && g.type !== 'MultiPoint' && g.type !== 'MultiLineString') {
      throw new Error(`${source}: ${where}: unsupported geometry type '${g.type}'`);
    }
  };
  if (j === null || typeof j !== 'object') throw new Error(`${source}: GeoJSON must be an object, got ${JSON.stringify(j)}`);
  if (j.type === 'FeatureCollection') {
    if (!Array.isArray(j.features)) throw new Error(`${source}: FeatureCollection without a 'features' list`);
    j.features.forEach((f: any, k: number) => {
      if (f?.type !== 'Feature') throw new Error(`${source}: features[${k}] is not a Feature (type ${JSON.stringify(f?.type)})`);
      geom(f.geometry, `features[${k}].geometry`);
    });
  } else if (j.type === 'Feature') geom(j.geometry, 'geometry');
  else if (['Polygon', 'MultiPolygon', 'GeometryCollection', 'Point', 'LineString', 'MultiPoint', 'MultiLineString'].includes(j.type)) geom(j, 'geometry');
  else throw new Error(`${source}: not GeoJSON (type ${JSON.stringify(j.type)}; expected a FeatureCollection, Feature or geometry)`);
  return out;
}

function checkPolygon(p: unknown, where: string): Polygon {
  if (!Array.isArray(p) || p.length === 0) throw new Error(`${where}: polygon must be a list of rings`);
  for (const ring of p) {
    if (!Array.isArray(ring) || !ring.every((pt) => Array.isArray(pt) && pt.length >= 2 && pt.every((v: unknown) => typeof v === 'number' && Number.isFinite(v)))) {
      throw new Error(`${where}: ring must be a list of [x, y] numbers`);
    }
    // a ring needs 3 vertices to enclose anything (RFC 7946 §3.1.6: ≥ 4 positions with the closing one repeated)
    const first = ring[0] as number[];
    const last = ring[ring.length - 1] as number[];
    const closed = ring.length > 1 && first[0] === last[0] && first[1] === last[1];
    if (ring.length - (closed ? 1 : 0) < 3) throw new Error(`${where}: ring of ${ring.length} positions encloses nothing (a polygon ring needs ≥ 3 vertices)`);
  }
  return p as Polygon;
}

/**
 * Rasterise polygons onto an H×W grid whose pixel (r, c) covers world x ∈ origin.x + [c, c+1)·dx, y ∈ origin.y +
 * [r, r+1)·dy. Returns a 1-channel mask with 1 inside buildings.
 */
export function rasterizePolygons(polys: Polygon[], geo: Pick<GeoInfo, 'origin' | 'resolution'>, height: number, width: number): Img {
  const mask = makeImg(height, width, 1);
  const [ox, oy] = geo.origin;
  const [dx, dy] = geo.resolution;
  for (const poly of polys) {
    // edges in pixel coordinates
    const edges: Array<[number, number, number, number]> = [];
    for (const ring of poly) {
      for (let k = 0; k < ring.length; k++) {
        const a = ring[k];
        const b = ring[(k + 1) % ring.length];
        edges.push([(a[0] - ox) / dx, (a[1] - oy) / dy, (b[0] - ox) / dx, (b[1] - oy) / dy]);
      }
    }
    for (let r = 0; r < height; r++) {
      const yc = r + 0.5;
      const xs: number[] = [];
      for (const [x1, y1, x2, y2] of edges) {
        if ((y1 <= yc && yc < y2) || (y2 <= yc && yc < y1)) xs.push(x1 + ((yc - y1) * (x2 - x1)) / (y2 - y1));
      }
      xs.sort((a, b) => a - b);
      for (let k = 0; k + 1 < xs.length; k += 2) {
        const c0 = Math.max(0, Math.ceil(xs[k] - 0.5));
        const c1 = Math.min(width - 1, Math.ceil(xs[k + 1] - 0.5) - 1);
        for (let c = c0; c <= c1; c++) mask.data[r * width + c] = 1;
      }
    }
  }
  return mask;
}

/**
 * A label file whose polygons all lie outside the raster belongs to another chip or another CRS (the mask would be
 * silently empty): an error naming both files, the raster's extent and the labels' bounding box.
 */
export function checkPolygonsOverlap(polys: Polygon[], geo: Pick<GeoInfo, 'origin' | 'resolution'>, height: number, width: number, labelFile: string, imageFile: string): void {
  if (polys.length === 0) return;
  const [ox, oy] = geo.origin;
  const [dx, dy] = geo.resolution;
  const x0 = Math.min(ox, ox + width * dx);
  const x1 = Math.max(ox, ox + width * dx);
  const y0 = Math.min(oy, oy + height * dy);
  const y1 = Math.max(oy, oy + height * dy);
  let bx0 = Infinity;
  let bx1 = -Infinity;
  let by0 = Infinity;
  let by1 = -Infinity;
  let any = false;
  for (const poly of polys) {
    const outer = poly[0];
    let px0 = Infinity;
    let px1 = -Infinity;
    let py0 = Infinity;
    let py1 = -Infinity;
    for (const [x, y] of outer) {
      px0 = Math.min(px0, x);
      px1 = Math.max(px1, x);
      py0 = Math.min(py0, y);
      py1 = Math.max(py1, y);
    }
    bx0 = Math.min(bx0, px0);
    bx1 = Math.max(bx1, px1);
    by0 = Math.min(by0, py0);
    by1 = Math.max(by1, py1);
    if (px1 >= x0 && px0 <= x1 && py1 >= y0 && py0 <= y1) any = true;
  }
  if (!any) {
    const f = (v: number): string => v.toPrecision(8);
    throw new Error(
      `${labelFile}: none of its ${polys.length} polygon(s) overlaps the raster ${imageFile} (raster x ${f(x0)}…${f(x1)}, y ${f(y0)}…${f(y1)}; polygons x ${f(bx0)}…${f(bx1)}, y ${f(by0)}…${f(by1)}): labels of another chip or another CRS?`,
    );
  }
}

/** Numeric image id of a SpaceNet file name (`…_img<id>.…`), or null. */
export function spacenetImageId(file: string): number | null {
  const m = /_img(\d+)\./.exec(path.basename(file));
  return m ? parseInt(m[1], 10) : null;
}

export interface SpaceNet1Options {
  split?: 'train' | 'test';
  /**
   * '3band' (pansharpened RGB, default) or '8band' (multispectral). '13band' is not a SpaceNet product: the kit's
   * embedded building domain also writes 13-band Sentinel-2-like chips (`13band/13band_AOI_1_RIO_img<id>.tif`).
   */
  image?: '3band' | '8band' | '13band';
  name?: string;
}

const SPACENET_BANDS = { '3band': 3, '8band': 8, '13band': 13 } as const;

/** SpaceNet-v1 dataset: raw image bands (3 or 8), `mask` (train split) rasterised from the GeoJSON. */
export async function spacenet1(root: string, opt: SpaceNet1Options = {}): Promise<RecordDataset<SampleInfo & { path: string }>> {
  const split = opt.split ?? 'train';
  const product = opt.image ?? '3band';
  if (!(product in SPACENET_BANDS)) throw new Error(`spacenet1: image must be one of ${Object.keys(SPACENET_BANDS).join(', ')}, got '${String(product)}'`);
  const base = path.join(root, 'SN1_buildings', split);
  const imgDir = path.join(base, product);
  const { files } = await listDir(imgDir, `SpaceNet ${product} folder`);
  const images = files.filter((f) => f.toLowerCase().endsWith('.tif') && spacenetImageId(f) !== null);
  images.sort((a, b) => spacenetImageId(a)! - spacenetImageId(b)!);
  const recs: Array<SampleInfo & { path: string }> = [];
  if (split === 'train') {
    const geoDir = path.join(base, 'geojson');
    const masks = (await listDir(geoDir, 'SpaceNet geojson folder')).files.filter((f) => f.endsWith('.geojson'));
    const byId = new Map<number, string>();
    for (const m of masks) {
      const id = spacenetImageId(m);
      if (id !== null) byId.set(id, path.join(geoDir, m));
    }
    for (const f of images) {
      const id = spacenetImageId(f)!;
      const m = byId.get(id);
      if (m) recs.push({ path: path.join(imgDir, f), extraPaths: [m], meta: { imageId: id } });
    }
  } else {
    for (const f of images) recs.push({ path: path.join(imgDir, f), meta: { imageId: spacenetImageId(f) } });
  }
  const bands = SPACENET_BANDS[product];
  return new RecordDataset(
    opt.name ?? `spacenet1-${split}-${product}`,
    recs,
    async (r) => {
      const { img, geo } = await loadGeoTiff(r.path, { bands });
      if (!r.extraPaths) return { image: img, meta: r.meta, path: r.path };
      if (!geo) throw new Error(`${r.path}: no georeferencing, cannot rasterise ${r.extraPaths[0]}`);
      if (geo.epsg !== null && geo.epsg !== 4326) {
        throw new Error(`${r.path}: CRS EPSG:${geo.epsg}; the GeoJSON labels are lon/lat (EPSG:4326) and reprojection is not supported`);
      }
      const text = (await readFileChecked(r.extraPaths[0], 'SpaceNet GeoJSON')).toString('utf8');
      const polys = geojsonPolygons(text, r.extraPaths[0]);
      checkPolygonsOverlap(polys, geo, img.height, img.width, r.extraPaths[0], r.path);
      const mask = rasterizePolygons(polys, geo, img.height, img.width);
      return { image: img, mask, meta: r.meta, path: r.path };
    },
    undefined,
    imgDir,
  );
}

/** Write a GeoJSON FeatureCollection of polygons (tests and fixtures). */
export async function writeGeojson(file: string, polys: Polygon[]): Promise<void> {
  const fc = {
    type: 'FeatureCollection',
    features: polys.map((p, k) => ({ type: 'Feature', properties: { id: k }, geometry: { type: 'Polygon', coordinates: p } })),
  };
  writeFileAtomic(file, JSON.stringify(fc));
}
