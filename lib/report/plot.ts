/**
 * Plots: plotly figures as notebook outputs that draw everywhere without network access.
 *
 * A figure becomes one MIME bundle:
 * - `text/html`: a `<div>` plus a script calling `Plotly.newPlot` (what classic Jupyter and the HTML export show);
 * - `application/vnd.plotly.v1+json`: the figure itself (JupyterLab's plotly renderer, and the executed .ipynb);
 * - `text/plain`: a one-line-per-trace summary (terminals).
 *
 * plotly.js itself (plotly.js-dist, ~10 MB) reaches the page in one of two ways, chosen by `VITPEFT_PLOTLY`:
 * - `inline` (default, interactive use): `plotlyInit()` (call it once in a setup cell) emits plotly.js as one output;
 *   if it was never called, the first figure of the kernel session carries it instead.
 * - `external` (the headless runner): figures reference `window.Plotly` only and the runner injects plotly.js into
 *   the exported HTML's `<head>` (executed notebooks stay small).
 * Debian's nbconvert loads require.js into exported pages; the inlined script hides `define` while plotly loads so
 * the bundle always sets `window.Plotly`.
 */
import { readFileSync } from 'fs';
import { randomBytes } from 'crypto';
import { MimeBundle, displayBundle, escapeHtml } from './display';

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
 * Load plotly.js into the notebook page (inline mode; call once in a setup cell — re-running the cell ships it
 * again). In external mode this only notes that the exporter will provide plotly.js.
 */
export function plotlyInit(): void {
  if (plotlyMode() === 'external') {
    state().shipped = true;
    displayBundle({ 'text/plain': `plotly.js ${plotlyVersion()}: provided by the HTML export` });
    return;
  }
  displayBundle({
    'text/html': plotlyScriptTags(),
    'text/plain': `plotly.js ${plotlyVersion()} loaded`,
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
  /** Ship plotly.js inside this output (default: inline mode and plotly not yet shipped in this kernel session). */
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
    'var n=0,t=setInterval(function(){if(window.Plotly){clearInterval(t);draw();}else if(++n>150){clearInterval(t);' +
    'var el=document.getElementById(id);if(el)el.textContent="plotly.js is not loaded on this page (run plotlyInit())";}},100);})();';
  const include = o.includePlotly ?? (plotlyMode() === 'inline' && !state().shipped);
  const html =
    (include ? `${plotlyScriptTags()}\n` : '') +
    `<div id="${escapeHtml(id)}" class="vitpeft-plot" style="width:100%;height:${height}px"></div>\n` +
    `<script type="text/javascript">${script}</script>`;
  if (include) state().shipped = true;
  return {
    'text/html': html,
    'application/vnd.plotly.v1+json': { data: fig.data, layout },
    'text/plain': summary(fig),
  };
}

/** Show a plotly figure. */
export function showPlot(fig: PlotlyFigure, o: PlotOptions = {}): void {
  displayBundle(figureBundle(fig, o));
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
      ...(o.title ? { title: { text: o.title } } : {}),
      xaxis: { title: { text: o.xTitle ?? '' } },
      yaxis: { title: { text: o.yTitle ?? '' }, ...(o.logY ? { type: 'log' } : {}) },
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

/** A scatter-chart figure with optional point labels. */
export function scatterFigure(
  series: ScatterSeries[],
  o: { title?: string; xTitle?: string; yTitle?: string; logX?: boolean; logY?: boolean } = {},
): PlotlyFigure {
  return {
    data: series.map((s) => {
      if (s.x.length !== s.y.length) throw new Error(`scatterFigure: series '${s.name}' has ${s.x.length} x and ${s.y.length} y values`);
      if (s.text && s.text.length !== s.x.length) throw new Error(`scatterFigure: series '${s.name}' has ${s.text.length} labels for ${s.x.length} points`);
      return {
        type: 'scatter',
        mode: s.text ? 'markers+text' : 'markers',
        name: s.name,
        x: Array.from(s.x),
        y: Array.from(s.y),
        ...(s.text ? { text: [...s.text], textposition: 'top center' } : {}),
        marker: { size: 9 },
      };
    }),
    layout: {
      ...(o.title ? { title: { text: o.title } } : {}),
      xaxis: { title: { text: o.xTitle ?? '' }, ...(o.logX ? { type: 'log' } : {}) },
      yaxis: { title: { text: o.yTitle ?? '' }, ...(o.logY ? { type: 'log' } : {}) },
      margin: { t: o.title ? 50 : 20, r: 20, b: 50, l: 60 },
    },
  };
}
