#!/usr/bin/python3
"""Execute the kit's notebooks headless through the real tslab kernel and export them.

    npm run notebooks                                   # every notebooks/*.ipynb
    npm run notebooks -- notebooks/00-quickstart.ipynb  # some of them
    npm run notebooks -- --jobs auto                    # up to one notebook per core at once, each its own kernel
    npm run notebooks -- --export-only --out DIR my.ipynb  # HTML of a notebook saved from Jupyter, as it is
    /usr/bin/python3 environment/run_notebooks.py --help

For each notebook this writes <out>/<name>.ipynb (executed, with outputs) and <out>/<name>.html (nbconvert's lab
template, plotly.js injected into <head> once), and updates <out>/summary.json (entries of notebooks not run this time
are kept). Notebooks record their reproduction claims under <out>/<name>/claims.jsonl (lib/report/notebook-claims.ts;
the runner passes <out> to the kernel as VITPEFT_NOTEBOOK_OUT and empties a notebook's claims file before running it);
after the runs, environment/scoreboard.ts gathers them into <out>/../scoreboard.json and scoreboard.html (default
out/scoreboard.json, out/scoreboard.html), keeping the entries of notebooks not run this time. The kernel starts in the notebook's folder, as it does when a person opens the notebook in Jupyter, so the
notebook imports the kit (`vitpeft`, the built package: `npm run notebooks` builds first) exactly as it would there.
Progress goes to stderr: a line per finished cell (its time and first line), and for a long cell a line every 30 s
(every second, rewritten in place, on a terminal) with the cell's latest output line (the kit's progress bars).
With --jobs N several notebooks run at once, each driven from its own thread; their lines are prefixed by the
notebook's name (never rewritten in place) and summary.json is rewritten (locked, atomically) as each one finishes.

Each summary entry has `resources`: wall seconds and start/end times, the CPU seconds (user + system) and peak RSS of
the kernel's process tree sampled from /proc (environment/kernel_resources.py), the load averages at start and end,
the cores and VITPEFT_WORKERS; the finish line prints them ("wall 840 s, CPU 830 s (0.99 core), peak RSS …, load
1.10–1.30").

A failing cell fails the run with the cell's real message: tslab's error replies carry no ename/evalue/traceback, so
the message is taken from the cell's stderr stream. After an error tslab aborts every request that arrives within
200 ms; with --allow-errors the runner waits 0.3 s before sending the next cell so later cells really run.

Exit status: 0 when every notebook ran without error, 1 otherwise, 2 for bad usage or a missing set-up.
Needs Debian's python3-nbclient / jupyter-nbconvert (environment/setup-system.sh) and the kernel registered under
.jupyter/ (environment/install-kernel.sh --local; done automatically here when missing or stale).
"""
import argparse
import asyncio
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

sys.dont_write_bytecode = True  # no environment/__pycache__ in the checkout from importing the module below
from kernel_resources import TreeMeter  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL_DIR = os.path.join(ROOT, '.jupyter', 'share', 'jupyter')
TSLAB = os.path.join(ROOT, 'node_modules', 'tslab', 'bin', 'tslab')
PLOTLY_JS = os.path.join(ROOT, 'node_modules', 'plotly.js-dist', 'plotly.js')


SAY = threading.Lock()


def say(text, stream=None):
    """Write to stderr (or `stream`) whole: lines of notebooks running at once (--jobs) never interleave mid-line."""
    stream = stream or sys.stderr
    with SAY:
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):
            pass


def die(msg, code=2):
    print(f'run_notebooks: {msg}', file=sys.stderr)
    sys.exit(code)


try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from nbclient.util import run_sync
except ImportError as e:  # pragma: no cover - depends on the machine
    die(f'{e}. Install Jupyter first: sudo environment/setup-system.sh')


