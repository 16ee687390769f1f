/**
 * Report helpers: display transport, tables, plots, progress bars, slots, parameter tables.
 */
import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import {
  DisplayHandle, MimeBundle, DisplayOptions, setDisplaySink, displayBundle, inKernel, currentSink, textSink, escapeHtml,
} from '../lib/report/display';
import { tableHtml, tableText, tableData, formatCell, toDataFrame, showTable, keyValueRows } from '../lib/report/table';
import { figureBundle, lineFigure, scatterFigure, plotlyInit, scriptSafe, plotlyScriptTags, plotlyLoaderScript, showPlot, placeLabels } from '../lib/report/plot';
import { ProgressBar, track, formatDuration } from '../lib/report/progress';
import { slot, releaseSlot, releaseAllSlots, slotNames, disposeValue, notebookScale } from '../lib/report/notebook';
import { paramTable } from '../lib/report/params';
import { createVit } from '../lib/vit/params';
import { noLeak } from './util';

interface Shown {
  bundle: MimeBundle;
  opts: DisplayOptions;
}
function capture(): Shown[] {
  const shown: Shown[] = [];
  setDisplaySink({ display: (bundle, opts) => shown.push({ bundle, opts }) });
  return shown;
}

describe('report/display', () => {
  afterEach(() => setDisplaySink(null));

  it('is not in a kernel under mocha and falls back to text', () => {
    assert.equal(inKernel(), false);
    assert.equal(currentSink(), textSink);
  });

  it('routes bundles to a custom sink and validates them', () => {
    const shown = capture();
    displayBundle({ 'text/plain': 'hi', 'text/html': '<b>hi</b>' });
    assert.equal(shown.length, 1);
    assert.deepEqual(Object.keys(shown[0].bundle).sort(), ['text/html', 'text/plain']);
    assert.throws(() => displayBundle({ 'text/html': 'x' } as unknown as MimeBundle), /needs a 'text\/plain' string/);
    assert.throws(() => displayBundle({ 'text/plain': 'x', 'image/png': new Uint8Array(2) }), /'image\/png' is binary/);
    assert.throws(() => displayBundle({ 'text/plain': 'x', 'not a mime': 'y' }), /'not a mime' is not a MIME type/);
  });

  it('a display handle creates once and then updates the same id', () => {
    const shown = capture();
    const h = new DisplayHandle();
    h.update({ 'text/plain': 'a' });
    h.update({ 'text/plain': 'b' });
    assert.deepEqual(shown.map((s) => [s.opts.id, s.opts.update]), [[h.id, false], [h.id, true]]);
  });

  it('inside a tslab kernel: found through the module cache, bundles go out as display_data / update_display_data', () => {
    const fake = '/opt/somewhere/node_modules/tslab/dist/jupyter.js';
    const sent: Array<{ msg: { data: Record<string, unknown>; metadata: unknown; transient: { display_id?: string } }; update: boolean }> = [];
    const cache = require.cache as Record<string, unknown>;
    cache[fake] = { id: fake, filename: fake, loaded: true, exports: { lastWriteDisplayData: null } };
    try {
      assert.equal(inKernel(), false, 'a tslab module without a writer (outside an execute request) is not a kernel');
      (cache[fake] as { exports: Record<string, unknown> }).exports.lastWriteDisplayData = (msg: never, update: boolean) => sent.push({ msg, update });
      assert.equal(inKernel(), true);
      assert.notEqual(currentSink(), textSink);
      displayBundle({ 'text/plain': 't', 'text/html': '<i>t</i>' });
      const h = new DisplayHandle('abc');
      h.update({ 'text/plain': '1' });
      h.update({ 'text/plain': '2' });
      assert.deepEqual(sent.map((s) => [Object.keys(s.msg.data).sort().join(','), s.msg.transient.display_id ?? null, s.update]), [
        ['text/html,text/plain', null, false],
        ['text/plain', 'abc', false],
        ['text/plain', 'abc', true],
      ]);
      assert.deepEqual(sent[0].msg.metadata, {});
    } finally {
      delete cache[fake];
    }
    assert.equal(inKernel(), false);
  });

  it('escapes HTML', () => {
    assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;');
  });
});

