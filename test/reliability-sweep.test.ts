/**
 * Issue 19 sweep: bad inputs to every loader and to the public entry points that take a path, a config or a tensor.
 * Each must fail with an error that names the thing (file, line, key, value, shape) — never succeed silently, never
 * crash with a message from deep inside a library, never leak tensors. The kinds and counts are printed at the end and
 * quoted in the README's "Reliability" section. Issue-specific cases live in reliability-{atomic,decode,data,config,ci}.
 */
import * as tf from '@tensorflow/tfjs';
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as L from '../lib/index';
import * as R from '../lib/report/index';
import * as D from '../data-loaders/index';

type Case = { kind: 'path' | 'config' | 'tensor'; name: string; run: () => unknown; error: RegExp };

let tmp = '';
let png = '';
let jpg = '';
let tif = '';
let ck = '';
let vit: L.Vit;
const p = (...a: string[]): string => path.join(tmp, ...a);
/** Write a file (folders created) and return its path. */
const w = (rel: string, s: string | Buffer): string => {
  fs.mkdirSync(path.dirname(p(rel)), { recursive: true });
  fs.writeFileSync(p(rel), s);
  return p(rel);
};
/** A safetensors buffer with a hand-written header. */
const st = (header: unknown, data = Buffer.alloc(0)): Buffer => {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const n = Buffer.alloc(8);
  n.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([n, h, data]);
};
const ds = (): D.RecordDataset<D.SampleInfo> =>
  new D.RecordDataset<D.SampleInfo>('sweep', [{ path: png, label: 0 }, { path: p('nope.png'), label: 1 }], async (r) => ({ image: await D.loadImage(r.path!), label: r.label }));
const feats = (f?: Float32Array): L.FeatureCache => L.featureCache(f ?? new Float32Array(8).fill(1), new Float32Array(8), Int32Array.from([0, 1, 0, 1]), 1, 2);
const withFeats = (fn: (c: L.FeatureCache) => unknown, f?: Float32Array) => (): unknown => {
  const c = feats(f);
  try {
    return fn(c);
  } finally {
    L.disposeFeatures(c);
  }
};
const x32 = (fn: (x: tf.Tensor4D) => unknown) => (): unknown => tf.tidy(() => fn(tf.zeros([1, 32, 32, 3]) as tf.Tensor4D) as tf.Tensor);
const mae = (o: Record<string, unknown>) => (): unknown =>
  L.createMae('mae_vit_base_patch16', { encoder: { imgSize: 32, depth: 1, embedDim: 16, numHeads: 2 }, decoder: { embedDim: 8, depth: 1, numHeads: 1 }, ...o } as never);
const csvRow = (rel: string, text: string) => (): unknown => D.readCsv(w(rel, text));