def ensure_kernel(kernel_name):
    """Register this checkout's tslab kernel under .jupyter/ when it is missing or points elsewhere."""
    spec = os.path.join(KERNEL_DIR, 'kernels', kernel_name, 'kernel.json')
    ok = False
    if os.path.exists(spec):
        with open(spec) as f:
            ks = json.load(f)
        argv = ks.get('argv', [])
        preload = os.path.join(ROOT, 'environment', 'tslab-preload.js')
        ok = (bool(argv) and os.path.abspath(argv[0]) == TSLAB and os.path.exists(argv[0])
              and preload in ks.get('env', {}).get('NODE_OPTIONS', ''))
    if not ok:
        if not os.path.exists(TSLAB):
            die(f'{TSLAB} not found: run `npm ci` first')
        print(f'run_notebooks: registering the {kernel_name} kernel (environment/install-kernel.sh)', file=sys.stderr)
        subprocess.run([os.path.join(ROOT, 'environment', 'install-kernel.sh'), '--local'], check=True, stdout=sys.stderr)
    paths = [p for p in os.environ.get('JUPYTER_PATH', '').split(os.pathsep) if p]
    if KERNEL_DIR not in paths:
        os.environ['JUPYTER_PATH'] = os.pathsep.join([KERNEL_DIR] + paths)


def stream_text(cell, name):
    return ''.join(o.get('text', '') for o in cell.get('outputs', []) if o.get('output_type') == 'stream' and o.get('name') == name)


def cell_error_message(nb_path, cell, index):
    """The real message of a failed cell: its stderr (tslab), else error outputs (other kernels)."""
    src = cell.get('source', '')
    head = '\n'.join('    ' + line for line in src.splitlines()[:12])
    more = '\n    ...' if len(src.splitlines()) > 12 else ''
    err = stream_text(cell, 'stderr').strip()
    if not err:
        parts = []
        for o in cell.get('outputs', []):
            if o.get('output_type') == 'error':
                parts.append(f"{o.get('ename', '')}: {o.get('evalue', '')}".strip(': '))
                parts.extend(o.get('traceback', []))
        err = '\n'.join(parts).strip() or '(the kernel reported an error but wrote no message)'
    hint = ''
    if "Cannot find module 'vitpeft" in err:
        hint = ("\n--- hint ---\n'vitpeft' resolves to the built package (dist/): run `npm run build` (npm ci and npm run "
                "notebooks build it); a notebook outside this project needs the package installed next to it (README)")
    elif "Cannot find module './lib" in err or "Cannot find module './data-loaders" in err or "Cannot find module './recipes" in err:
        hint = ("\n--- hint ---\nimport the kit as a package: 'vitpeft', 'vitpeft/report', 'vitpeft/data', 'vitpeft/recipes' "
                "(npm run notebooks:imports rewrites old-style imports)")
    elif 'is not under \'rootDir\'' in err:
        hint = "\n--- hint ---\ntslab only compiles files under the kernel's folder: import the kit as 'vitpeft'"
    elif 'RuntimeError: Aborted()' in err and 'wasm' in err:
        hint = ("\n--- hint ---\nthe wasm backend aborted, usually because its 4 GB heap is full: lower the batch or the image size, "
                "or split a large tf.tidy (a tidy keeps every intermediate tensor until it returns)")
    elif 'is not defined' in err and 'ReferenceError' in err:
        hint = ("\n--- hint ---\nif the name comes from an earlier cell and is used as a shorthand property `{ x }`, "
                "write `{ x: x }` (tslab pitfall; npm run notebooks:check finds these)")
    return f'{nb_path}: cell {index} failed:\n{head}{more}\n--- error ---\n{err}{hint}'


def plotly_tags():
    with open(PLOTLY_JS, encoding='utf-8') as f:
        src = f.read()
    src = src.replace('</script', '<\\/script').replace('<!--', '<\\!--')
    return ('<script type="text/javascript">window.__vitpeftDefine = window.define; window.define = undefined;</script>\n'
            f'<script type="text/javascript">{src}</script>\n'
            '<script type="text/javascript">window.define = window.__vitpeftDefine; delete window.__vitpeftDefine;</script>\n')


def uses_plotly(nb):
    for cell in nb.cells:
        for o in cell.get('outputs', []):
            data = o.get('data', {})
            if 'application/vnd.plotly.v1+json' in data or 'vitpeft-plot' in str(data.get('text/html', '')):
                return True
    return False