describe('report/table', () => {
  afterEach(() => setDisplaySink(null));
  const rows = [
    { model: 'ViT<B>', acc: 0.123456, n: 1000 },
    { model: 'LoRA', acc: NaN, n: 12, extra: true },
  ];

  it('formats cells: integers as is, 4 significant digits, empty for NaN/null', () => {
    assert.equal(formatCell(1000), '1000');
    assert.equal(formatCell(0.123456), '0.1235');
    assert.equal(formatCell(123.456789), '123.5');
    assert.equal(formatCell(1.5e-7), '1.500e-7');
    assert.equal(formatCell(NaN), '');
    assert.equal(formatCell(null), '');
    assert.equal(formatCell([1, 0.5]), '[1, 0.5]');
    assert.equal(formatCell({ a: 1 }), '{"a":1}');
  });

  it('rows → HTML table with escaped cells, right-aligned numeric columns and first-seen column order', () => {
    const html = tableHtml(rows, { caption: 'results' });
    assert.match(html, /^<table class="vitpeft-table"><caption>results<\/caption><thead><tr><th>model<\/th><th style="text-align:right">acc<\/th>/);
    assert.ok(html.includes('<td>ViT&lt;B&gt;</td>'), html);
    assert.ok(!html.includes('<B>'));
    assert.ok(html.includes('<td style="text-align:right">0.1235</td>'));
    assert.ok(html.includes('<th>extra</th>'));
    assert.equal((html.match(/<tr>/g) ?? []).length, 3);
  });

  it('rows → aligned text', () => {
    const text = tableText(rows);
    const lines = text.split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[0], /^model\s+acc\s+n\s+extra$/);
    assert.match(lines[1], /^-+\s+-+\s+-+\s+-+$/);
    // numbers right-aligned: the 'n' column ends at the same position in every row
    const end = (l: string, s: string): number => l.indexOf(s) + s.length;
    assert.equal(end(lines[2], '1000'), end(lines[3], '  12'));
  });

  it('danfo DataFrame and Series → table (index shown when it is not 0..n-1)', () => {
    const df = toDataFrame(rows);
    assert.deepEqual(df.columns, ['model', 'acc', 'n', 'extra']);
    const t = tableData(df);
    assert.equal(t.rows.length, 2);
    assert.equal(t.rows[0][0], 'ViT<B>');
    const html = tableHtml(df);
    assert.ok(html.includes('ViT&lt;B&gt;'));
    const series = tableData(df['n']);
    assert.deepEqual(series.columns, ['n']);
    assert.deepEqual(series.rows, [[1000], [12]]);
    const described = df.loc({ columns: ['acc', 'n'] }).describe();
    const text = tableText(described);
    assert.match(text.split('\n')[2], /^count/);
  });

  it('long tables keep head and tail with an ellipsis row', () => {
    const many = Array.from({ length: 100 }, (_, i) => ({ i }));
    const text = tableText(many, { maxRows: 10 });
    const lines = text.split('\n');
    assert.equal(lines.length, 2 + 10 + 1);
    assert.equal(lines[7].trim(), '… 90 more rows …');
    assert.equal(lines[lines.length - 1].trim(), '99');
    assert.ok(tableHtml(many, { maxRows: 10 }).includes('… 90 more rows …'));
  });

  it('rejects bad input naming what is wrong', () => {
    assert.throws(() => tableData([{ a: 1 }, 3 as unknown as object]), /row 1 is not an object/);
    assert.throws(() => tableData({ columns: ['a', 'b'], values: [[1]] }), /rows have 1 cells but there are 2 columns \(a, b\)/);
    assert.throws(() => tableText([{ a: 1 }], { maxRows: 1 }), /maxRows must be an integer ≥ 2/);
  });

  it('showTable sends html + text; keyValueRows flattens nested objects', () => {
    const shown = capture();
    showTable(keyValueRows({ a: 1, b: { c: 'x', d: [1, 2] } }));
    assert.equal(shown.length, 1);
    assert.ok((shown[0].bundle['text/html'] as string).includes('<td>b.c</td>'));
    assert.match(shown[0].bundle['text/plain'], /b\.d\s+\[1, 2\]/);
  });
});

