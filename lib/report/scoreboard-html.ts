/**
 * The scoreboard as a self-contained HTML page: a danfo table of every claim and a plotly forest plot of the effects
 * with their intervals. plotly.js is put into the page itself, so it draws offline from a `file:` URL.
 */
import { ClaimRecord, ClaimTest, Verdict } from './claims';
import { escapeHtml } from './display';
import { PlotlyFigure, figureBundle, plotlyScriptTags } from './plot';
import { Scoreboard, scoreboardRows, scoreboardSummary } from './scoreboard';
import { tableHtml, toDataFrame } from './table';

/** The threshold the verdict compares the interval with: the margin, −tolerance, or the band's lower edge. */
export function claimThreshold(t: ClaimTest): number {
  return t.kind === 'greater' ? t.margin : t.kind === 'not-less' ? -t.tolerance : t.lo;
}

const COLOURS: Record<Verdict, string> = { reproduced: '#1a9850', 'not reproduced': '#d73027', inconclusive: '#7f7f7f' };

/**
 * A forest plot: one row per claim, x = our estimate minus the claim's threshold (so 0 is the decision line of every
 * claim), the interval as error bars, a trace per verdict; claims without an interval as hollow markers; the paper's
 * value of the same quantity (shifted alike) as a diamond where the paper gives one.
 */
export function forestFigure(sb: Scoreboard): PlotlyFigure {
  const items: Array<{ label: string; c: ClaimRecord }> = sb.notebooks.flatMap((e) => e.claims.map((c) => ({ label: `${e.notebook} · ${c.row}`, c })));
  // One row per claim: claims of a notebook that share a row name (other table or metric) get those added.
  const count = new Map<string, number>();
  for (const x of items) count.set(x.label, (count.get(x.label) ?? 0) + 1);
  for (const x of items) if (count.get(x.label)! > 1) x.label += ` (${x.c.tableOrFigure}, ${x.c.metric})`;
  const labels = items.map((x) => x.label);
  const hover = (c: ClaimRecord): string =>
    `${c.paper} · ${c.tableOrFigure}<br>${c.claim}<br>${c.metric}: ${+c.ours.mean.toFixed(3)}` +
    (Number.isFinite(c.ours.lo) ? ` [${+c.ours.lo.toFixed(3)}, ${+c.ours.hi.toFixed(3)}]` : ' (no interval)') +
    `<br>threshold ${claimThreshold(c.test)}${c.test.kind === 'within' ? ` (band ${c.test.lo}…${c.test.hi})` : ''}; n = ${c.ours.n}; ${c.scale}<br>${c.verdict}: ${c.reason}`;
  const data: Array<Record<string, unknown>> = [];
  for (const v of ['reproduced', 'not reproduced', 'inconclusive'] as Verdict[]) {
    const xs = items.filter((x) => x.c.verdict === v && Number.isFinite(x.c.ours.lo));
    if (!xs.length) continue;
    data.push({
      type: 'scatter', mode: 'markers', name: v, y: xs.map((x) => x.label), x: xs.map((x) => x.c.ours.mean - claimThreshold(x.c.test)),
      error_x: { type: 'data', symmetric: false, array: xs.map((x) => x.c.ours.hi - x.c.ours.mean), arrayminus: xs.map((x) => x.c.ours.mean - x.c.ours.lo), thickness: 2, width: 6 },
      marker: { color: COLOURS[v], size: 9 }, text: xs.map((x) => hover(x.c)), hoverinfo: 'text',
    });
  }
  const bare = items.filter((x) => !Number.isFinite(x.c.ours.lo));
  if (bare.length) {
    data.push({
      type: 'scatter', mode: 'markers', name: 'no interval (inconclusive)', y: bare.map((x) => x.label), x: bare.map((x) => x.c.ours.mean - claimThreshold(x.c.test)),
      marker: { color: COLOURS.inconclusive, size: 9, symbol: 'circle-open', line: { width: 2 } }, text: bare.map((x) => hover(x.c)), hoverinfo: 'text',
    });
  }
  const paper = items.filter((x) => x.c.paperValue !== null);
  if (paper.length) {
    data.push({
      type: 'scatter', mode: 'markers', name: "paper's value", y: paper.map((x) => x.label), x: paper.map((x) => x.c.paperValue! - claimThreshold(x.c.test)),
      marker: { color: '#4575b4', size: 9, symbol: 'diamond-open', line: { width: 2 } }, hoverinfo: 'x+y',
    });
  }
  return {
    data,
    layout: {
      title: { text: 'Reproduction claims: effect minus threshold, with intervals' },
      height: Math.max(260, 120 + 34 * labels.length),
      margin: { l: 320, r: 30, t: 60, b: 60 },
      xaxis: { title: { text: "our estimate − the claim's threshold (the claim's metric units)" }, zeroline: true, zerolinewidth: 2, zerolinecolor: '#444' },
      yaxis: { type: 'category', categoryorder: 'array', categoryarray: [...labels].reverse(), automargin: true },
      legend: { orientation: 'h', y: -0.2 },
    },
  };
}

/** The scoreboard page (see the module comment); `plotlyJs` replaces the bundled plotly.js source (tests). */
export function scoreboardHtml(sb: Scoreboard, o: { plotlyJs?: string } = {}): string {
  const rows = scoreboardRows(sb);
  const table = rows.length ? tableHtml(toDataFrame(rows), { maxRows: 10000, caption: 'claims (one row per claim)' }) : '<p><em>No claims recorded yet.</em></p>';
  const runs = tableHtml(
    sb.notebooks.map((e) => ({ notebook: e.notebook, claims: e.claims.length, ok: e.ok === null ? '–' : e.ok ? 'yes' : 'FAILED', scale: e.scale ?? '(notebook default)', finished: e.finished ?? '–', seconds: e.seconds ?? '–', from: e.origin })),
    { caption: 'notebook runs', maxRows: 10000 },
  );
  const chart = rows.length ? figureBundle(forestFigure(sb), { id: 'vitpeft-forest' })['text/html'] : '';
  return [
    '<!DOCTYPE html>',
    '<html lang="en"><head><meta charset="utf-8"><title>vitpeft reproduction scoreboard</title>',
    o.plotlyJs === undefined ? plotlyScriptTags() : plotlyScriptTags(o.plotlyJs),
    '<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;font-size:13px;margin:1em 0}' +
      'th,td{border:1px solid #ccc;padding:3px 6px;text-align:left}caption{text-align:left;font-weight:bold;margin-bottom:4px}</style>',
    '</head><body>',
    '<h1>Reproduction scoreboard</h1>',
    `<p id="vitpeft-scoreboard-summary">${escapeHtml(scoreboardSummary(sb))}. Gathered ${escapeHtml(sb.generated)}.</p>`,
    '<p>A verdict is given only from an interval over seeds: <b>reproduced</b> when the whole interval lies on the ' +
      "claim's side of its threshold, <b>not reproduced</b> when it lies wholly on the other side, <b>inconclusive</b> " +
      'when it straddles the threshold or there is no interval (fewer than 2 seeds). Our runs are miniatures: the ' +
      "paper's value is shown for scale; the tested quantity is the claim's sign or ordering.</p>",
    chart,
    table,
    runs,
    '</body></html>',
    '',
  ].join('\n');
}