def export_html(nb, html_path):
    """nbconvert's lab template; plotly.js injected once into <head> when a chart needs it and the page lacks it
    (notebooks never store the bundle: lib/report/plot.ts)."""
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter(template_name='lab').from_notebook_node(nb)
    if uses_plotly(nb) and 'window.__vitpeftDefine = window.define' not in body:
        at = body.find('</head>')
        if at < 0:
            raise RuntimeError(f'{html_path}: the exported HTML has no </head> to inject plotly.js into')
        body = body[:at] + plotly_tags() + body[at:]
    with open(html_path, 'w', encoding='utf-8') as f:
        f.write(body)


def cell_seconds(cell):
    ex = cell.get('metadata', {}).get('execution', {})
    # tslab sends no execute_input and stamps its reply early: busy → idle on iopub is the cell's real span.
    a, b = ex.get('iopub.status.busy'), ex.get('iopub.status.idle')
    if not a or not b:
        return None
    from datetime import datetime
    try:
        return (datetime.fromisoformat(b.replace('Z', '+00:00')) - datetime.fromisoformat(a.replace('Z', '+00:00'))).total_seconds()
    except ValueError:
        return None


class CellProgress:
    """Progress of one notebook on stderr: a line per finished code cell, heartbeats for long cells.

    A heartbeat shows the running cell's elapsed time and its latest output line (the kit's progress bars update one
    output in place, so this is the bar's current state). On a terminal it is one line rewritten every second;
    otherwise (logs, CI) a line every 30 s.
    """

    def __init__(self, nb, stream=None, interval=None, prefix=''):
        self.stream = stream or sys.stderr
        # several notebooks at once (--jobs): lines prefixed by the notebook's name, never rewritten in place
        self.prefix = prefix
        self.tty = not prefix and hasattr(self.stream, 'isatty') and self.stream.isatty()
        self.interval = interval or (1.0 if self.tty else 30.0)
        self.code = [i for i, c in enumerate(nb.cells) if c.get('cell_type') == 'code' and c.get('source', '').strip()]
        self.task = None
        self.started = None
        self.live = False

    def position(self, index):
        k = self.code.index(index) + 1 if index in self.code else 0
        return f'[{k:>{len(str(len(self.code)))}}/{len(self.code)}] cell {index}'

    @staticmethod
    def first_line(cell, width=70):
        for line in cell.get('source', '').splitlines():
            line = line.strip()
            if line:
                return line if len(line) <= width else line[:width - 1] + '…'
        return ''

    @staticmethod
    def latest_output(cell, width=90):
        for o in reversed(cell.get('outputs', [])):
            if o.get('output_type') == 'stream':
                text = o.get('text', '')
            else:
                text = o.get('data', {}).get('text/plain', '')
            text = ''.join(text) if isinstance(text, list) else str(text)
            lines = [l.strip() for l in text.replace('\r', '\n').splitlines() if l.strip()]
            if lines:
                line = lines[-1] if o.get('output_type') == 'stream' else lines[0]
                return line if len(line) <= width else line[:width - 1] + '…'
        return ''

    def write(self, text):
        say(text, self.stream)

    async def on_execute(self, cell, cell_index):
        self.stop()
        self.started = time.time()
        self.task = asyncio.ensure_future(self.beat(cell, cell_index))

    async def beat(self, cell, cell_index):
        try:
            while True:
                await asyncio.sleep(self.interval)
                line = f'{self.prefix}  {self.position(cell_index)} … {time.time() - self.started:.0f} s  {self.latest_output(cell) or self.first_line(cell)}'
                if self.tty:
                    cols = shutil.get_terminal_size((100, 20)).columns
                    self.write('\r\x1b[K' + line[:cols - 1])
                    self.live = True
                else:
                    self.write(line + '\n')
        except asyncio.CancelledError:
            pass

    async def on_executed(self, cell, cell_index, execute_reply):
        self.stop()
        status = (execute_reply or {}).get('content', {}).get('status', 'ok')
        seconds = cell_seconds(cell)
        if seconds is None and self.started is not None:
            seconds = time.time() - self.started
        mark = 'ok' if status == 'ok' else status.upper()
        self.write(f'{self.prefix}  {self.position(cell_index)} {mark} {seconds or 0:6.1f} s  {self.first_line(cell)}\n')

    def stop(self):
        if self.task is not None:
            try:
                self.task.cancel()
            except RuntimeError:  # its event loop is already closed (the kernel died or a cell timed out)
                pass
            self.task = None
        if self.live:
            self.write('\r\x1b[K')
            self.live = False


