/**
 * vitpeft/report — notebook and run reporting: rich displays (tables, plotly charts, images, markdown), progress bars,
 * run records and their tables, re-runnable cells (`slot`), the scale switch (`notebookScale`), intervals over seeds
 * (`stats`), reproduction claims (`claimFromPairs`, `recordClaims`) and the scoreboard that gathers them.
 *
 * In a tslab kernel the helpers send rich MIME bundles to the notebook; in scripts and tests they print text.
 *
 * @example import { showTable, showPlot, lineFigure, RunRecord } from 'vitpeft/report';
 */
export * from './display';
export * from './table';
export * from './plot';
export * from './image';
export * from './progress';
export * from './paths';
export * from './runs';
export * from './notebook';
export * from './params';
export * from './steps';
export * from './stats';
export * from './claims';
export * from './claim-findings';
export * from './notebook-claims';
export * from './scoreboard';
export * from './scoreboard-html';