const cases: Case[] = [
  // ---- image files
  { kind: 'path', name: 'loadImage: missing file', run: () => D.loadImage(p('nope.png')), error: /missing image: .*nope\.png/ },
  { kind: 'path', name: 'loadImage: a folder', run: () => D.loadImage(tmp), error: /cannot read image .*EISDIR/ },
  { kind: 'path', name: 'loadImage: empty file', run: () => D.loadImage(w('e.png', '')), error: /e\.png: empty file/ },
  { kind: 'path', name: 'loadImage: text named .png', run: () => D.loadImage(w('t.png', 'hello')), error: /t\.png: cannot decode image \(.*unsupported image format/ },
  { kind: 'path', name: 'loadImage: PNG cut after 40 bytes', run: () => D.loadImage(w('tr.png', fs.readFileSync(png).subarray(0, 40))), error: /tr\.png: cannot decode image/ },
  { kind: 'path', name: 'loadImage: JPEG cut after 100 bytes', run: () => D.loadImage(w('tr.jpg', fs.readFileSync(jpg).subarray(0, 100))), error: /tr\.jpg: cannot decode image \(.*premature end/ },
  { kind: 'path', name: 'loadImage: PNG named .tif', run: () => D.loadImage(w('p.tif', fs.readFileSync(png))), error: /p\.tif: cannot decode GeoTIFF/ },
  { kind: 'path', name: 'loadImage: TIFF cut after 300 bytes', run: () => D.loadImage(w('tr.tif', fs.readFileSync(tif).subarray(0, 300))), error: /tr\.tif: (cannot decode GeoTIFF|truncated TIFF)/ },
  { kind: 'path', name: 'loadImage: 13 bands where 12 expected', run: () => D.loadImage(tif, { bands: 12 }), error: /a\.tif: 13 bands, expected 12/ },
  { kind: 'path', name: 'loadImage: symlink loop', run: () => (fs.symlinkSync(p('loopB.png'), p('loopA.png')), fs.symlinkSync(p('loopA.png'), p('loopB.png')), D.loadImage(p('loopA.png'))), error: /loopA\.png: ELOOP/ },
  { kind: 'path', name: 'loadImage: NaN in a float GeoTIFF', run: async () => { const im = D.makeImg(2, 2, 1); im.data[1] = NaN; await D.writeGeoTiff(p('nan.tif'), im, { dtype: 'float32' }); return D.loadImage(p('nan.tif')); }, error: /nan\.tif: non-finite value NaN at pixel \(y=0, x=1\), band 0/ },
  { kind: 'config', name: 'DecodeOptions.scale as a string', run: () => D.loadImage(png, { scale: '0.5' as never }), error: /DecodeOptions\.scale: expected a finite number > 0, got '0\.5' \(a string\)/ },
  { kind: 'config', name: 'DecodeOptions.mode unknown', run: () => D.loadImage(png, { mode: 'rgba' as never }), error: /DecodeOptions\.mode: expected one of 'rgb', 'keep', got 'rgba'/ },
  { kind: 'config', name: 'DecodeOptions.bands as a string', run: () => D.loadImage(png, { bands: '3' as never }), error: /DecodeOptions\.bands: expected an integer ≥ 1, got '3' \(a string\)/ },
  { kind: 'config', name: 'DecodeOptions unknown key', run: () => D.loadImage(png, { band: 3 } as never), error: /DecodeOptions: unknown key 'band'/ },
  { kind: 'config', name: 'DecodeOptions.maxPixels NaN', run: () => D.loadImage(png, { maxPixels: NaN }), error: /DecodeOptions\.maxPixels: expected a number > 0 \(Infinity allowed\), got NaN/ },
  { kind: 'config', name: 'DecodeOptions.maxExpansion 0', run: () => D.loadGeoTiff(tif, { maxExpansion: 0 }), error: /DecodeOptions\.maxExpansion: .*got 0/ },
  { kind: 'config', name: 'setDecodeLimits memoryBudget -1', run: () => D.setDecodeLimits({ memoryBudget: -1 }), error: /memoryBudget must be a number > 0/ },
  // ---- CSV and list files
  { kind: 'path', name: 'readCsv: missing', run: () => D.readCsv(p('no.csv')), error: /cannot read CSV .*no\.csv: ENOENT/ },
  { kind: 'path', name: 'readCsv: empty', run: csvRow('e.csv', ''), error: /e\.csv: empty CSV \(no header row\)/ },
  { kind: 'path', name: 'readCsv: ragged row', run: csvRow('r.csv', 'a,b\n1,2\n3\n'), error: /r\.csv: line 3: 1 fields, expected 2/ },
  { kind: 'path', name: 'readCsv: unterminated quote', run: csvRow('q.csv', 'a,b\n"1,2\n'), error: /q\.csv: unterminated quoted field/ },
  { kind: 'path', name: 'CSV column named twice', run: async () => D.column(await D.readCsv(w('d.csv', 'a,a\n1,2\n')), 'a'), error: /d\.csv: column 'a' appears twice in the header \(columns 0 and 1\)/ },
  { kind: 'path', name: 'list file: label 1.5', run: () => D.readListFile(w('l.txt', 'a.png 1.5\n')), error: /l\.txt: line 1: label '1\.5' is not an integer/ },
  { kind: 'path', name: 'list file: three fields', run: () => D.readListFile(w('l2.txt', 'a.png 1 2\n')), error: /l2\.txt: line 1: expected 'path label', got 3 fields/ },
  { kind: 'path', name: 'list file: only blank lines', run: () => D.readListFile(w('l3.txt', '\n \n')), error: /l3\.txt: empty split/ },
  { kind: 'path', name: 'list file: missing', run: () => D.readListFile(p('l4.txt')), error: /missing list file: .*l4\.txt/ },
  // ---- folder datasets
  { kind: 'path', name: 'imageFolder: missing root', run: () => D.imageFolder(p('none')), error: /missing ImageFolder root: .*none/ },
  { kind: 'path', name: 'imageFolder: root is a file', run: () => D.imageFolder(png), error: /cannot list ImageFolder root .*a\.png: ENOTDIR/ },
  { kind: 'path', name: 'imageFolder: no class folders', run: () => D.imageFolder(fs.mkdtempSync(p('if-'))), error: /no class folders/ },
  { kind: 'config', name: 'imageFolder: class listed twice', run: () => D.imageFolder(p('ifd'), { classes: ['a', 'a'] }), error: /ImageFolderOptions\.classes: 'a' is listed twice/ },
  { kind: 'config', name: 'imageFolder: extension without dot', run: () => D.imageFolder(p('ifd'), { extensions: ['png'] }), error: /ImageFolderOptions\.extensions: expected entries like '\.png' \(with the dot\), got 'png'/ },
  { kind: 'config', name: 'imageFolder: unknown option', run: () => D.imageFolder(p('ifd'), { clases: ['a'] } as never), error: /ImageFolderOptions: unknown key 'clases'/ },
  { kind: 'config', name: 'imageFolder: bad decode option', run: async () => (await D.imageFolder(p('ifd'), { decode: { mode: 'grey' as never } })).get(0), error: /x\.png: DecodeOptions\.mode: expected one of 'rgb', 'keep', got 'grey'/ },
  { kind: 'path', name: 'EuroSAT: missing root', run: () => D.eurosat(p('none'), { variant: 'rgb' }), error: /missing EuroSAT rgb folder: .*none\/2750/ },
  { kind: 'config', name: 'EuroSAT: unknown variant', run: () => D.eurosat(tmp, { variant: 'nir' as never }), error: /eurosat: variant must be 'rgb' or 'ms', got 'nir' \(a string\)/ },
  { kind: 'config', name: 'EuroSAT: unknown option', run: () => D.eurosat(tmp, { varient: 'rgb' } as never), error: /EuroSatOptions: unknown key 'varient'/ },
  { kind: 'path', name: 'EuroSAT: missing split file', run: () => D.eurosat(tmp, { variant: 'rgb', split: p('nosplit.txt') }), error: /missing list file: .*nosplit\.txt/ },
  // ---- fMoW
  { kind: 'path', name: 'fMoW CSV: missing', run: () => D.fmowRgb(p('no.csv')), error: /cannot read CSV .*no\.csv/ },
  { kind: 'path', name: 'fMoW CSV: class id not an integer', run: () => D.fmowRgb(w('fm.csv', 'category,image_path\nx,train/airport/airport_0/airport_0_0_rgb.jpg\n')), error: /fm\.csv: line 2, column 0 \('category'\): class id 'x' is not an integer/ },
  { kind: 'path', name: 'fMoW CSV: class id 1.0', run: () => D.fmowRgb(w('fm2.csv', 'category,image_path\n1.0,a.jpg\n')), error: /fm2\.csv: line 2, column 0 \('category'\): class id '1\.0' is not an integer/ },
  { kind: 'path', name: 'fMoW CSV: empty image path', run: () => D.fmowRgb(w('fm3.csv', 'category,image_path\n0,\n')), error: /fm3\.csv: line 2, column 1 \('image_path'\): empty image path/ },
  { kind: 'path', name: 'fMoW CSV: label 62', run: () => D.fmowRgb(w('fm4.csv', 'category,image_path\n62,a.jpg\n')), error: /fm4\.csv: line 2, column 0: label 62 out of range \[0, 62\)/ },
  { kind: 'path', name: 'fMoW JSON: invalid', run: () => D.readFmowMetadata(w('m.json', '{')), error: /m\.json: invalid JSON/ },
  { kind: 'path', name: 'fMoW JSON: gsd as a string', run: () => D.readFmowMetadata(w('m2.json', JSON.stringify({ gsd: '1', timestamp: 't', img_width: 3, img_height: 3, bounding_boxes: [] }))), error: /m2\.json: field 'gsd' must be a number, got "1"/ },
  { kind: 'path', name: 'fMoW JSON: negative gsd', run: () => D.readFmowMetadata(w('m3.json', JSON.stringify({ gsd: -1, timestamp: 't', img_width: 3, img_height: 3, bounding_boxes: [] }))), error: /m3\.json: field 'gsd' must be a positive number, got -1/ },
  { kind: 'path', name: 'fMoW JSON: width 0', run: () => D.readFmowMetadata(w('m6.json', JSON.stringify({ gsd: 1, timestamp: 't', img_width: 0, img_height: 3, bounding_boxes: [] }))), error: /m6\.json: field 'img_width' must be a positive integer, got 0/ },
  { kind: 'path', name: 'fMoW JSON: box of 2 numbers', run: () => D.readFmowMetadata(w('m4.json', JSON.stringify({ gsd: 1, timestamp: 't', img_width: 3, img_height: 3, bounding_boxes: [{ ID: 1, box: [1, 2], category: 'zoo' }] }))), error: /m4\.json: bounding_boxes\[0\]\.box must be \[x, y, w, h\] numbers, got \[1,2\]/ },
  { kind: 'path', name: 'fMoW JSON: boxes not a list', run: () => D.readFmowMetadata(w('m5.json', JSON.stringify({ gsd: 1, timestamp: 't', img_width: 3, img_height: 3, bounding_boxes: 5 }))), error: /m5\.json: field 'bounding_boxes' must be a list/ },
  { kind: 'path', name: 'fMoW temporal: timestamp without a year', run: () => D.fmowTemporal(w('ft.csv', 'category,image_path,timestamp\n0,train/airport/airport_0/airport_0_0_rgb.jpg,20x0-01-01T00\n')), error: /ft\.csv: line 2, column 2: cannot read the year/ },
  { kind: 'path', name: 'fMoW-Sentinel: location_id -1', run: () => D.readFmowSentinelCsv(w('fs.csv', ',category,location_id,image_id,timestamp\n0,zoo,-1,1,2016-01-01\n')), error: /fs\.csv: line 2, column 'location_id': expected an integer, got '-1'/ },
  { kind: 'path', name: 'fMoW-Sentinel: unknown category', run: () => D.readFmowSentinelCsv(w('fs1.csv', ',category,location_id,image_id,timestamp\n0,volcano,1,1,2016-01-01\n')), error: /fs1\.csv: line 2, column 'category': unknown class 'volcano'/ },
  { kind: 'config', name: 'fMoW-Sentinel: years as strings', run: () => D.readFmowSentinelCsv(w('fs2.csv', ',category,location_id,image_id,timestamp\n0,zoo,1,1,2016-01-01\n'), { years: ['2016'] as never }), error: /FmowSentinelOptions\.years\[0\]: expected an integer, got '2016' \(a string\)/ },
  { kind: 'config', name: 'fMoW-Sentinel: masked band 13', run: () => D.fmowSentinel(p('fs2.csv'), { maskedBands: [13] }), error: /FmowSentinelOptions\.maskedBands\[0\]: expected an integer in \[0, 12\], got 13/ },
  { kind: 'config', name: 'fMoW-Sentinel: unknown option', run: () => D.fmowSentinel(p('fs2.csv'), { year: [2016] } as never), error: /FmowSentinelOptions: unknown key 'year'/ },
  // ---- SpaceNet, WILDS, VTAB
  { kind: 'path', name: 'SpaceNet: missing root', run: () => D.spacenet1(p('none')), error: /missing SpaceNet 3band folder: .*none/ },
  { kind: 'path', name: 'GeoJSON: invalid', run: () => D.geojsonPolygons('{"type": "FeatureCollection", "features": [', 'g.geojson'), error: /g\.geojson: invalid GeoJSON/ },
  { kind: 'path', name: 'GeoJSON: not GeoJSON', run: () => D.geojsonPolygons('{"type": "Topology"}', 'g.geojson'), error: /g\.geojson: not GeoJSON \(type "Topology"/ },
  { kind: 'path', name: 'GeoJSON: a number', run: () => D.geojsonPolygons('5', 'g.geojson'), error: /g\.geojson: GeoJSON must be an object, got 5/ },
  { kind: 'path', name: 'GeoJSON: feature that is not a Feature', run: () => D.geojsonPolygons(JSON.stringify({ type: 'FeatureCollection', features: [{ type: 'Polygon', coordinates: [] }] }), 'g.geojson'), error: /g\.geojson: features\[0\] is not a Feature/ },
  { kind: 'path', name: 'GeoJSON: ring with a string coordinate', run: () => D.geojsonPolygons(JSON.stringify({ type: 'Feature', geometry: { type: 'Polygon', coordinates: [[[0, 0], ['a', 1], [1, 1], [0, 0]]] } }), 'g.geojson'), error: /g\.geojson: geometry: ring must be a list of \[x, y\] numbers/ },
  { kind: 'path', name: 'GeoJSON: ring of 2 positions', run: () => D.geojsonPolygons(JSON.stringify({ type: 'Feature', geometry: { type: 'Polygon', coordinates: [[[0, 0], [1, 1]]] } }), 'g.geojson'), error: /g\.geojson: geometry: ring of 2 positions encloses nothing/ },
  { kind: 'path', name: 'GeoJSON: unsupported geometry', run: () => D.geojsonPolygons(JSON.stringify({ type: 'Feature', geometry: { type: 'Circle' } }), 'g.geojson'), error: /g\.geojson: geometry: unsupported geometry type 'Circle'/ },
  { kind: 'path', name: 'Camelyon17: missing metadata', run: () => D.camelyon17(p('none')), error: /cannot read CSV .*none\/metadata\.csv/ },
  { kind: 'path', name: 'Camelyon17: tumor 2', run: () => D.camelyon17(path.dirname(w('cam/metadata.csv', ',patient,node,x_coord,y_coord,tumor,slide,center,split\n0,004,4,1,2,2,0,0,0\n'))), error: /metadata\.csv: line 2, column 'tumor': expected 0 or 1, got 2/ },
  { kind: 'path', name: 'Camelyon17: center 7', run: () => D.camelyon17(path.dirname(w('cam2/metadata.csv', ',patient,node,x_coord,y_coord,tumor,slide,center,split\n0,004,4,1,2,1,0,7,0\n'))), error: /metadata\.csv: line 2, column 'center': expected a hospital 0–4 \(Camelyon17 has 5\), got 7/ },
  { kind: 'path', name: 'Camelyon17: x_coord 1.5', run: () => D.camelyon17(path.dirname(w('cam3/metadata.csv', ',patient,node,x_coord,y_coord,tumor,slide,center,split\n0,004,4,1.5,2,1,0,0,0\n'))), error: /metadata\.csv: line 2, column 'x_coord': expected an integer, got '1\.5'/ },
  { kind: 'config', name: 'Camelyon17: unknown split', run: () => D.camelyon17(path.dirname(w('cam4/metadata.csv', ',patient,node,x_coord,y_coord,tumor,slide,center,split\n0,004,4,1,2,1,0,0,0\n')), { split: 'valid' as never }), error: /unknown split 'valid'; valid: train, id_val, test, val, all/ },
  { kind: 'path', name: 'iWildCam: missing CSVs', run: () => D.iwildcam(p('none')), error: /cannot read CSV .*none\/train\.csv/ },
  { kind: 'config', name: 'VTAB-1k: unknown task', run: () => D.vtab1k(tmp, 'imagenet'), error: /unknown VTAB-1k task 'imagenet'; valid: cifar100/ },
  { kind: 'config', name: 'VTAB-1k: unknown split', run: () => D.vtab1k(tmp, 'cifar100', 'trainval' as never), error: /vtab1k: unknown split 'trainval'; valid: train800, val200, train800val200, test/ },
  { kind: 'path', name: 'VTAB-1k: missing task folder', run: () => D.vtab1k(tmp, 'dtd'), error: /missing VTAB-1k task folder for 'dtd'/ },
  // ---- datasets, loaders, transforms
  { kind: 'config', name: 'Loader: batchSize as a string', run: () => new D.Loader(ds(), { batchSize: '8' as never }), error: /LoaderOptions\.batchSize must be a positive integer, got '8' \(a string\)/ },
  { kind: 'config', name: 'Loader: batchSize 0', run: () => new D.Loader(ds(), { batchSize: 0 }), error: /LoaderOptions\.batchSize must be a positive integer, got 0/ },
  { kind: 'config', name: 'Loader: concurrency 0', run: () => new D.Loader(ds(), { batchSize: 1, concurrency: 0 }), error: /LoaderOptions\.concurrency: expected an integer ≥ 1, got 0/ },
  { kind: 'config', name: 'Loader: concurrency NaN (would be unbounded)', run: () => new D.Loader(ds(), { batchSize: 1, concurrency: NaN }), error: /LoaderOptions\.concurrency: expected an integer ≥ 1, got NaN/ },
  { kind: 'config', name: 'Loader: concurrency as a string', run: () => new D.Loader(ds(), { batchSize: 1, concurrency: '4' as never }), error: /LoaderOptions\.concurrency: .*got '4' \(a string\)/ },
  { kind: 'config', name: 'Loader: prefetch -1', run: () => new D.Loader(ds(), { batchSize: 1, prefetch: -1 }), error: /LoaderOptions\.prefetch: expected an integer ≥ 0, got -1/ },
  { kind: 'config', name: 'Loader: prefetch 1.5', run: () => new D.Loader(ds(), { batchSize: 1, prefetch: 1.5 }), error: /LoaderOptions\.prefetch: .*got 1\.5/ },
  { kind: 'config', name: 'Loader: seed as a string', run: () => new D.Loader(ds(), { batchSize: 1, seed: '0' as never }), error: /LoaderOptions\.seed: expected an integer, got '0' \(a string\)/ },
  { kind: 'config', name: 'Loader: seed NaN', run: () => new D.Loader(ds(), { batchSize: 1, seed: NaN }), error: /LoaderOptions\.seed: expected an integer, got NaN/ },
  { kind: 'config', name: "Loader: shuffle 'false'", run: () => new D.Loader(ds(), { batchSize: 1, shuffle: 'false' as never }), error: /LoaderOptions\.shuffle: expected true or false, got 'false' \(a string\)/ },
  { kind: 'config', name: 'Loader: transform not a function', run: () => new D.Loader(ds(), { batchSize: 1, transform: 5 as never }), error: /LoaderOptions\.transform: expected a function, got 5/ },
  { kind: 'config', name: 'Loader: unknown key', run: () => new D.Loader(ds(), { batchSize: 1, batch: 3 } as never), error: /LoaderOptions: unknown key 'batch'/ },
  { kind: 'config', name: 'Loader: both transform and views', run: () => new D.Loader(ds(), { batchSize: 1, transform: (s) => s, views: (s) => [s] }), error: /give either `transform` or `views`, not both/ },
  { kind: 'tensor', name: 'Loader.batchAt(-1)', run: () => new D.Loader(ds(), { batchSize: 1, shuffle: false }).batchAt(-1), error: /Loader\.indicesAt: step must be an integer ≥ 0, got -1/ },
  { kind: 'tensor', name: 'Loader.batchAt(NaN)', run: () => new D.Loader(ds(), { batchSize: 1, shuffle: false }).batchAt(NaN), error: /step must be an integer ≥ 0, got NaN/ },
  { kind: 'path', name: 'Loader: a batch with a missing file', run: async () => D.disposeBatch(await new D.Loader(ds(), { batchSize: 2, shuffle: false, prefetch: 0 }).batchAt(0)), error: /missing image: .*nope\.png/ },
  { kind: 'tensor', name: 'Dataset.get("0")', run: () => ds().get('0' as never), error: /sweep: index '0' \(a string\) out of range \[0, 2\)/ },
  { kind: 'tensor', name: 'Dataset.get(-1)', run: () => ds().get(-1), error: /sweep: index -1 out of range \[0, 2\)/ },
  { kind: 'tensor', name: 'subset: index 5 of 2', run: () => D.subset(ds(), [0, 5]), error: /sweep: index 5 out of range \[0, 2\)/ },
  { kind: 'tensor', name: 'stackImages: two shapes', run: () => D.stackImages([D.makeImg(2, 2, 3), D.makeImg(3, 2, 3)], 'x').dispose(), error: /x: row 1 is 3×2×3 but row 0 is 2×2×3/ },
  { kind: 'config', name: 'normalizeBatch: std 0', run: () => D.normalizeBatch({ mean: [0, 0, 0], std: [1, 0, 1] }), error: /normalizeBatch: std\[1\]: expected a finite number > 0, got 0/ },
  { kind: 'config', name: 'normalizeBatch: mean NaN', run: () => D.normalizeBatch({ mean: [NaN, 0, 0], std: [1, 1, 1] }), error: /normalizeBatch: mean\[0\]: expected a finite number, got NaN/ },
  { kind: 'tensor', name: 'normalizeBatch: stats for 2 channels', run: () => { const x = tf.zeros([1, 2, 2, 3]) as tf.Tensor4D; try { return tf.tidy(() => D.normalizeBatch({ mean: [0, 0], std: [1, 1] })({ images: x, indices: [0], meta: [], epoch: 0, step: 0 }).images!); } finally { x.dispose(); } }, error: /normalizeBatch: statistics for 2 channels, batch has 3/ },
  { kind: 'tensor', name: 'normalize: std 0', run: () => D.normalize(D.makeImg(2, 2, 3), { mean: [0, 0, 0], std: [0, 1, 1] }), error: /normalize: std\[0\]: expected a finite number > 0, got 0/ },
  { kind: 'tensor', name: 'normalize: stats for 1 channel', run: () => D.normalize(D.makeImg(2, 2, 3), { mean: [0], std: [1] }), error: /normalize: statistics for 1 channels, image has 3/ },
  { kind: 'tensor', name: 'makeImg: height 0', run: () => D.makeImg(0, 2, 3), error: /makeImg: height must be a positive integer, got 0/ },
  { kind: 'tensor', name: "makeImg: height '2'", run: () => D.makeImg('2' as never, 2, 3), error: /makeImg: height must be a positive integer, got '2' \(a string\)/ },
  { kind: 'tensor', name: 'resize to 0 rows', run: () => D.resize(D.makeImg(4, 4, 3), 0, 4), error: /resizedCrop: output size must be positive integers, got 0×4/ },
  { kind: 'tensor', name: 'crop outside the image', run: () => D.crop(D.makeImg(4, 4, 3), { top: 2, left: 2, height: 4, width: 4 }), error: /crop: box .* is not an integer box inside 4×4×3/ },
  { kind: 'tensor', name: 'selectBands: band 3 of 3', run: () => D.selectBands(D.makeImg(2, 2, 3), [3]), error: /selectBands: band 3 out of range for a 3-band image/ },
  { kind: 'tensor', name: 'dropBands: band -1', run: () => D.dropBands(D.makeImg(2, 2, 3), [-1]), error: /dropBands: band -1 out of range/ },
  { kind: 'config', name: 'randomResizedCrop: scale [1, 0.2]', run: () => D.randomResizedCrop({ size: 8, scale: [1, 0.2] }), error: /RandomResizedCropOptions\.scale: expected \[lo, hi\] with 0 < lo ≤ hi, got \[1,0\.2\]/ },
  { kind: 'config', name: 'randomResizedCrop: size 0', run: () => D.randomResizedCrop({ size: 0 }), error: /RandomResizedCropOptions\.size: expected a positive integer or a \[height, width\] pair of them, got 0/ },
  { kind: 'config', name: 'randomResizedCrop: scale up to 2', run: () => D.randomResizedCrop({ size: 8, scale: [0.5, 2] }), error: /the area fraction cannot exceed 1/ },
  { kind: 'config', name: 'randomResizedCrop: ratio [0, 1]', run: () => D.randomResizedCrop({ size: 8, ratio: [0, 1] }), error: /RandomResizedCropOptions\.ratio: .*got \[0,1\]/ },
  { kind: 'config', name: 'colorJitter: brightness -1', run: () => D.colorJitter({ brightness: -1 }), error: /colorJitter: brightness: expected a finite number ≥ 0, got -1/ },
  { kind: 'config', name: 'colorJitter: hue 0.6', run: () => D.colorJitter({ hue: 0.6 }), error: /colorJitter: hue: expected a finite number in \[0, 0\.5\], got 0\.6/ },
  { kind: 'config', name: 'colorJitter: p as a string', run: () => D.colorJitter({ p: '0.8' as never }), error: /colorJitter: p: .*got '0\.8' \(a string\)/ },
  { kind: 'config', name: 'randomHFlip: p 2', run: () => D.randomHFlip(2), error: /randomHFlip: p: expected a finite number in \[0, 1\], got 2/ },
  { kind: 'config', name: 'randomGrayscale: p NaN', run: () => D.randomGrayscale(NaN), error: /randomGrayscale: p: .*got NaN/ },
  { kind: 'config', name: 'randomGaussianBlur: sigma [2, 0.1]', run: () => D.randomGaussianBlur(0.5, [2, 0.1]), error: /randomGaussianBlur: sigma: .*got \[2,0\.1\]/ },
  { kind: 'config', name: 'randomSolarize: p -0.1', run: () => D.randomSolarize(-0.1), error: /randomSolarize: p: .*got -0\.1/ },
  { kind: 'config', name: 'gaussianKernel: sigma 0', run: () => D.gaussianKernel(9, 0), error: /gaussianKernel: sigma: expected a finite number > 0, got 0/ },
  { kind: 'config', name: 'spectralJitter: brightness 2', run: () => D.spectralJitter({ brightness: 2 }), error: /spectralJitter: brightness: .*got 2/ },
  { kind: 'config', name: 'dinoMultiCrop: nLocal -1', run: () => D.dinoMultiCrop({ nLocal: -1 }), error: /MultiCropOptions\.nLocal: expected an integer ≥ 0, got -1/ },
  { kind: 'config', name: 'dinoMultiCrop: blurMode unknown', run: () => D.dinoMultiCrop({ blurMode: 'always' as never }), error: /MultiCropOptions\.blurMode: expected one of 'effective', 'intended', got 'always'/ },
  { kind: 'config', name: 'resizeTo: size [0, 4]', run: () => D.resizeTo([0, 4]), error: /resizeTo: size: .*got \[0,4\]/ },
  { kind: 'config', name: 'embedded: size as a string', run: () => D.ensureEmbedded({ size: '32' as never, cacheDir: tmp }), error: /embedded: size must be an integer in \[8, 512\], got '32' \(a string\)/ },
  { kind: 'config', name: 'embedded: seed 1.5', run: () => D.ensureEmbedded({ seed: 1.5, cacheDir: tmp }), error: /embedded: seed must be an integer, got 1\.5/ },
  { kind: 'path', name: 'embedded: cache folder is a file', run: () => D.ensureEmbedded({ cacheDir: path.join(png, 'sub'), satellitePerClass: 5, naturalPerClass: 5, size: 8 }), error: /embedded: cache folder .*a\.png\/sub: cannot create the folder \(a file is in the way/ },
  { kind: 'config', name: 'embedded: unknown option', run: () => D.ensureEmbedded({ sze: 3 } as never), error: /EmbeddedOptions: unknown key 'sze'/ },
  // ---- model configs
  { kind: 'config', name: 'vitConfig: unknown preset', run: () => L.vitConfig('vit_huge_patch16_224' as never), error: /unknown ViT preset 'vit_huge_patch16_224'; valid:/ },
  { kind: 'config', name: 'LoRA: rank as a string', run: () => L.createLora(vit.params, { rank: '8' as never, targets: [L.qvTarget()] }), error: /LoraConfig\.rank: expected a finite number, got '8' \(a string\)/ },
  { kind: 'config', name: 'LoRA: rank 2.5', run: () => L.createLora(vit.params, { rank: 2.5, targets: [L.qvTarget()] }), error: /rank must be an integer in \[1, 15\] for site 'blocks\.0\.attn\.qkv'.*got 2\.5/ },
  { kind: 'config', name: 'LoRA: alpha as a string', run: () => L.createLora(vit.params, { alpha: '1' as never, targets: [L.qvTarget()] }), error: /LoraConfig\.alpha: expected a finite number, got '1' \(a string\)/ },
  { kind: 'config', name: 'LoRA: alpha NaN', run: () => L.createLora(vit.params, { alpha: NaN, targets: [L.qvTarget()] }), error: /LoraConfig\.alpha: .*got NaN/ },
  { kind: 'config', name: 'LoRA: dropout as a string', run: () => L.createLora(vit.params, { dropout: '0.1' as never, targets: [L.qvTarget()] }), error: /LoraConfig\.dropout: expected a finite number, got '0\.1' \(a string\)/ },
  { kind: 'config', name: 'LoRA: target rank as a string', run: () => L.createLora(vit.params, { targets: [L.qvTarget(undefined, { rank: '4' as never })] }), error: /LoraConfig\.targets\[0\]\.rank: .*got '4' \(a string\)/ },
  { kind: 'config', name: 'LoRA: dropout 1', run: () => L.createLora(vit.params, { dropout: 1, targets: [L.qvTarget()] }), error: /dropout must be in \[0, 1\), got 1/ },
  { kind: 'config', name: 'LoRA: unknown init', run: () => L.createLora(vit.params, { init: 'xavier' as never, targets: [L.qvTarget()] }), error: /init must be 'kaiming' or 'truncNormal', got 'xavier'/ },
  { kind: 'config', name: 'LoRA: a target matching nothing', run: () => L.createLora(vit.params, { targets: [{ sites: 'blocks.*.attn.nothing' }] }), error: /LoRA target #0 .* matches no linear site; sites are: patch_embed\.proj/ },
  { kind: 'config', name: 'LoRA: layer 5 of 2', run: () => L.createLora(vit.params, { targets: [L.qvTarget([5])] }), error: /layers \[5\]\) matches no linear site/ },
  { kind: 'config', name: 'ExPLoRA: unknown notation', run: () => L.exploraRecipe('D-ExPLoRA-[Q]-r64'), error: /D-ExPLoRA-\[Q\]-r64/ },
  { kind: 'config', name: 'ExPLoRA: rank -1', run: () => L.exploraRecipe('D-ExPLoRA-[L]-r64', { rank: -1 }), error: /ExploraRecipe\.rank: expected a positive integer or null, got -1/ },
  { kind: 'config', name: 'ExPLoRA: unknown key', run: () => L.exploraRecipe('D-ExPLoRA-[L]-r64', { rnk: 3 } as never), error: /ExploraRecipe overrides: unknown key 'rnk'/ },
  { kind: 'config', name: 'MAE: maskRatio 1', run: mae({ maskRatio: 1 }), error: /maskRatio: expected a number strictly between 0 and 1, got 1/ },
  { kind: 'config', name: 'MAE: maskRatio as a string', run: mae({ maskRatio: '0.75' }), error: /maskRatio: .*got '0\.75' \(a string\)/ },
  { kind: 'config', name: 'MAE: decoder depth as a string', run: mae({ decoder: { embedDim: 8, depth: '1', numHeads: 1 } }), error: /DecoderConfig\.depth: expected a positive integer, got '1' \(a string\)/ },
  { kind: 'config', name: 'MAE: decoder normEps NaN', run: mae({ decoder: { embedDim: 8, depth: 1, numHeads: 1, normEps: NaN } }), error: /DecoderConfig\.normEps: expected a finite number > 0, got NaN/ },
  { kind: 'config', name: 'MAE: unknown option', run: mae({ normPix: true }), error: /createMae options: unknown key 'normPix'/ },
  { kind: 'config', name: 'ToMe: r -2', run: () => L.resolveSchedule(-2 as never, 12), error: /expected a non-negative integer number of tokens to merge, got -2/ },
  { kind: 'config', name: 'ToMe: r as a string', run: () => L.resolveSchedule('8' as never, 12), error: /r schedule: expected a number, \{r, inflect\} or a per-layer list, got '8' \(a string\)/ },
  { kind: 'config', name: 'ToMe: unknown hook option', run: () => L.tomeHooks(vit.config, { r: 100 } as never), error: /tomeHooks options: unknown key 'r'/ },
  { kind: 'config', name: 'PYRA: unknown backbone', run: () => L.pyraSchedule('vit_b' as never, 'low'), error: /unknown PYRA schedule backbone 'vit_b'/ },
  { kind: 'config', name: 'DINOv2 objective: unknown key', run: () => L.dinov2Objective({ kolo: 1 } as never), error: /Dinov2Objective: unknown key 'kolo'/ },
  { kind: 'config', name: 'DINOv2 objective: student temperature as a string', run: () => L.dinov2Objective({ studentTemp: '0.1' } as never), error: /Dinov2Objective\.studentTemp: expected a finite number > 0, got '0\.1' \(a string\)/ },
  { kind: 'config', name: 'iBOT masks: maskProbability 2', run: () => L.ibotMaskConfig({ maskProbability: 2 }), error: /IbotMaskConfig\.maskProbability: expected a finite number in \[0, 1\], got 2/ },
  { kind: 'config', name: 'EMA: momentum as a string', run: () => L.teacherMomentumSchedule(10, '0.99' as never), error: /teacher momentum: base: .*got '0\.99' \(a string\)/ },
  { kind: 'config', name: 'kNN: k 0', run: withFeats((c) => L.knnEvaluate(c, c, { k: 0 })), error: /knnClassify: k must be an integer in \[1, 4\] \(training samples\), got 0/ },
  { kind: 'config', name: 'kNN: temperature 0', run: withFeats((c) => L.knnEvaluate(c, c, { k: 1, temperature: 0 })), error: /knnClassify: temperature: expected a finite number > 0, got 0/ },
  { kind: 'tensor', name: 'features: NaN from a diverged backbone', run: () => feats(Float32Array.of(1, 1, NaN, 1, 1, 1, 1, 1)), error: /featureCache: cls feature NaN of sample 1 \(label 1\); the backbone produced non-finite features/ },
  { kind: 'tensor', name: 'features: label count mismatch', run: () => L.featureCache(new Float32Array(8), new Float32Array(8), Int32Array.from([0, 1]), 1, 2), error: /featureCache: cls has 8 values, expected N·n·D = 2·1·2/ },
  { kind: 'config', name: 'linear probe: batchSize 0', run: withFeats((c) => L.linearProbe(c, c, { nLastBlocks: [1], batchSize: 0 })), error: /linearProbe: batchSize must be a positive integer, got 0/ },
  { kind: 'config', name: 'linear probe: lrs as strings', run: withFeats((c) => L.linearProbe(c, c, { nLastBlocks: [1], lrs: ['0.1'] as never })), error: /linearProbe: lrs must be positive numbers/ },
  { kind: 'config', name: 'linear probe: 3 blocks of 1 cached', run: withFeats((c) => L.linearProbe(c, c, { nLastBlocks: [3] })), error: /linearProbe: nLastBlocks entry 3 is outside \[1, 1\]/ },
  { kind: 'config', name: 'linear probe: epochs as a string', run: withFeats((c) => L.linearProbe(c, c, { nLastBlocks: [1], epochs: '2' as never })), error: /linearProbe: epochs: expected a finite number > 0, got '2' \(a string\)/ },
  { kind: 'config', name: 'timm kwargs: embed_dim as a string', run: () => L.vitConfigFromTimm({ embed_dim: '768' }), error: /VitConfig\.embedDim: expected a positive integer, got '768' \(a string\)/ },
  { kind: 'config', name: 'timm kwargs: unknown kwarg', run: () => L.vitConfigFromTimm({ mystery: 1 }), error: /timm VisionTransformer kwargs: unknown key 'mystery'/ },
  // ---- run records
  { kind: 'config', name: 'RunRecord: name with ..', run: () => R.RunRecord.create('../x', { config: {}, seed: 0, root: tmp }), error: /name '\.\.\/x' must start with a letter or digit/ },
  { kind: 'config', name: 'RunRecord: seed as a string', run: () => R.RunRecord.create('x', { config: {}, seed: '0' as never, root: tmp }), error: /RunRecord\.create\(x\): seed must be an integer, got '0' \(a string\)/ },
  { kind: 'config', name: 'RunRecord: config with NaN', run: () => R.RunRecord.create('x', { config: { lr: NaN }, seed: 0, root: tmp }), error: /'config\.lr' is NaN, which JSON cannot store \(it would become null\)/ },
  { kind: 'config', name: 'RunRecord: config with Infinity', run: () => R.RunRecord.create('x', { config: { sched: { max: Infinity } }, seed: 0, root: tmp }), error: /'config\.sched\.max' is Infinity/ },
  { kind: 'config', name: 'RunRecord: config with a Date', run: () => R.RunRecord.create('x', { config: { d: new Date() }, seed: 0, root: tmp }), error: /'config\.d' is a Date; store plain data/ },
  { kind: 'config', name: 'RunRecord: config with a function', run: () => R.RunRecord.create('x', { config: { f: () => 1 }, seed: 0, root: tmp }), error: /'config\.f' is a function/ },
  { kind: 'path', name: 'RunRecord: root under a file', run: () => R.RunRecord.create('x', { config: {}, seed: 0, root: path.join(png, 'runs') }), error: /RunRecord\.create\(x\): runs root .*a\.png\/runs: cannot create the folder \(a file is in the way/ },
  { kind: 'path', name: 'RunRecord.open: not a run folder', run: () => R.RunRecord.open(p('norun')), error: /readRun: .*norun\/run\.json does not exist \(not a run folder\)/ },
  { kind: 'path', name: 'readRun: invalid JSON', run: () => R.readRun(path.dirname(w('badrun/run.json', '{'))), error: /readRun: .*badrun\/run\.json is not valid JSON/ },
  { kind: 'path', name: 'readRun: another format', run: () => R.readRun(path.dirname(w('badrun2/run.json', '{"format":"x"}'))), error: /badrun2\/run\.json has format 'x', expected 'vitpeft-run\/1'/ },
  { kind: 'path', name: 'readMetrics: torn line in the middle', run: () => R.readMetrics(path.dirname(w('badrun3/metrics.jsonl', '{"step":0}\n{"st\n{"step":2}\n'))), error: /readMetrics: .*metrics\.jsonl line 2 is not valid JSON/ },
  { kind: 'path', name: 'listRuns: root is a file', run: () => R.listRuns({ root: png }), error: /listRuns: cannot list the runs root .*a\.png/ },
  { kind: 'config', name: 'RunRecord.log: step as a string', run: () => R.RunRecord.create('y', { config: {}, seed: 0, root: tmp }).log('1' as never, { a: 1 }), error: /RunRecord\(y\)\.log: step must be an integer ≥ 0, got 1/ },
  { kind: 'config', name: 'RunRecord: checkpoint tag ../x', run: () => R.RunRecord.create('y', { config: {}, seed: 0, root: tmp }).checkpointPath('../x'), error: /checkpoint tag '\.\.\/x' must use only letters/ },
  // ---- checkpoint files and options
  { kind: 'path', name: 'checkpoint: a folder', run: () => L.loadCheckpoint(tmp, { params: vit.params }), error: /: cannot read \(EISDIR/ },
  { kind: 'path', name: 'checkpoint: header is a list', run: () => L.readSafetensors(w('h.safetensors', st('[1,2]'))), error: /h\.safetensors: header is not a JSON object/ },
  { kind: 'path', name: 'checkpoint: __metadata__ is a number', run: () => L.readSafetensors(w('h2.safetensors', st('{"__metadata__":5}'))), error: /h2\.safetensors: __metadata__ must be an object of strings, got 5/ },
  { kind: 'path', name: 'checkpoint: __metadata__ value not a string', run: () => L.readSafetensors(w('h2b.safetensors', st({ __metadata__: { a: 1 } }))), error: /h2b\.safetensors: __metadata__\.a is not a string/ },
  { kind: 'path', name: 'checkpoint: header length 2^63', run: () => { const b = Buffer.from(fs.readFileSync(ck)); b.writeBigUInt64LE(2n ** 63n); return L.readSafetensors(w('h3.safetensors', b)); }, error: /h3\.safetensors: header length 9223372036854775808 exceeds the file size/ },
  { kind: 'path', name: 'checkpoint: negative dimension', run: () => L.readSafetensors(w('h8.safetensors', st({ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }))), error: /h8\.safetensors: tensor 'w': bad shape \[-1\]/ },
  { kind: 'path', name: 'checkpoint: fractional dimension', run: () => L.readSafetensors(w('h9.safetensors', st({ w: { dtype: 'F32', shape: [1.5], data_offsets: [0, 6] } }, Buffer.alloc(6)))), error: /h9\.safetensors: tensor 'w': bad shape \[1\.5\]/ },
  { kind: 'path', name: 'checkpoint: bytes belonging to no tensor', run: () => L.readSafetensors(w('h11.safetensors', st({ w: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, Buffer.alloc(8)))), error: /h11\.safetensors: data bytes 0–4 belong to no tensor \(before 'w'\)/ },
  { kind: 'path', name: 'checkpoint: trailing bytes', run: () => L.readSafetensors(w('h13.safetensors', st({ w: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, Buffer.alloc(9)))), error: /h13\.safetensors: 5 trailing data bytes after the last tensor/ },
  { kind: 'path', name: 'checkpoint: overlapping tensors', run: () => L.readSafetensors(w('h14.safetensors', st({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, Buffer.alloc(8)))), error: /h14\.safetensors: tensors 'a' and 'b' overlap/ },
  { kind: 'path', name: 'checkpoint: 2^80-element shape', run: () => L.readSafetensors(w('h12.safetensors', st({ w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } }, Buffer.alloc(4)))), error: /h12\.safetensors: tensor 'w': 4 bytes for shape/ },
  { kind: 'path', name: 'checkpoint: unknown dtype', run: () => L.readSafetensors(w('h15.safetensors', st({ w: { dtype: 'Q4', shape: [1], data_offsets: [0, 1] } }, Buffer.alloc(1)))), error: /h15\.safetensors: tensor 'w': unsupported or missing dtype "Q4"/ },
  { kind: 'path', name: 'checkpoint: vitpeft metadata not JSON', run: () => { const f = L.readSafetensors(ck); L.writeSafetensors(p('h4.safetensors'), new Map([...f.tensors].map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: t.data as Float32Array }])), { vitpeft: '{' }); return L.loadCheckpoint(p('h4.safetensors'), { params: vit.params }); }, error: /h4\.safetensors: __metadata__\.vitpeft is not valid JSON/ },
  { kind: 'path', name: "checkpoint: layout 'kit'", run: () => { const f = L.readSafetensors(ck); L.writeSafetensors(p('h6.safetensors'), new Map([...f.tensors].map(([k, t]) => [k, { dtype: 'F32' as const, shape: t.shape, data: t.data as Float32Array }])), { vitpeft: '{"layout":"kit"}' }); return L.loadCheckpoint(p('h6.safetensors'), { params: vit.params }); }, error: /h6\.safetensors: unsupported layout 'kit'/ },
  { kind: 'config', name: 'loadCheckpoint: stripPrefixes as a string', run: () => L.loadCheckpoint(ck, { params: vit.params }, { stripPrefixes: 'module.' as never }), error: /options\.stripPrefixes: expected a list of non-empty strings \(e\.g\. \['module\.'\]\), got 'module\.' \(a string\)/ },
  { kind: 'config', name: 'loadCheckpoint: ignore as a string', run: () => L.loadCheckpoint(ck, { params: vit.params }, { ignore: 'head' as never }), error: /options\.ignore: expected a RegExp \(e\.g\. \/\^head\\\.\/\), got 'head' \(a string\)/ },
  { kind: 'config', name: 'loadCheckpoint: unknown option', run: () => L.loadCheckpoint(ck, { params: vit.params }, { stict: false } as never), error: /options: unknown key 'stict'/ },
  { kind: 'config', name: "loadCheckpoint: strict 'false'", run: () => L.loadCheckpoint(ck, { params: vit.params }, { strict: 'false' as never }), error: /options\.strict: expected true or false, got 'false' \(a string\)/ },
  { kind: 'config', name: 'loadCheckpoint: resizeMode unknown', run: () => L.loadCheckpoint(ck, { params: vit.params }, { resizeMode: 'bilinear' as never }), error: /options\.resizeMode: expected one of 'size', 'size-antialias', 'dinov2-offset', got 'bilinear'/ },
  { kind: 'path', name: 'saveCheckpoint: folder path under a file', run: () => L.saveCheckpoint(path.join(png, 'x.safetensors'), { params: vit.params }), error: /x\.safetensors: its folder .*a\.png: cannot create the folder \(a file is in the way/ },
  { kind: 'path', name: 'saveCheckpoint: onto a folder', run: () => L.saveCheckpoint(p('ckdir'), { params: vit.params }), error: /ckdir: cannot save \(EISDIR.*; the previous ckdir \(if any\) is unchanged/ },
  { kind: 'config', name: 'saveCheckpoint: meta with a function', run: () => L.saveCheckpoint(p('f.safetensors'), { params: vit.params, meta: { f: () => 1 } }), error: /saveCheckpoint\(.*f\.safetensors\) meta: 'meta\.f' is a function/ },
  { kind: 'config', name: 'saveCheckpoint: meta with NaN', run: () => L.saveCheckpoint(p('n.safetensors'), { params: vit.params, meta: { lr: NaN } }), error: /'meta\.lr' is NaN, which JSON cannot store/ },
  { kind: 'config', name: "saveCheckpoint: meta overriding 'layout'", run: () => L.saveCheckpoint(p('n2.safetensors'), { params: vit.params, meta: { format: 'x', layout: 'kit' } }), error: /meta keys 'format', 'layout' belong to the file format/ },
  { kind: 'config', name: 'saveCheckpoint: unknown part', run: () => L.saveCheckpoint(p('n3.safetensors'), { params: vit.params, metadata: {} } as never), error: /saveCheckpoint parts: unknown key 'metadata'/ },
  { kind: 'tensor', name: 'saveCheckpoint: NaN parameter (a diverged run)', run: () => { const v = L.vitVariables(vit).get('cls_token')!; const old = v.clone(); const nan = tf.fill(v.shape, NaN); v.assign(nan); nan.dispose(); try { L.saveCheckpoint(ck, { params: vit.params }); } finally { v.assign(old); old.dispose(); } }, error: /'cls_token' holds a non-finite value \(NaN at flat index 0 .*nothing was written, the previous file is unchanged/ },
  // ---- tensors into the model
  { kind: 'tensor', name: 'vitForward: empty batch', run: () => tf.tidy(() => L.vitForward(vit, tf.zeros([0, 32, 32, 3]) as tf.Tensor4D).logits!), error: /ViT input: empty batch \(shape \[0,32,32,3\]\)/ },
  { kind: 'tensor', name: 'vitForward: a nested array', run: () => tf.tidy(() => L.vitForward(vit, [[1]] as never).logits!), error: /ViT input: expected a tf\.Tensor \[B, H, W, C\], got \[\[1\]\]/ },
  { kind: 'tensor', name: 'vitForward: rank 3', run: () => tf.tidy(() => L.vitForward(vit, tf.zeros([32, 32, 3]) as never).logits!), error: /expected images \[B, H, W, C\] \(NHWC\), got rank 3/ },
  { kind: 'tensor', name: 'vitForward: 4 channels', run: () => tf.tidy(() => L.vitForward(vit, tf.zeros([1, 32, 32, 4]) as tf.Tensor4D).logits!), error: /expected 3 channels \(NHWC, last axis\), got 4/ },
  { kind: 'tensor', name: 'vitForward: 40×40 with patch 16', run: () => tf.tidy(() => L.vitForward(vit, tf.zeros([1, 40, 40, 3]) as tf.Tensor4D).logits!), error: /image size 40x40 is not divisible by the patch size 16/ },
  { kind: 'tensor', name: 'vitForward: unknown option', run: x32((x) => L.vitForward(vit, x, { trainng: true } as never).logits!), error: /vitForward options: unknown key 'trainng'/ },
  { kind: 'tensor', name: 'vitForward: returnLayers 5 of depth 2', run: x32((x) => L.vitForward(vit, x, { returnLayers: 5 }).cls), error: /returnLayers: expected an integer in \[0, 2\], got 5/ },
  { kind: 'tensor', name: 'LoRA: input width 5 for 16', run: () => { const lo = L.createLora(vit.params, { rank: 2, targets: [L.qvTarget()] }); try { return tf.tidy(() => L.loraDelta(lo.modules.get('blocks.0.attn.qkv')!, tf.zeros([2, 5]) as tf.Tensor2D, { training: false, rng: null })); } finally { L.disposeLora(lo); } }, error: /LoRA at 'blocks\.0\.attn\.qkv': input width 5, expected 16/ },
  { kind: 'tensor', name: 'mergeLora: adapters of another model', run: () => { const big = L.createVit('vit_tiny_patch16_224', { imgSize: 32, depth: 2, embedDim: 32, numHeads: 2 }); const lo = L.createLora(big.params, { rank: 2, targets: [L.qvTarget()] }); try { L.mergeLora(vit.params, lo); } finally { L.disposeLora(lo); L.disposeVit(big); } }, error: /mergeLora: 'blocks\.0\.attn\.qkv\.weight' has shape \[16,48\] but the adapter was built for \[32,96\]/ },
  { kind: 'tensor', name: 'tensorToImage: rank 1', run: () => { const t = tf.zeros([3]); try { return R.tensorToImage(t); } finally { t.dispose(); } }, error: /tensorToImage: expected \[H,W\], \[H,W,C\] or \[1,H,W,C\], got \[3\]/ },
  { kind: 'tensor', name: 'imageGrid: no images', run: () => R.imageGrid([]), error: /imageGrid: no images/ },
  { kind: 'tensor', name: 'upscale: factor 0', run: () => R.upscale({ width: 1, height: 1, channels: 3, data: new Uint8Array(3) } as never, 0), error: /upscale: factor must be an integer ≥ 1, got 0/ },
  { kind: 'tensor', name: 'showTable: undefined', run: () => R.tableText(undefined as never), error: /tableData: expected a DataFrame, a Series or an array of row objects, got undefined/ },
];

describe('reliability sweep: bad inputs to loaders and public entry points (issue 19)', function () {
  this.timeout(120_000);
  before(async () => {
    tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-sweep-')));
    png = p('a.png');
    jpg = p('a.jpg');
    tif = p('a.tif');
    await D.writePng(png, D.makeImg(4, 4, 3));
    await D.writeJpeg(jpg, D.makeImg(4, 4, 3));
    await D.writeGeoTiff(tif, D.makeImg(4, 4, 13));
    fs.mkdirSync(p('ifd', 'a'), { recursive: true });
    fs.copyFileSync(png, p('ifd', 'a', 'x.png'));
    fs.mkdirSync(p('ckdir'));
    vit = L.createVit('vit_tiny_patch16_224', { imgSize: 32, depth: 2, embedDim: 16, numHeads: 2, numClasses: 3 });
    ck = p('v.safetensors');
    L.saveCheckpoint(ck, { params: vit.params });
  });
  after(() => {
    L.disposeVit(vit);
    fs.rmSync(tmp, { recursive: true, force: true });
    const by = new Map<string, number>();
    for (const c of cases) by.set(c.kind, (by.get(c.kind) ?? 0) + 1);
    console.log(`      sweep: ${cases.length} bad inputs (${[...by].map(([k, n]) => `${n} ${k}`).join(', ')})`);
  });

  for (const c of cases) {
    it(`${c.kind}: ${c.name}`, async () => {
      const before = tf.memory().numTensors;
      const ckBytes = fs.existsSync(ck) ? fs.readFileSync(ck) : null;
      await assert.rejects(async () => c.run(), c.error);
      assert.equal(tf.memory().numTensors, before, 'a refused input leaves no tensors behind');
      if (ckBytes) assert.deepEqual(fs.readFileSync(ck), ckBytes, 'the checkpoint on disk is untouched');
    });
  }
});