def iso(t):
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t))


def load_average():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not available
        return None


def run_one(path, args, attempts=3):
    """Run one notebook; a kernel that fails to *start* (no cell reached) is retried with a fresh kernel.

    tslab 1.0.22 over zeromq sometimes fails its first kernel_info reply under load ("Socket is blocked by a bind or
    unbind operation", EBUSY; seen on the 2-core machines) and never answers: that is not the notebook's fault.
    After the last attempt the notebook's entry is a failure that says so.
    """
    started = time.time()
    load_start = load_average()
    for attempt in range(1, attempts + 1):
        try:
            return run_attempt(path, args, started, load_start)
        except KernelStartError as e:
            if STOPPING.is_set():
                return failed_entry(path, started, load_start, f'{path}: interrupted before its first cell ran')
            if attempt == attempts:
                return failed_entry(path, started, load_start, f'{path}: the kernel did not start after {attempts} attempts: {e}')
            say(f'run_notebooks: {path}: the kernel did not start ({e}); retrying with a fresh kernel\n')


def failed_entry(path, started, load_start, error):
    """The summary entry of a notebook that did not run to an executed copy (no kernel, or a runner error)."""
    t1 = time.time()
    return {
        'notebook': os.path.relpath(os.path.abspath(path), ROOT), 'ok': False, 'started': iso(started), 'finished': iso(t1),
        'scale': os.environ.get('VITPEFT_SCALE') or None, 'seconds': round(t1 - started, 2), 'error': error,
        'executed': None, 'html': None, 'slowest_cells': [], 'resources': resources(None, started, t1, load_start),
    }


class KernelStartError(Exception):
    pass


def resources(meter, t0, t1, load_start):
    """The notebook's resource account (summary.json 'resources'): wall and epoch times, the kernel process tree's
    CPU seconds and peak RSS (environment/kernel_resources.py), the 1/5/15-min load averages at start and end."""
    r = {'wall_s': round(t1 - t0, 2), 'start_time': round(t0, 3), 'end_time': round(t1, 3)}
    r.update(meter.result() if meter is not None else TreeMeter(None).result())
    r.update({'load_start': load_start, 'load_end': load_average(), 'cores': os.cpu_count(),
              'workers': os.environ.get('VITPEFT_WORKERS') or None})
    return r


def resource_line(r):
    """'wall 840 s, CPU 830 s (0.99 core), peak RSS 1843 MB, load 1.10–1.30' for the progress output."""
    parts = [f"wall {r['wall_s']:.1f} s"]
    if r.get('cpu_s') is not None:
        cores = r['cpu_s'] / r['wall_s'] if r['wall_s'] > 0 else 0
        parts.append(f"CPU {r['cpu_s']:.1f} s ({cores:.2f} core)")
        parts.append(f"peak RSS {r['peak_rss_mb']:.0f} MB")
    else:
        parts.append('CPU not measured (no /proc)')
    if r.get('load_start') and r.get('load_end'):
        parts.append(f"load {r['load_start'][0]:.2f}–{r['load_end'][0]:.2f}")
    return ', '.join(parts)


KERNELS = set()  # pids of the kernels running now (--jobs: stopped on Ctrl-C)
STOPPING = threading.Event()  # set on Ctrl-C / SIGTERM with --jobs: a kernel that starts now is stopped at once


