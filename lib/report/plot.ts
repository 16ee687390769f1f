/**
 * Plots: plotly figures as notebook outputs that draw everywhere without network access, and without storing
 * plotly.js (~10 MB) in the notebook.
 *
 * A figure becomes one MIME bundle:
 * - `text/html`: a `<div>` plus a script calling `Plotly.newPlot` (what classic Jupyter and the HTML export show);
 * - `application/vnd.plotly.v1+json`: the figure itself (JupyterLab's plotly renderer, and the executed .ipynb);
 * - `text/plain`: a one-line-per-trace summary (terminals).
 *
 * plotly.js (plotly.js-dist) reaches the page in one of these ways, chosen by `VITPEFT_PLOTLY`:
 * - `inline` (default, interactive use): `plotlyInit()` (or the session's first figure) sends plotly.js to the open
 *   page in an output that is replaced right away by a small stub, so the page has `window.Plotly` but a saved
 *   notebook does not carry the bundle. After a reload (saved notebook, no kernel), each chart loads plotly.js once per
 *   page from the Jupyter server: `<base url>nbextensions/vitpeft/plotly-<version>.js`, installed next to the kernel
 *   by environment/install-kernel.sh (classic Notebook serves that folder).
 * - `external` (the headless runner): nothing is sent; the runner injects plotly.js into the exported HTML's `<head>`.
 * Debian's nbconvert loads require.js into exported pages; every script that loads plotly hides `define` meanwhile so
 * the bundle always sets `window.Plotly`.
 */
import { readFileSync } from 'fs';
import { randomBytes } from 'crypto';
import { MimeBundle, displayBundle, escapeHtml, DisplayHandle } from './display';

