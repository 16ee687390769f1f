/**
 * Issue 19 items 4 and 5: the folder scan follows symbolic links as torchvision does (classes and labels equal to a
 * Python reference of torchvision's `find_classes` + `make_dataset`), detects link loops and broken links; fMoW-Sentinel
 * timestamps are parsed strictly (file, line, value in the error), sorted as instants, and an empty year filter says so.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { makeImg } from '../data-loaders/image';
import { writePng } from '../data-loaders/encode';
import { labelsOf } from '../data-loaders/dataset';
import { toCsv } from '../data-loaders/csv';
import { imageFolder } from '../data-loaders/formats/imagefolder';
import { eurosat } from '../data-loaders/formats/eurosat';
import { readFmowSentinelCsv, parseSentinelTimestamp } from '../data-loaders/formats/fmow-sentinel';

const tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vitpeft-rdata-')));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** torchvision.datasets.ImageFolder's class and sample lists (find_classes + make_dataset, torchvision 0.15), in Python. */
function torchvisionReference(root: string): { classes: string[]; samples: Array<[string, number]> } {
  const py = `
import json, os, sys
root = sys.argv[1]
exts = ('.jpg', '.jpeg', '.png', '.webp', '.tif', '.tiff')
classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
samples = []
for i, c in enumerate(classes):
    for r, _, names in sorted(os.walk(os.path.join(root, c), followlinks=True)):
        for n in sorted(names):
            if n.lower().endswith(exts):
                samples.append([os.path.join(r, n), i])
print(json.dumps({'classes': classes, 'samples': samples}))
`;
  const r = spawnSync('/usr/bin/python3', ['-c', py, root], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

describe('symbolic links in folder datasets (issue 19.4)', () => {
  const px = makeImg(2, 2, 3);

  it('ImageFolder follows linked class folders, linked files and nested folders exactly like torchvision', async () => {
    const root = path.join(tmp, 'if');
    const elsewhere = path.join(tmp, 'elsewhere');
    for (const f of ['cat/a.png', 'cat/sub/b.png', 'cat/sub-2/c.png', 'cat/sub/deeper/d.png', 'emu/e.png']) await writePng(path.join(root, f), px);
    for (const f of ['dogs/x.png', 'dogs/y.png', 'shared/s.png']) await writePng(path.join(elsewhere, f), px);
    fs.symlinkSync(path.join(elsewhere, 'dogs'), path.join(root, 'dog')); // a class folder that is a link
    fs.symlinkSync(path.join(elsewhere, 'shared', 's.png'), path.join(root, 'cat', 'linked.png')); // a file link
    fs.symlinkSync(path.join(elsewhere, 'shared'), path.join(root, 'emu', 'more')); // a nested folder link
    const ref = torchvisionReference(root);
    assert.deepEqual(ref.classes, ['cat', 'dog', 'emu']);
    const ds = await imageFolder(root);
    assert.deepEqual(ds.classes, ref.classes);
    assert.deepEqual(
      Array.from({ length: ds.length }, (_, i) => [ds.info(i).path, ds.info(i).label]),
      ref.samples,
    );
    assert.deepEqual(Array.from(labelsOf(ds)), ref.samples.map((s) => s[1]));
    assert.equal((await ds.get(ref.samples.findIndex((s) => s[0].endsWith('dog/x.png')))).image.channels, 3);
  });

  it('a link loop and a broken link are errors naming the link', async () => {
    const root = path.join(tmp, 'loop');
    await writePng(path.join(root, 'cat', 'sub', 'a.png'), px);
    fs.symlinkSync(path.join(root, 'cat'), path.join(root, 'cat', 'sub', 'up'));
    await assert.rejects(imageFolder(root), new RegExp(`${root}/cat/sub/up: symbolic link loop \\(it resolves to ${root}/cat, a folder that encloses it\\)`));
    fs.unlinkSync(path.join(root, 'cat', 'sub', 'up'));
    fs.symlinkSync(path.join(tmp, 'nowhere.png'), path.join(root, 'cat', 'gone.png'));
    await assert.rejects(imageFolder(root), new RegExp(`${root}/cat/gone.png: broken symbolic link \\(→ ${tmp}/nowhere.png\\)`));
  });

  it('EuroSAT class folders that are links are found (no class vanishes, no label shifts)', async () => {
    const root = path.join(tmp, 'eurosat');
    const base = path.join(root, '2750');
    const { EUROSAT_CLASSES } = await import('../data-loaders/formats/eurosat');
    for (const c of EUROSAT_CLASSES) {
      const dir = c === 'Forest' ? path.join(tmp, 'forest-elsewhere') : path.join(base, c);
      await (await import('../data-loaders/encode')).writeJpeg(path.join(dir, `${c}_1.jpg`), px);
    }
    fs.symlinkSync(path.join(tmp, 'forest-elsewhere'), path.join(base, 'Forest'));
    const ds = await eurosat(root, { variant: 'rgb' });
    assert.deepEqual(Array.from(labelsOf(ds)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  });
});

describe('fMoW-Sentinel timestamps (issue 19.5)', () => {
  const header = ['', 'category', 'location_id', 'image_id', 'timestamp'];
  const csv = (name: string, stamps: string[]): string => {
    const file = path.join(tmp, 'fmow-s', name);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, toCsv(header, stamps.map((s, i) => [i, 'airport', 1, i, s])));
    return file;
  };

  const malformed: Array<[string, RegExp]> = [
    ['16-04-03', /not an ISO 8601 date-time/],
    ['2016/04/03', /not an ISO 8601 date-time/],
    ['2016-13-01', /month 13/],
    ['2016-02-30T00:00:00Z', /day 30 of a 29-day month/],
    ['2015-02-29', /day 29 of a 28-day month/],
    ['2016-04-03T25:00:00Z', /hour 25/],
    ['2016-04-03T09:61:00Z', /minute 61/],
    ['2016-04-03T09:14:52+24:00', /zone offset \+24:00/],
    ['2016-04-03T09:14:52Zjunk', /not an ISO 8601 date-time/],
    ['', /not an ISO 8601 date-time/],
    ['20x6-04-03', /not an ISO 8601 date-time/],
  ];
  for (const [bad, why] of malformed) {
    it(`'${bad}' is an error naming file, line and value (never a silently dropped row)`, async () => {
      const file = csv('bad.csv', ['2016-04-03T09:14:52Z', bad, '2017-01-01T00:00:00Z']);
      await assert.rejects(readFmowSentinelCsv(file), (e: Error) => {
        assert.match(e.message, new RegExp(`bad\\.csv: line 3, column 'timestamp': malformed timestamp '${bad.replace(/[+]/g, '\\+')}'`));
        assert.match(e.message, why);
        return true;
      });
    });
  }

  it('accepts the forms pandas.to_datetime reads, and sorts by instant (zones honoured)', async () => {
    for (const ok of ['2016-04-03', '2016-04-03T09:14', '2016-04-03 09:14:52', '2016-04-03T09:14:52.123456789', '2016-02-29T23:59:59Z', '2016-04-03T09:14:52-0530']) {
      assert.equal(parseSentinelTimestamp(ok, 'x').year, 2016, ok);
    }
    const file = csv('zones.csv', ['2016-04-03T09:00:00Z', '2016-04-03T10:00:00+02:00', '2016-04-03T09:00:00.000000001Z']);
    const recs = await readFmowSentinelCsv(file);
    assert.deepEqual(recs.map((r) => r.meta.imageId), [1, 0, 2], '10:00+02:00 is 08:00Z; a nanosecond later sorts later');
  });

  it('a column mixing zoned and naive times is an error naming both lines (pandas cannot sort it)', async () => {
    const file = csv('mixed.csv', ['2016-04-03T09:00:00Z', '2016-04-04T09:00:00']);
    await assert.rejects(readFmowSentinelCsv(file), /mixed\.csv: line 3, column 'timestamp': '2016-04-04T09:00:00' has no time zone but '2016-04-03T09:00:00Z' \(line 2\) has/);
  });

  it('a year filter that keeps no row names the years the file has', async () => {
    const file = csv('old.csv', ['1999-01-01', '2021-06-01']);
    await assert.rejects(readFmowSentinelCsv(file), /old\.csv: none of the 2 rows falls in the years kept \(2000–2020\); the file has 1999, 2021 \(pass years: null to keep all\)/);
    assert.equal((await readFmowSentinelCsv(file, { years: null })).length, 2);
  });
});