class MeteredClient(NotebookClient):
    """NotebookClient that samples its kernel's process tree every `meter_interval` s while the kernel runs and once
    more just before shutting it down (so the last cells' CPU counts)."""

    def __init__(self, nb, meter_interval=1.0, **kw):
        super().__init__(nb, **kw)
        self.meter = None
        self.meter_interval = meter_interval
        self._meter_task = None

    def kernel_pid(self):
        prov = getattr(self.km, 'provisioner', None) if self.km is not None else None
        pid = getattr(prov, 'pid', None)
        if pid is None:
            proc = getattr(prov, 'process', None) or getattr(self.km, 'kernel', None)
            pid = getattr(proc, 'pid', None)
        return pid

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        self.meter = TreeMeter(self.kernel_pid())
        if self.meter.pid is not None:
            KERNELS.add(self.meter.pid)
            if STOPPING.is_set():
                os.kill(self.meter.pid, signal.SIGTERM)
        self.meter.sample()
        self._meter_task = asyncio.ensure_future(self._sample_loop())
        return kc

    async def _sample_loop(self):
        try:
            while True:
                await asyncio.sleep(self.meter_interval)
                self.meter.sample()
        except asyncio.CancelledError:
            pass

    async def _async_cleanup_kernel(self):
        if self._meter_task is not None:
            self._meter_task.cancel()
            self._meter_task = None
        if self.meter is not None:
            self.meter.sample()
            KERNELS.discard(self.meter.pid)
        await super()._async_cleanup_kernel()

    _cleanup_kernel = run_sync(_async_cleanup_kernel)


def run_attempt(path, args, started, load_start):
    nb = nbformat.read(path, as_version=4)
    stem = os.path.splitext(os.path.basename(path))[0]
    prefix = f'{stem} |' if args.jobs > 1 else ''
    tag = f'{prefix} ' if prefix else ''
    ks = nb.metadata.get('kernelspec', {}).get('name')
    if ks and ks != args.kernel:
        say(f'{tag}run_notebooks: {path} asks for kernel {ks!r}; running it with {args.kernel!r}\n')
    cwd = os.path.abspath(args.cwd) if args.cwd else os.path.dirname(os.path.abspath(path))
    failed = {}
    current = {}
    claims = os.path.join(args.out, stem, 'claims.jsonl')
    if os.path.exists(claims):  # this run's claims only (recordClaims merges into the file by claim identity)
        os.remove(claims)

    progress = CellProgress(nb, interval=args.progress_interval, prefix=prefix)

    async def on_execute(cell, cell_index):
        current['index'] = cell_index
        if not args.quiet:
            await progress.on_execute(cell, cell_index)

    async def on_executed(cell, cell_index, execute_reply):
        if not args.quiet:
            await progress.on_executed(cell, cell_index, execute_reply)

    async def on_error(cell, cell_index, execute_reply):
        failed.setdefault('index', cell_index)
        # tslab aborts requests arriving within 200 ms of an error (TaskQueue.reset(200)).
        await asyncio.sleep(args.error_delay)

    client = MeteredClient(
        nb,
        meter_interval=args.meter_interval,
        kernel_name=args.kernel,
        timeout=args.timeout,
        allow_errors=args.allow_errors,
        interrupt_on_timeout=args.allow_errors,
        resources={'metadata': {'path': cwd}},
        on_cell_error=on_error,
        on_cell_execute=on_execute,
        on_cell_executed=on_executed,
        startup_timeout=120,
    )
    t0 = time.time()
    error = None
    if not args.quiet:
        scale = os.environ.get('VITPEFT_SCALE') or "the notebook's default"
        say(f'{tag}run_notebooks: {os.path.relpath(os.path.abspath(path), ROOT)}: {len(progress.code)} code cells, scale {scale}\n')
    try:
        client.execute()
    except CellTimeoutError as e:
        error = f"{path}: cell {current.get('index')} exceeded the {args.timeout} s timeout\n{str(e).strip()[:2000]}"
    except DeadKernelError as e:
        if 'index' not in current:
            raise KernelStartError(str(e).strip()[:300]) from e
        if STOPPING.is_set():
            error = f"{path}: interrupted: the runner stopped the kernel during cell {current['index']}"
        else:
            error = f'{path}: the kernel died ({e}); see the kernel output above'
    except CellExecutionError:
        idx = failed.get('index')
        error = cell_error_message(path, nb.cells[idx], idx) if idx is not None else f'{path}: a cell failed'
    except RuntimeError as e:  # nbclient: "Kernel didn't respond in N seconds" while starting
        if 'index' not in current:
            raise KernelStartError(str(e).strip()[:300]) from e
        raise
    finally:
        progress.stop()
    if error is None and args.allow_errors and 'index' in failed:
        idx = failed['index']
        error = cell_error_message(path, nb.cells[idx], idx)
    t1 = time.time()
    seconds = t1 - t0
    used = resources(client.meter, t0, t1, load_start)

    # Committed notebooks store code cells without outputs; cells a failed or timed-out run never reached still lack
    # them, and nbformat cannot write such a cell.
    for c in nb.cells:
        if c.get('cell_type') == 'code':
            c.setdefault('outputs', [])
            c.setdefault('execution_count', None)
    os.makedirs(args.out, exist_ok=True)
    out_nb = os.path.join(args.out, f'{stem}.ipynb')
    nbformat.write(nb, out_nb)
    out_html = None
    if not args.no_html:
        out_html = os.path.join(args.out, f'{stem}.html')
        export_html(nb, out_html)
    timings = [(i, cell_seconds(c)) for i, c in enumerate(nb.cells) if c.get('cell_type') == 'code']
    slowest = sorted([t for t in timings if t[1] is not None], key=lambda t: -t[1])[:3]
    return {
        'notebook': os.path.relpath(os.path.abspath(path), ROOT),
        'ok': error is None,
        'started': iso(started),
        'finished': iso(time.time()),
        'scale': os.environ.get('VITPEFT_SCALE') or None,
        'seconds': round(seconds, 2),
        'error': error,
        'executed': os.path.relpath(out_nb, ROOT),
        'html': os.path.relpath(out_html, ROOT) if out_html else None,
        'slowest_cells': [{'cell': i, 'seconds': round(s, 2)} for i, s in slowest],
        'resources': used,
    }