/** A plotly figure (https://plotly.com/javascript/reference/). */
export interface PlotlyFigure {
  data: Array<Record<string, unknown>>;
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

export type PlotlyMode = 'inline' | 'external';

/** How plotly.js reaches the page (`VITPEFT_PLOTLY`, default 'inline'). */
export function plotlyMode(): PlotlyMode {
  const raw = process.env.VITPEFT_PLOTLY ?? 'inline';
  if (raw !== 'inline' && raw !== 'external') {
    throw new Error(`VITPEFT_PLOTLY: expected 'inline' or 'external', got '${raw}'`);
  }
  return raw;
}

/** Shared across copies of this module in one process (a notebook may load the kit twice). */
const STATE_KEY = Symbol.for('vitpeft.report.plotly');
function state(): { shipped: boolean } {
  const g = globalThis as unknown as Record<symbol, { shipped: boolean } | undefined>;
  return (g[STATE_KEY] ??= { shipped: false });
}

/** Path of plotly.js (plotly.js-dist). */
export function plotlyPath(): string {
  return require.resolve('plotly.js-dist/plotly.js');
}

/** Version of the plotly.js bundle. */
export function plotlyVersion(): string {
  return (require('plotly.js-dist/package.json') as { version: string }).version;
}

/**
 * Where a Jupyter server serves plotly.js, relative to its base URL: `nbextensions/vitpeft/plotly-<version>.js`
 * (environment/install-kernel.sh copies the bundle into `<jupyter data dir>/nbextensions/vitpeft/`).
 */
export function plotlyServedPath(version: string = plotlyVersion()): string {
  return `nbextensions/vitpeft/plotly-${version}.js`;
}

/** Make text safe inside an inline `<script>` (no `</script>` or HTML comment openers; JS line separators escaped). */
export function scriptSafe(js: string): string {
  return js.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--').replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

/**
 * `<script>` tags that load plotly.js into a page with `define` (require.js) hidden, so `window.Plotly` is set
 * whether or not the page uses AMD.
 */
export function plotlyScriptTags(source: string = readFileSync(plotlyPath(), 'utf8')): string {
  return (
    '<script type="text/javascript">window.__vitpeftDefine = window.define; window.define = undefined;</script>\n' +
    `<script type="text/javascript">${scriptSafe(source)}</script>\n` +
    '<script type="text/javascript">window.define = window.__vitpeftDefine; delete window.__vitpeftDefine;</script>'
  );
}

/**
 * JavaScript that loads plotly.js from the Jupyter server serving the page, once per page, when the page has no
 * `window.Plotly` yet (a saved notebook reopened without running it). Does nothing on `file:` pages (HTML exports carry
 * plotly.js in their `<head>` when made by the runner). The base URL is the page's (`data-base-url` in classic
 * Notebook, `jupyter-config-data` elsewhere), so servers under a prefix work.
 */
export function plotlyLoaderScript(version: string = plotlyVersion()): string {
  const rel = JSON.stringify(plotlyServedPath(version).replace(/\.js$/, ''));
  return (
    '(function(){if(window.Plotly||window.__vitpeftPlotlyLoading||!/^https?:$/.test(location.protocol))return;' +
    'window.__vitpeftPlotlyLoading=true;var base="/";' +
    'try{var b=document.body&&document.body.getAttribute("data-base-url");' +
    'var c=document.getElementById("jupyter-config-data");' +
    'if(b)base=b;else if(c)base=JSON.parse(c.textContent||"{}").baseUrl||"/";}catch(e){}' +
    'if(base.charAt(base.length-1)!=="/")base+="/";var url=base+' + rel + ';' +
    // Pages with require.js (classic Notebook): load it as an AMD module, the way that page loads scripts.
    'if(window.requirejs&&typeof window.define==="function"&&window.define.amd){' +
    'window.requirejs.config({paths:{"vitpeft-plotly":url}});' +
    'window.requirejs(["vitpeft-plotly"],function(P){if(!window.Plotly)window.Plotly=P;},function(){});return;}' +
    'var s=document.createElement("script");s.type="text/javascript";s.src=url+".js";document.head.appendChild(s);})();'
  );
}

/**
 * Send plotly.js to the notebook page (inline mode; call it once in a setup cell — the first chart does it otherwise).
 * The bundle goes out in an output that is replaced at once by a small stub: the open page keeps `window.Plotly`,
 * the saved notebook does not keep the bundle. External mode (the headless runner): shows nothing.
 */
export function plotlyInit(): void {
  if (plotlyMode() === 'external') {
    state().shipped = true;
    return;
  }
  const version = plotlyVersion();
  const h = new DisplayHandle(`vitpeft-plotly-${randomBytes(6).toString('hex')}`);
  h.update({ 'text/html': plotlyScriptTags(), 'text/plain': `plotly.js ${version}` });
  h.update({
    'text/html': `<script type="text/javascript">${plotlyLoaderScript(version)}</script>`,
    'text/plain': `plotly.js ${version} sent to the page (not stored in the notebook)`,
  });
  state().shipped = true;
}

function summary(fig: PlotlyFigure): string {
  const layout = fig.layout ?? {};
  const title = layout.title;
  const titleText = typeof title === 'string' ? title : typeof title === 'object' && title ? String((title as { text?: unknown }).text ?? '') : '';
  const lines = [`plotly figure${titleText ? `: ${titleText}` : ''} (${fig.data.length} trace${fig.data.length === 1 ? '' : 's'})`];
  fig.data.forEach((t, i) => {
    const n = Array.isArray(t.y) ? t.y.length : Array.isArray(t.x) ? t.x.length : Array.isArray(t.z) ? t.z.length : 0;
    const ys = Array.isArray(t.y) ? (t.y as unknown[]).filter((v): v is number => typeof v === 'number' && Number.isFinite(v)) : [];
    const range = ys.length ? ` y ∈ [${Math.min(...ys).toPrecision(4)}, ${Math.max(...ys).toPrecision(4)}]` : '';
    lines.push(`  ${i}: ${String(t.type ?? 'scatter')} ${t.name !== undefined ? `'${String(t.name)}' ` : ''}${n} points${range}`);
  });
  return lines.join('\n');
}

function checkFigure(fig: PlotlyFigure): void {
  if (typeof fig !== 'object' || fig === null || !Array.isArray(fig.data)) {
    throw new Error('plot: a figure needs a `data` array of traces ({data: [...], layout?: {...}})');
  }
  fig.data.forEach((t, i) => {
    if (typeof t !== 'object' || t === null || Array.isArray(t)) throw new Error(`plot: data[${i}] is not a trace object`);
  });
}

export interface PlotOptions {
  /** Height of the chart in px (default: layout.height or 420). */
  height?: number;
  /** Element id (default random). */
  id?: string;
  /** Put plotly.js itself into this output (~10 MB; default false: it reaches the page once, see the module doc). */
  includePlotly?: boolean;
}

/** The figure as a MIME bundle: text/html (div + newPlot), the plotly JSON type and a text summary. */
export function figureBundle(fig: PlotlyFigure, o: PlotOptions = {}): MimeBundle {
  checkFigure(fig);
  const id = o.id ?? `vitpeft-plot-${randomBytes(6).toString('hex')}`;
  if (!/^[A-Za-z][-\w]*$/.test(id)) throw new Error(`plot: id '${id}' is not a valid element id`);
  const layout = fig.layout ?? {};
  const height = o.height ?? (typeof layout.height === 'number' ? layout.height : 420);
  const json = scriptSafe(JSON.stringify({ data: fig.data, layout, config: { responsive: true, displaylogo: false, ...(fig.config ?? {}) } }));
  const script =
    `(function(){var id=${JSON.stringify(id)};var fig=${json};` +
    'function draw(){var el=document.getElementById(id);if(el)window.Plotly.newPlot(el,fig.data,fig.layout,fig.config);}' +
    'if(window.Plotly){draw();return;}' +
    `${plotlyLoaderScript()}` +
    'var n=0,t=setInterval(function(){if(window.Plotly){clearInterval(t);draw();}else if(++n>150){clearInterval(t);' +
    'var el=document.getElementById(id);if(el)el.textContent="plotly.js is not loaded on this page: run plotlyInit() in the notebook, ' +
    'or register the kernel with environment/install-kernel.sh (it installs plotly.js for Jupyter)";}},100);})();';
  const html =
    (o.includePlotly ? `${plotlyScriptTags()}\n` : '') +
    `<div id="${escapeHtml(id)}" class="vitpeft-plot" style="width:100%;height:${height}px"></div>\n` +
    `<script type="text/javascript">${script}</script>`;
  return {
    'text/html': html,
    'application/vnd.plotly.v1+json': { data: fig.data, layout },
    'text/plain': summary(fig),
  };
}

/** Show a plotly figure (inline mode: the session's first figure sends plotly.js to the page first, see plotlyInit). */
export function showPlot(fig: PlotlyFigure, o: PlotOptions = {}): void {
  const bundle = figureBundle(fig, o);
  if (!o.includePlotly && plotlyMode() === 'inline' && !state().shipped) plotlyInit();
  displayBundle(bundle);
}

/** One named line of a line chart. */
export interface LineSeries {
  name: string;
  y: ArrayLike<number>;
  /** Default 0..n-1. */
  x?: ArrayLike<number>;
  /** plotly mode (default 'lines'). */
  mode?: 'lines' | 'markers' | 'lines+markers';
}

/** A line-chart figure (loss curves, accuracy vs iterations). */
export function lineFigure(
  series: LineSeries[],
  o: { title?: string; xTitle?: string; yTitle?: string; logY?: boolean } = {},
): PlotlyFigure {
  return {
    data: series.map((s) => {
      if (s.x && s.x.length !== s.y.length) throw new Error(`lineFigure: series '${s.name}' has ${s.x.length} x and ${s.y.length} y values`);
      return {
        type: 'scatter',
        mode: s.mode ?? 'lines',
        name: s.name,
        x: s.x ? Array.from(s.x) : Array.from({ length: s.y.length }, (_, i) => i),
        y: Array.from(s.y),
      };
    }),
    layout: {
      ...(o.title ? { title: titleLayout(o.title) } : {}),
      xaxis: { title: { text: o.xTitle ?? '' }, automargin: true },
      yaxis: { title: { text: o.yTitle ?? '' }, automargin: true, ...(o.logY ? { type: 'log' } : {}) },
      margin: { t: o.title ? 50 : 20, r: 20, b: 50, l: 60 },
    },
  };
}

/** One named group of points of a scatter chart (accuracy vs throughput, probe accuracy vs parameters...). */
export interface ScatterSeries {
  name: string;
  x: ArrayLike<number>;
  y: ArrayLike<number>;
  /** A label per point, drawn next to it. */
  text?: readonly string[];
}

/**
 * Where each point label goes (plotly `textposition`), so labels stay inside the chart and do not cover each other:
 * a label repeated at the same point by another series (two methods sharing a baseline point) is drawn once (the later
 * copies become ''); labels in the right or left fifth of the x range lean inwards (the plot area clips nothing then,
 * and the legend sits right of it); a label close to one already placed above its point goes below its own point.
 * Returns per series the positions and the (deduplicated) texts; series without labels get nulls.
 */
export function placeLabels(
  series: ReadonlyArray<{ x: ArrayLike<number>; y: ArrayLike<number>; text?: readonly string[] }>,
  o: { logX?: boolean; logY?: boolean } = {},
): Array<{ text: string[]; position: string[] } | null> {
  const tx = (v: number): number => (o.logX ? Math.log10(Math.max(v, Number.MIN_VALUE)) : v);
  const ty = (v: number): number => (o.logY ? Math.log10(Math.max(v, Number.MIN_VALUE)) : v);
  const xs = series.flatMap((s) => Array.from(s.x, tx)).filter(Number.isFinite);
  const ys = series.flatMap((s) => Array.from(s.y, ty)).filter(Number.isFinite);
  const span = (v: number[]): [number, number] => (v.length ? [Math.min(...v), Math.max(...v)] : [0, 1]);
  const [x0, x1] = span(xs);
  const [y0, y1] = span(ys);
  const nx = (v: number): number => (x1 > x0 ? (tx(v) - x0) / (x1 - x0) : 0.5);
  const ny = (v: number): number => (y1 > y0 ? (ty(v) - y0) / (y1 - y0) : 0.5);
  const placed: Array<{ x: number; y: number; text: string; vertical: 'top' | 'bottom' }> = [];
  return series.map((s) => {
    if (!s.text) return null;
    const text: string[] = [];
    const position: string[] = [];
    s.text.forEach((label, i) => {
      const x = nx(s.x[i]);
      const y = ny(s.y[i]);
      const same = placed.some((p) => p.text === label && Math.abs(p.x - x) < 1e-9 && Math.abs(p.y - y) < 1e-9);
      const horizontal = x > 0.8 ? 'left' : x < 0.2 ? 'right' : 'center';
      const crowded = placed.some((p) => p.vertical === 'top' && Math.abs(p.x - x) < 0.12 && Math.abs(p.y - y) < 0.08);
      const vertical = crowded ? 'bottom' : 'top';
      text.push(same ? '' : label);
      position.push(`${vertical} ${horizontal}`);
      if (!same && label) placed.push({ x, y, text: label, vertical });
    });
    return { text, position };
  });
}

/** A scatter-chart figure with optional point labels (placed by `placeLabels`: inside the chart, not doubled). */
export function scatterFigure(
  series: ScatterSeries[],
  o: { title?: string; xTitle?: string; yTitle?: string; logX?: boolean; logY?: boolean } = {},
): PlotlyFigure {
  series.forEach((s) => {
    if (s.x.length !== s.y.length) throw new Error(`scatterFigure: series '${s.name}' has ${s.x.length} x and ${s.y.length} y values`);
    if (s.text && s.text.length !== s.x.length) throw new Error(`scatterFigure: series '${s.name}' has ${s.text.length} labels for ${s.x.length} points`);
  });
  const labels = placeLabels(series, o);
  return {
    data: series.map((s, k) => ({
      type: 'scatter',
      mode: s.text ? 'markers+text' : 'markers',
      name: s.name,
      x: Array.from(s.x),
      y: Array.from(s.y),
      ...(labels[k] ? { text: labels[k]!.text, textposition: labels[k]!.position, cliponaxis: false } : {}),
      marker: { size: 9 },
    })),
    layout: {
      ...(o.title ? { title: titleLayout(o.title) } : {}),
      xaxis: { title: { text: o.xTitle ?? '' }, automargin: true, ...(o.logX ? { type: 'log' } : {}) },
      yaxis: { title: { text: o.yTitle ?? '' }, automargin: true, ...(o.logY ? { type: 'log' } : {}) },
      margin: { t: o.title ? 50 : 20, r: 20, b: 50, l: 60 },
    },
  };
}

/** A chart title aligned with the plot's left edge (plotly's centred default runs under the mode bar at top right). */
export function titleLayout(text: string): Record<string, unknown> {
  return { text, x: 0, xref: 'paper', xanchor: 'left' };
}
