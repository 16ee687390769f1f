/**
 * The display transport of the report helpers: rich MIME bundles to the notebook front end when the code runs inside a
 * tslab kernel, plain text on stdout otherwise (scripts, tests, terminals).
 *
 * tslab's public `display.*` API sends one MIME type per output; the kit needs bundles (a plotly chart is `text/html`
 * for the HTML export + `application/vnd.plotly.v1+json` for JupyterLab + `text/plain` for terminals). tslab keeps the
 * writer of the running request in `tslab/dist/jupyter.js` (`lastWriteDisplayData`); we find that module in Node's
 * module cache (whichever copy of tslab started the kernel) instead of importing it, so nothing here loads tslab
 * outside a kernel. Detection is therefore exact: "in a kernel" means a tslab display writer exists in this process.
 *
 * Tests (or a caller who wants to capture outputs) can install their own sink with `setDisplaySink`.
 */
import { randomBytes } from 'crypto';

/** A Jupyter MIME bundle: MIME type → data (strings; JSON types may be objects). `text/plain` is always present. */
export type MimeBundle = { 'text/plain': string } & Record<string, unknown>;

export interface DisplayOptions {
  /** Display id: outputs with the same id replace each other (progress bars, live tables). */
  id?: string;
  /** true = replace the output created earlier with this `id` (update_display_data); false = create it. */
  update?: boolean;
}

/** Where bundles go. */
export interface DisplaySink {
  display(bundle: MimeBundle, opts: DisplayOptions): void;
}

interface JupyterDisplayMessage {
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  transient: { display_id?: string };
}
type TslabWriter = (msg: JupyterDisplayMessage, update: boolean) => void;

const JUPYTER_MODULE = /[\\/]tslab[\\/]dist[\\/]jupyter\.js$/;

/** The display writer of the tslab kernel running this process, or null outside a kernel. */
function tslabWriter(): TslabWriter | null {
  const cache = (typeof require !== 'undefined' && require.cache) || {};
  for (const file of Object.keys(cache)) {
    if (!JUPYTER_MODULE.test(file)) continue;
    const w = (cache[file]?.exports as { lastWriteDisplayData?: unknown } | undefined)?.lastWriteDisplayData;
    if (typeof w === 'function') return w as TslabWriter;
  }
  return null;
}

/** True when running inside a tslab Jupyter kernel (rich outputs are shown by the front end). */
export function inKernel(): boolean {
  return tslabWriter() !== null;
}

/** Sends bundles to the tslab kernel (binary values must already be base64 strings). */
const kernelSink: DisplaySink = {
  display(bundle, opts) {
    const w = tslabWriter();
    if (!w) throw new Error('display: no tslab kernel in this process');
    w({ data: { ...bundle }, metadata: {}, transient: opts.id ? { display_id: opts.id } : {} }, opts.update ?? false);
  },
};

/** Prints `text/plain` to stdout (updates print the new state again). */
export const textSink: DisplaySink = {
  display(bundle) {
    process.stdout.write(bundle['text/plain'].endsWith('\n') ? bundle['text/plain'] : `${bundle['text/plain']}\n`);
  },
};

let customSink: DisplaySink | null = null;

/** Route all displays to `sink` (null restores the default: kernel when inside tslab, else stdout text). */
export function setDisplaySink(sink: DisplaySink | null): void {
  customSink = sink;
}

/** The sink in use right now. */
export function currentSink(): DisplaySink {
  if (customSink) return customSink;
  return inKernel() ? kernelSink : textSink;
}

function checkBundle(bundle: MimeBundle): void {
  if (typeof bundle['text/plain'] !== 'string') {
    throw new Error(`display: a bundle needs a 'text/plain' string; got keys ${Object.keys(bundle).join(', ') || '(none)'}`);
  }
  for (const [mime, v] of Object.entries(bundle)) {
    if (!/^[a-z]+\/[-+.\w]+$/.test(mime)) throw new Error(`display: '${mime}' is not a MIME type`);
    if (v instanceof Uint8Array) throw new Error(`display: '${mime}' is binary; encode it as base64 first (see pngBundle)`);
  }
}

/** Show one MIME bundle as a new output. */
export function displayBundle(bundle: MimeBundle): void {
  checkBundle(bundle);
  currentSink().display(bundle, {});
}

/** A display that can be replaced in place (`update_display_data` in a notebook; reprinted in a terminal). */
export class DisplayHandle {
  readonly id: string;
  private shown = false;
  constructor(id: string = randomBytes(8).toString('hex')) {
    this.id = id;
  }
  /** Show `bundle`, replacing what this handle showed before. */
  update(bundle: MimeBundle): void {
    checkBundle(bundle);
    currentSink().display(bundle, { id: this.id, update: this.shown });
    this.shown = true;
  }
  /** Whether anything was shown through this handle yet. */
  get isShown(): boolean {
    return this.shown;
  }
}

/** Escape text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** Show a markdown string (text/plain fallback: the markdown source). */
export function showMarkdown(md: string): void {
  displayBundle({ 'text/markdown': md, 'text/plain': md });
}