def jobs_arg(v):
    if v == 'auto':
        return max(1, os.cpu_count() or 1)
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"'{v}' is not a number of notebooks (1, 2, ... or auto)")
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('notebooks', nargs='*', help='notebooks to run (default: notebooks/*.ipynb)')
    ap.add_argument('--out', default=os.path.join(ROOT, 'out', 'notebooks'), help='output folder (default out/notebooks)')
    ap.add_argument('--timeout', type=int, default=2400, help='seconds per cell, a hang guard (default 2400: a smoke notebook of 15 idle minutes may spend most of it in one cell, and a loaded machine stretches that)')
    ap.add_argument('--scale', choices=['ci', 'smoke', 'workstation', 'paper'], help="set VITPEFT_SCALE (overrides the notebooks' default)")
    ap.add_argument('--plotly', choices=['inject', 'inline'], default='inject',
                    help="inject: notebooks send no plotly.js (VITPEFT_PLOTLY=external, default); inline: as in an "
                         "interactive session (sent to the page, not stored). Exported HTML gets plotly.js either way")
    ap.add_argument('--allow-errors', action='store_true', help='run every cell even after an error (still exits 1)')
    ap.add_argument('--error-delay', type=float, default=0.3, help='seconds to wait after a cell error (default 0.3)')
    ap.add_argument('--fail-fast', action='store_true',
                    help='start no further notebook after one fails (with --jobs, those already running finish)')
    ap.add_argument('--jobs', '-j', type=jobs_arg, default=1,
                    help='notebooks run at once, each in its own kernel (default 1; auto = the number of cores). '
                         'Progress lines are then prefixed by the notebook name')
    ap.add_argument('--meter-interval', type=float, default=1.0,
                    help="seconds between samples of a kernel's process tree (CPU, RSS) in /proc (default 1)")
    ap.add_argument('--no-html', action='store_true', help='skip the HTML export')
    ap.add_argument('--no-scoreboard', action='store_true', help='do not gather the claims into <out>/../scoreboard.json/.html')
    ap.add_argument('--export-only', action='store_true',
                    help='do not execute: export the notebooks as they are (e.g. saved from Jupyter) to HTML with plotly.js')
    ap.add_argument('--cwd', help="kernel working folder (default: each notebook's folder, as in Jupyter)")
    ap.add_argument('--kernel', default='tslab', help='kernel name (default tslab)')
    ap.add_argument('--quiet', action='store_true', help='no per-cell progress lines')
    ap.add_argument('--progress-interval', type=float, default=None,
                    help='seconds between progress lines of a running cell (default 1 on a terminal, else 30)')
    args = ap.parse_args()

    paths = args.notebooks or sorted(glob.glob(os.path.join(ROOT, 'notebooks', '*.ipynb')))
    if not paths:
        die('no notebooks found')
    for p in paths:
        if not os.path.isfile(p):
            die(f'{p}: no such notebook')
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if args.jobs > 1 and len(set(stems)) < len(stems):
        die('--jobs: two notebooks share a name (' + ', '.join(sorted({s for s in stems if stems.count(s) > 1}))
            + ') and would write the same outputs at once')
    if args.export_only:
        os.makedirs(args.out, exist_ok=True)
        for p in paths:
            stem = os.path.splitext(os.path.basename(p))[0]
            html = os.path.join(args.out, f'{stem}.html')
            export_html(nbformat.read(p, as_version=4), html)
            print(f'run_notebooks: {os.path.relpath(os.path.abspath(p), ROOT)} -> {os.path.relpath(html, ROOT)} (not executed)', file=sys.stderr)
        sys.exit(0)
    ensure_kernel(args.kernel)
    os.environ['VITPEFT_PLOTLY'] = 'external' if args.plotly == 'inject' else 'inline'
    os.environ['VITPEFT_NOTEBOOK_OUT'] = os.path.abspath(args.out)
    if args.scale:
        os.environ['VITPEFT_SCALE'] = args.scale
    # recipe runs use every core (runRecipe's default worker count, recipes/run.ts); the ci scale stays on one
    # thread (its runs are seconds long: worker start-up would dominate the CI budget)
    if 'VITPEFT_WORKERS' not in os.environ:
        os.environ['VITPEFT_WORKERS'] = '1' if args.scale == 'ci' else 'auto'

    results = run_all(paths, args)
    merged = read_summary(args.out)
    bad = [r for r in results if not r['ok']]
    others = len(merged) - len(results)
    kept = f'; {args.out}/summary.json also keeps {others} earlier notebook(s)' if others else ''
    skipped = len(paths) - len(results)
    not_run = f'; {skipped} not started (--fail-fast)' if skipped else ''
    say(f'run_notebooks: {len(results) - len(bad)}/{len(results)} notebooks ok{not_run}{kept}\n')
    gathered = args.no_scoreboard or gather_scoreboard(args.out)
    sys.exit(1 if bad or not gathered else 0)