describe('report/progress: durations', () => {
  it('rounds once: no 60s or 8m60s at the boundaries', () => {
    assert.deepEqual([4.24, 9.94, 9.96, 59.4, 59.6, 60, 539.4, 539.6, 3599.6, 3725].map(formatDuration),
      ['4.2s', '9.9s', '10s', '59s', '1m00s', '1m00s', '8m59s', '9m00s', '1h00m', '1h02m']);
    assert.equal(formatDuration(NaN), '?');
  });
});

describe('report/plot', () => {
  const saved = process.env.VITPEFT_PLOTLY;
  afterEach(() => {
    setDisplaySink(null);
    if (saved === undefined) delete process.env.VITPEFT_PLOTLY;
    else process.env.VITPEFT_PLOTLY = saved;
  });
  const fig = lineFigure([{ name: 'loss', y: [3, 2, 1] }, { name: 'acc', y: [0.1, 0.5, 0.9], x: [10, 20, 30] }], { title: 'curves', xTitle: 'step' });

  it('figure → bundle with text/html (div + newPlot), the plotly JSON type and a text summary', () => {
    process.env.VITPEFT_PLOTLY = 'external';
    const b = figureBundle(fig, { id: 'p1' });
    assert.deepEqual(Object.keys(b).sort(), ['application/vnd.plotly.v1+json', 'text/html', 'text/plain']);
    const html = b['text/html'] as string;
    assert.ok(html.includes('<div id="p1" class="vitpeft-plot"'), html);
    assert.ok(html.includes('window.Plotly.newPlot(el,fig.data,fig.layout,fig.config)'));
    assert.ok(html.length < 5000, 'external mode must not inline plotly.js');
    const json = b['application/vnd.plotly.v1+json'] as { data: Array<{ y: number[]; x: number[] }>; layout: { title: { text: string } } };
    assert.deepEqual(json.data[0].y, [3, 2, 1]);
    assert.deepEqual(json.data[0].x, [0, 1, 2]);
    assert.deepEqual(json.data[1].x, [10, 20, 30]);
    assert.equal(json.layout.title.text, 'curves');
    // The figure embedded in the script is the same figure.
    const m = /var fig=(\{.*?\});function draw/.exec(html);
    assert.ok(m);
    assert.deepEqual(JSON.parse(m![1]).data, json.data);
    assert.equal(b['text/plain'], "plotly figure: curves (2 traces)\n  0: scatter 'loss' 3 points y ∈ [1.000, 3.000]\n  1: scatter 'acc' 3 points y ∈ [0.1000, 0.9000]");
  });

  const plotlyState = (): { shipped: boolean } => (globalThis as unknown as Record<symbol, { shipped: boolean }>)[Symbol.for('vitpeft.report.plotly')];

  it('inline mode: plotlyInit sends plotly.js to the page in an output replaced at once by a small stub (a saved notebook keeps only the stub)', () => {
    process.env.VITPEFT_PLOTLY = 'inline';
    const shown = capture();
    plotlyInit();
    assert.equal(shown.length, 2);
    const [first, stub] = shown;
    assert.equal(first.opts.update, false);
    assert.equal(stub.opts.update, true);
    assert.equal(stub.opts.id, first.opts.id, 'the stub replaces the bundle (update_display_data with the same display id)');
    const init = first.bundle['text/html'] as string;
    assert.ok(init.length > 5e6, `plotly.js should be sent (${init.length} chars)`);
    assert.ok(init.indexOf('window.define = undefined') < init.indexOf('Plotly'), 'define must be hidden before plotly loads');
    const kept = stub.bundle['text/html'] as string;
    assert.ok(kept.length < 3000, `the stored stub is small (${kept.length} chars)`);
    assert.match(kept, /nbextensions\/vitpeft\/plotly-4\.1\.1/, 'after a reload the stub loads plotly.js from the Jupyter server');
    assert.match(stub.bundle['text/plain'], /not stored in the notebook/);
    const after = figureBundle(fig)['text/html'] as string;
    assert.ok(after.length < 5000, 'figures never carry plotly.js by default');
    assert.match(after, /nbextensions\/vitpeft\/plotly-4\.1\.1/, 'a figure loads plotly.js itself when the page has none');
    assert.ok((figureBundle(fig, { includePlotly: true })['text/html'] as string).length > 5e6);
  });

  it('inline mode: the first showPlot of a session sends plotly.js first (replaced by the stub), later ones do not', () => {
    process.env.VITPEFT_PLOTLY = 'inline';
    plotlyState().shipped = false;
    const shown = capture();
    showPlot(fig);
    showPlot(fig);
    assert.deepEqual(shown.map((s) => [s.opts.update ?? false, (s.bundle['text/html'] as string).length > 5e6]), [
      [false, true], [true, false], [false, false], [false, false],
    ]);
    assert.ok(shown.slice(1).every((s) => (s.bundle['text/html'] as string).length < 5000));
  });

  it('external mode (the headless runner): plotlyInit shows nothing, figures carry no plotly.js', () => {
    process.env.VITPEFT_PLOTLY = 'external';
    plotlyState().shipped = false;
    const shown = capture();
    plotlyInit();
    assert.equal(shown.length, 0);
    showPlot(fig);
    assert.equal(shown.length, 1);
    assert.ok((shown[0].bundle['text/html'] as string).length < 5000);
  });

  it('the loader script reads the base URL from the page and uses require.js where the page has it', () => {
    const js = plotlyLoaderScript('9.9.9');
    assert.match(js, /data-base-url/);
    assert.match(js, /jupyter-config-data/);
    assert.match(js, /requirejs\.config\(\{paths:\{"vitpeft-plotly":url\}\}\)/);
    assert.match(js, /"nbextensions\/vitpeft\/plotly-9\.9\.9"/);
    assert.match(js, /https\?:/, 'does nothing on file: pages');
  });

  it('script text cannot close its <script> tag', () => {
    assert.equal(scriptSafe('a</script>b<!--c'), 'a<\\/script>b<\\!--c');
    const b = figureBundle({ data: [{ type: 'bar', name: '</script><script>alert(1)</script>', y: [1] }] }, { includePlotly: false });
    const html = b['text/html'] as string;
    assert.equal((html.match(/<\/script>/g) ?? []).length, 1, html);
    assert.equal(plotlyScriptTags('x</script>').match(/<\/script>/g)!.length, 3);
  });

  it('scatterFigure: markers with optional labels, log axes', () => {
    const f = scatterFigure([{ name: 'ToMe', x: [10, 20], y: [0.8, 0.7], text: ['r=8', 'r=16'] }, { name: 'base', x: [5], y: [0.85] }], { logX: true, xTitle: 'img/s' });
    assert.deepEqual(f.data.map((t) => t.mode), ['markers+text', 'markers']);
    assert.deepEqual(f.data[0].text, ['r=8', 'r=16']);
    assert.deepEqual((f.layout!.xaxis as { type: string }).type, 'log');
    assert.throws(() => scatterFigure([{ name: 'a', x: [1, 2], y: [1, 2], text: ['x'] }]), /series 'a' has 1 labels for 2 points/);
    assert.throws(() => scatterFigure([{ name: 'a', x: [1], y: [1, 2] }]), /series 'a' has 1 x and 2 y values/);
  });

  it('scatter labels: a label repeated at the same point is drawn once, edge labels lean inwards, close labels go below', () => {
    const f = scatterFigure([
      { name: 'base', x: [15], y: [15.6], text: ['LoRA'] },
      { name: 'ToMe', x: [15, 19, 24.4], y: [15.6, 15.6, 14.05], text: ['LoRA', 'low', 'high'] },
      { name: 'PYRA', x: [15, 12.4, 26], y: [15.6, 15.6, 14.05], text: ['LoRA', 'low', 'high'] },
      { name: 'small', x: [49.8], y: [9.4], text: ['smaller model'] },
      { name: 'no labels', x: [30], y: [12] },
    ]);
    assert.deepEqual(f.data.map((t) => t.text), [['LoRA'], ['', 'low', 'high'], ['', 'low', 'high'], ['smaller model'], undefined]);
    assert.deepEqual(f.data.map((t) => t.textposition), [
      ['top right'], ['bottom right', 'bottom right', 'top center'], ['bottom right', 'bottom right', 'bottom center'], ['top left'], undefined,
    ]);
    assert.ok(f.data.slice(0, 4).every((t) => t.cliponaxis === false), 'labels may leave the plot area rather than be cut');
    assert.deepEqual((f.layout!.title as unknown) ?? null, null);
    const titled = scatterFigure([{ name: 'a', x: [1], y: [1] }], { title: 't' });
    assert.deepEqual(titled.layout!.title, { text: 't', x: 0, xref: 'paper', xanchor: 'left' }, 'left-aligned: clear of the mode bar');
    // Log axes: positions are judged on the log scale.
    assert.deepEqual(placeLabels([{ x: [1, 10, 100], y: [1, 1, 1], text: ['a', 'b', 'c'] }], { logX: true })[0]!.position, ['top right', 'top center', 'top left']);
  });

  it('rejects bad figures and modes', () => {
    assert.throws(() => figureBundle({} as never), /needs a `data` array/);
    assert.throws(() => figureBundle({ data: [3 as never] }), /data\[0\] is not a trace object/);
    assert.throws(() => lineFigure([{ name: 'a', y: [1, 2], x: [1] }]), /series 'a' has 1 x and 2 y values/);
    process.env.VITPEFT_PLOTLY = 'cdn';
    assert.throws(() => showPlot(fig), /VITPEFT_PLOTLY: expected 'inline' or 'external', got 'cdn'/);
  });
});