def guarded_run_one(path, args):
    """run_one, with an unexpected runner error (not a cell's) turned into the notebook's failed entry, traceback
    included, so the other notebooks' entries, the summary and the exit status still come."""
    started = time.time()
    try:
        return run_one(path, args)
    except Exception:  # noqa: BLE001 - reported in the entry and on stderr
        import traceback
        return failed_entry(path, started, None, f'{path}: the runner failed:\n{traceback.format_exc()}')


def run_all(paths, args):
    """Run the notebooks, up to args.jobs at once (each in its own kernel, driven from its own thread); each finished
    notebook's entry goes into summary.json at once. --fail-fast: after a failure no further notebook starts (those
    running finish). Returns the entries in the order of `paths`."""
    done = {}

    def finish(p, r):
        done[p] = r
        write_summary(args.out, [r])
        status = 'ok' if r['ok'] else 'FAILED'
        slow = ', '.join(f"cell {c['cell']} {c['seconds']}s" for c in r['slowest_cells'])
        out = (f" -> {r['executed']}" + (f", {r['html']}" if r['html'] else '')) if r['executed'] else ''
        say(f"run_notebooks: {r['notebook']}: {status} in {r['seconds']} s ({resource_line(r['resources'])}; scale "
            f"{r['scale'] or 'default'}; slowest: {slow or '-'}){out}\n" + (f"{r['error']}\n" if not r['ok'] else ''))
        return r['ok']

    if args.jobs == 1:
        for p in paths:
            if not finish(p, guarded_run_one(p, args)) and args.fail_fast:
                break
    else:
        run_concurrently(paths, args, finish)
    return [done[p] for p in paths if p in done]


def run_concurrently(paths, args, finish):
    """Up to args.jobs notebooks at once, `finish(path, entry)` (→ ok) called in the main thread as each one ends.
    Ctrl-C or SIGTERM stops the running kernels (their notebooks end as failures, entries recorded), starts nothing
    more, and exits with status 130."""
    say(f'run_notebooks: {len(paths)} notebooks, up to {args.jobs} at once\n')
    todo = list(paths)
    running = {}
    stop = False

    def on_term(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    with ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix='notebook') as pool:
        try:
            while running or (todo and not stop):
                while todo and not stop and len(running) < args.jobs:
                    p = todo.pop(0)
                    running[pool.submit(guarded_run_one, p, args)] = p
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for f in finished:
                    p = running.pop(f)
                    if not finish(p, f.result()) and args.fail_fast:
                        stop = True
        except KeyboardInterrupt:
            # The worker threads hold the kernels: stop them, so each thread ends with its notebook failed.
            STOPPING.set()
            say(f'run_notebooks: interrupted: stopping {len(running)} running notebook(s); not starting {len(todo)}\n')
            for pid in list(KERNELS):
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
            for f, p in running.items():
                finish(p, f.result())
            pool.shutdown(wait=True, cancel_futures=True)
            raise SystemExit(130)
        finally:
            signal.signal(signal.SIGTERM, previous)
    if stop and todo:
        say(f"run_notebooks: --fail-fast: not started: {', '.join(os.path.relpath(os.path.abspath(p), ROOT) for p in todo)}\n")


def gather_scoreboard(out):
    """Run the gatherer (environment/scoreboard.ts) on <out>; False (its message printed) when a claims file is bad."""
    tsx = os.path.join(ROOT, 'node_modules', '.bin', 'tsx')
    r = subprocess.run([tsx, os.path.join(ROOT, 'environment', 'scoreboard.ts'), '--out', os.path.abspath(out)],
                       cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(r.stdout.rstrip(), file=sys.stderr, flush=True)
    if r.returncode != 0:
        print(f'run_notebooks: the scoreboard was not gathered (exit {r.returncode})', file=sys.stderr, flush=True)
    return r.returncode == 0


SUMMARY_LOCK = threading.Lock()


def read_summary(out):
    """The entries of <out>/summary.json ([] when missing; an unreadable file is reported and treated as empty)."""
    path = os.path.join(out, 'summary.json')
    if not os.path.exists(path):
        return []
    try:
        with open(path, encoding='utf-8') as f:
            loaded = json.load(f)
        return [e for e in loaded if isinstance(e, dict) and 'notebook' in e] if isinstance(loaded, list) else []
    except (OSError, ValueError):
        say(f'run_notebooks: {path} is unreadable; starting a new summary\n')
        return []


def write_summary(out, results):
    """Merge entries into <out>/summary.json: a re-run notebook's entry is replaced where it was, other notebooks'
    entries are kept (each says when it finished), new ones are appended. Called once per finished notebook, under a
    lock (this process's threads, and an flock on <out> against another runner writing the same folder);
    written to a temporary file and renamed, so a reader sees the old or the new summary, never half of one."""
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, 'summary.json')
    with SUMMARY_LOCK:
        fd = os.open(out, os.O_RDONLY)  # the lock is on the folder: no lock file left behind
        try:
            try:
                import fcntl
                fcntl.flock(fd, fcntl.LOCK_EX)
            except ImportError:  # pragma: no cover - not POSIX
                pass
            return merge_summary(out, path, results)
        finally:
            os.close(fd)  # releases the flock


def merge_summary(out, path, results):
    previous = read_summary(out)
    new = {r['notebook']: r for r in results}
    merged = [new.pop(e['notebook'], e) for e in previous]
    merged += [r for r in results if r['notebook'] in new]
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(merged, f, indent=2)
    os.replace(tmp, path)
    return merged


if __name__ == '__main__':
    main()