describe('report/progress', () => {
  afterEach(() => setDisplaySink(null));

  it('updates one display in place, throttled, and always shows the final state', () => {
    const shown = capture();
    let t = 0;
    const bar = new ProgressBar(100, { label: 'train', now: () => t, minIntervalMs: 250 });
    assert.equal(bar.mode, 'display');
    for (let i = 0; i < 100; i++) {
      t += 10; // 100 items over 1 s → about 4 throttled updates plus the completion
      bar.tick(1, { loss: 1 / (i + 1) });
    }
    bar.done();
    const ids = new Set(shown.map((s) => s.opts.id));
    assert.equal(ids.size, 1, 'all updates go to one display');
    assert.deepEqual(shown.map((s) => s.opts.update), [false, ...shown.slice(1).map(() => true)]);
    assert.ok(shown.length >= 4 && shown.length <= 7, `throttled to a few renders, got ${shown.length}`);
    const last = shown[shown.length - 1].bundle;
    assert.match(last['text/plain'], /^train 100\/100 \[#{24}\] 100% 1\.0s 100 it\/s loss=0\.01$/);
    assert.match(last['text/html'] as string, /<progress value="100" max="100"/);
    assert.equal(bar.state.done, 100);
    assert.equal(bar.state.finished, true);
    assert.throws(() => bar.tick(), /update after done\(\)/);
  });

  it('terminal mode rewrites one line; log mode prints occasional lines', () => {
    let out = '';
    let t = 0;
    const tty = new ProgressBar(4, { mode: 'tty', stream: { write: (s: string) => (out += s) }, now: () => t, minIntervalMs: 0 });
    for (let i = 0; i < 4; i++) {
      t += 500;
      tty.tick();
    }
    tty.done();
    assert.equal(out.split('\r').length - 1, 5);
    assert.ok(out.endsWith('\n'));
    assert.ok(!out.slice(0, -1).includes('\n'), 'a tty bar stays on one line');
    let log = '';
    t = 0;
    const lines = new ProgressBar(1000, { mode: 'lines', stream: { write: (s: string) => (log += s) }, now: () => t });
    for (let i = 0; i < 1000; i++) {
      t += 100; // 100 s in all, one line per 10 s
      lines.tick();
    }
    lines.done();
    const n = log.trim().split('\n').length;
    assert.ok(n >= 10 && n <= 12, `expected ~11 log lines, got ${n}`);
  });

  it('track() iterates and completes; bad totals are rejected', () => {
    const shown = capture();
    const seen = [...track([1, 2, 3], { label: 'items', minIntervalMs: 0 })];
    assert.deepEqual(seen, [1, 2, 3]);
    assert.match(shown[shown.length - 1].bundle['text/plain'], /^items 3\/3 /);
    assert.throws(() => new ProgressBar(-1), /total must be an integer ≥ 0/);
  });
});

describe('report/notebook slots', () => {
  afterEach(() => releaseAllSlots());
  const build = () => createVit('vit_tiny_patch16_224', { imgSize: 32, depth: 1, numClasses: 3 }, { seed: 0 });

  it('re-running a model-building cell neither leaks nor clashes on variable names', async () => {
    slot('vit', build);
    await noLeak(() => {
      for (let k = 0; k < 3; k++) slot('vit', build);
    });
    assert.deepEqual(slotNames(), ['vit']);
    const before = tf.memory().numTensors;
    releaseSlot('vit');
    assert.ok(tf.memory().numTensors < before);
  });

  it('the same cell without a slot leaks (what slot prevents) but still does not clash', () => {
    const before = tf.memory().numTensors;
    const a = build();
    const b = build();
    assert.notEqual(a.scope, b.scope);
    assert.ok(tf.memory().numTensors > before);
    disposeValue([a, b]);
    assert.equal(tf.memory().numTensors, before);
  });

  it('disposeValue walks plain containers, calls dispose(), and leaves other class instances alone', () => {
    const before = tf.memory().numTensors;
    let disposed = 0;
    class Holder {
      t = tf.scalar(1);
    }
    const holder = new Holder();
    const v = { a: [tf.scalar(1)], m: new Map([['x', tf.scalar(2)]]), s: new Set([tf.scalar(3)]), d: { dispose: () => (disposed += 1) }, holder };
    disposeValue(v);
    assert.equal(disposed, 1);
    assert.equal(tf.memory().numTensors, before + 1, 'only the Holder instance tensor is left');
    holder.t.dispose();
  });

  it('async factories: the resolved value is disposed on the next run; custom disposers are used', async () => {
    let disposedWith: unknown = null;
    const p = slot('async', async () => 41, (v) => (disposedWith = v));
    assert.equal(await p, 41);
    await new Promise((r) => setImmediate(r));
    slot('async', () => Promise.resolve(42), (v) => (disposedWith = v));
    assert.equal(disposedWith, 41);
  });

  it('notebookScale reads VITPEFT_SCALE and validates', () => {
    const saved = process.env.VITPEFT_SCALE;
    try {
      delete process.env.VITPEFT_SCALE;
      assert.equal(notebookScale('smoke'), 'smoke');
      process.env.VITPEFT_SCALE = 'paper';
      assert.equal(notebookScale('smoke'), 'paper');
      process.env.VITPEFT_SCALE = 'huge';
      assert.throws(() => notebookScale('smoke'), /'huge' \(from VITPEFT_SCALE\) is not one of ci, smoke, paper/);
      process.env.VITPEFT_SCALE = 'ci';
      assert.equal(notebookScale('smoke'), 'ci');
    } finally {
      if (saved === undefined) delete process.env.VITPEFT_SCALE;
      else process.env.VITPEFT_SCALE = saved;
    }
  });
});

describe('report/params', () => {
  it('groups a ViT by module with exact counts and marks what trains', () => {
    const vit = createVit('vit_tiny_patch16_224', { imgSize: 32, depth: 2, numClasses: 10 }, { seed: 0 });
    try {
      const rows = paramTable(vit.params, { depth: 3, collapseIndex: true });
      const by = Object.fromEntries(rows.map((r) => [r.group, r]));
      const D = 192;
      const hidden = 4 * D;
      assert.deepEqual(rows.map((r) => r.group), ['cls_token', 'pos_embed', 'patch_embed.proj', 'blocks.*.norm1', 'blocks.*.attn', 'blocks.*.norm2', 'blocks.*.mlp', 'norm', 'head', 'total']);
      assert.equal(by['blocks.*.attn'].params, 2 * (D * 3 * D + 3 * D + D * D + D));
      assert.equal(by['blocks.*.mlp'].params, 2 * (D * hidden + hidden + hidden * D + D));
      assert.equal(by['patch_embed.proj'].params, 16 * 16 * 3 * D + D);
      assert.equal(by['pos_embed'].params, (1 + 4) * D);
      assert.equal(by.total.params, rows.slice(0, -1).reduce((a, r) => a + r.params, 0));
      assert.equal(by.total['trainable %'], 100);
      const head = new Map([['head.weight', vit.params.head!.weight], ['head.bias', vit.params.head!.bias!]]);
      const t = paramTable(vit.params, { trainable: head });
      const total = t[t.length - 1];
      assert.equal(total.trainable, D * 10 + 10);
      assert.equal(t.find((r) => r.group === 'blocks')!.trainable, 0);
      assert.throws(() => paramTable(vit.params, { depth: 0 }), /depth must be an integer ≥ 1/);
    } finally {
      disposeValue(vit);
    }
  });
});
