#!/usr/bin/python3
"""Execute the kit's notebooks headless through the real tslab kernel and export them.

    npm run notebooks                                   # every notebooks/*.ipynb
    npm run notebooks -- notebooks/00-quickstart.ipynb  # some of them
    /usr/bin/python3 environment/run_notebooks.py --help

For each notebook this writes <out>/<name>.ipynb (executed, with outputs) and <out>/<name>.html (nbconvert's lab
template, plotly.js injected into <head> once), plus <out>/summary.json. The kernel starts in the notebook's folder,
as it does when a person opens the notebook in Jupyter, so the notebook imports the kit exactly as it would there.

A failing cell fails the run with the cell's real message: tslab's error replies carry no ename/evalue/traceback, so
the message is taken from the cell's stderr stream. After an error tslab aborts every request that arrives within
200 ms; with --allow-errors the runner waits 0.3 s before sending the next cell so later cells really run.

Exit status: 0 when every notebook ran without error, 1 otherwise, 2 for bad usage or a missing set-up.
Needs Debian's python3-nbclient / jupyter-nbconvert (environment/setup-system.sh) and the kernel registered under
.jupyter/ (environment/install-kernel.sh; done automatically here when missing or stale).
"""
import argparse
import asyncio
import glob
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL_DIR = os.path.join(ROOT, '.jupyter', 'share', 'jupyter')
TSLAB = os.path.join(ROOT, 'node_modules', '.bin', 'tslab')
PLOTLY_JS = os.path.join(ROOT, 'node_modules', 'plotly.js-dist', 'plotly.js')


def die(msg, code=2):
    print(f'run_notebooks: {msg}', file=sys.stderr)
    sys.exit(code)


try:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
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
        subprocess.run([os.path.join(ROOT, 'environment', 'install-kernel.sh')], check=True, stdout=sys.stderr)
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
    if "Cannot find module './lib" in err or "Cannot find module '../data-loaders" in err:
        hint = ("\n--- hint ---\nthe notebook's folder needs the links `lib -> <project>/lib` and `data-loaders -> "
                "<project>/data-loaders` (notebooks/ has them), and imports must name a file: './lib/index'")
    elif 'is not under \'rootDir\'' in err:
        hint = "\n--- hint ---\ntslab only compiles files under the kernel's folder: import the kit as './lib/index'"
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


def export_html(nb, html_path, inject_plotly):
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter(template_name='lab').from_notebook_node(nb)
    if inject_plotly and uses_plotly(nb):
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


def run_one(path, args, attempts=3):
    """Run one notebook; a kernel that fails to *start* (no cell reached) is retried with a fresh kernel.

    tslab 1.0.22 over zeromq sometimes fails its first kernel_info reply under load ("Socket is blocked by a bind or
    unbind operation", EBUSY; seen on the 2-core machines) and never answers: that is not the notebook's fault.
    """
    for attempt in range(1, attempts + 1):
        try:
            return run_attempt(path, args)
        except KernelStartError as e:
            if attempt == attempts:
                raise SystemExit(f'run_notebooks: {path}: the kernel did not start after {attempts} attempts: {e}')
            print(f'run_notebooks: {path}: the kernel did not start ({e}); retrying with a fresh kernel', file=sys.stderr)


class KernelStartError(Exception):
    pass


def run_attempt(path, args):
    nb = nbformat.read(path, as_version=4)
    ks = nb.metadata.get('kernelspec', {}).get('name')
    if ks and ks != args.kernel:
        print(f'run_notebooks: {path} asks for kernel {ks!r}; running it with {args.kernel!r}', file=sys.stderr)
    cwd = os.path.abspath(args.cwd) if args.cwd else os.path.dirname(os.path.abspath(path))
    failed = {}
    current = {}

    def on_execute(cell, cell_index):
        current['index'] = cell_index

    async def on_error(cell, cell_index, execute_reply):
        failed.setdefault('index', cell_index)
        # tslab aborts requests arriving within 200 ms of an error (TaskQueue.reset(200)).
        await asyncio.sleep(args.error_delay)

    client = NotebookClient(
        nb,
        kernel_name=args.kernel,
        timeout=args.timeout,
        allow_errors=args.allow_errors,
        interrupt_on_timeout=args.allow_errors,
        resources={'metadata': {'path': cwd}},
        on_cell_error=on_error,
        on_cell_execute=on_execute,
        startup_timeout=120,
    )
    t0 = time.time()
    error = None
    try:
        client.execute()
    except CellTimeoutError as e:
        error = f"{path}: cell {current.get('index')} exceeded the {args.timeout} s timeout\n{str(e).strip()[:2000]}"
    except DeadKernelError as e:
        if 'index' not in current:
            raise KernelStartError(str(e).strip()[:300]) from e
        error = f'{path}: the kernel died ({e}); see the kernel output above'
    except CellExecutionError:
        idx = failed.get('index')
        error = cell_error_message(path, nb.cells[idx], idx) if idx is not None else f'{path}: a cell failed'
    except RuntimeError as e:  # nbclient: "Kernel didn't respond in N seconds" while starting
        if 'index' not in current:
            raise KernelStartError(str(e).strip()[:300]) from e
        raise
    if error is None and args.allow_errors and 'index' in failed:
        idx = failed['index']
        error = cell_error_message(path, nb.cells[idx], idx)
    seconds = time.time() - t0

    stem = os.path.splitext(os.path.basename(path))[0]
    os.makedirs(args.out, exist_ok=True)
    out_nb = os.path.join(args.out, f'{stem}.ipynb')
    nbformat.write(nb, out_nb)
    out_html = None
    if not args.no_html:
        out_html = os.path.join(args.out, f'{stem}.html')
        export_html(nb, out_html, args.plotly == 'inject')
    timings = [(i, cell_seconds(c)) for i, c in enumerate(nb.cells) if c.get('cell_type') == 'code']
    slowest = sorted([t for t in timings if t[1] is not None], key=lambda t: -t[1])[:3]
    return {
        'notebook': os.path.relpath(os.path.abspath(path), ROOT),
        'ok': error is None,
        'seconds': round(seconds, 2),
        'error': error,
        'executed': os.path.relpath(out_nb, ROOT),
        'html': os.path.relpath(out_html, ROOT) if out_html else None,
        'slowest_cells': [{'cell': i, 'seconds': round(s, 2)} for i, s in slowest],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('notebooks', nargs='*', help='notebooks to run (default: notebooks/*.ipynb)')
    ap.add_argument('--out', default=os.path.join(ROOT, 'out', 'notebooks'), help='output folder (default out/notebooks)')
    ap.add_argument('--timeout', type=int, default=900, help='seconds per cell (default 900)')
    ap.add_argument('--scale', choices=['ci', 'smoke', 'paper'], help="set VITPEFT_SCALE (overrides the notebooks' default)")
    ap.add_argument('--plotly', choices=['inject', 'inline'], default='inject',
                    help='inject plotly.js into the exported HTML (default) or let notebooks inline it')
    ap.add_argument('--allow-errors', action='store_true', help='run every cell even after an error (still exits 1)')
    ap.add_argument('--error-delay', type=float, default=0.3, help='seconds to wait after a cell error (default 0.3)')
    ap.add_argument('--fail-fast', action='store_true', help='stop at the first failing notebook')
    ap.add_argument('--no-html', action='store_true', help='skip the HTML export')
    ap.add_argument('--cwd', help="kernel working folder (default: each notebook's folder, as in Jupyter)")
    ap.add_argument('--kernel', default='tslab', help='kernel name (default tslab)')
    args = ap.parse_args()

    paths = args.notebooks or sorted(glob.glob(os.path.join(ROOT, 'notebooks', '*.ipynb')))
    if not paths:
        die('no notebooks found')
    for p in paths:
        if not os.path.isfile(p):
            die(f'{p}: no such notebook')
    ensure_kernel(args.kernel)
    os.environ['VITPEFT_PLOTLY'] = 'external' if args.plotly == 'inject' else 'inline'
    if args.scale:
        os.environ['VITPEFT_SCALE'] = args.scale

    results = []
    for p in paths:
        print(f'run_notebooks: {os.path.relpath(os.path.abspath(p), ROOT)} ...', file=sys.stderr, flush=True)
        r = run_one(p, args)
        results.append(r)
        status = 'ok' if r['ok'] else 'FAILED'
        slow = ', '.join(f"cell {c['cell']} {c['seconds']}s" for c in r['slowest_cells'])
        print(f"run_notebooks: {r['notebook']}: {status} in {r['seconds']} s (slowest: {slow or '-'}) -> {r['executed']}"
              + (f", {r['html']}" if r['html'] else ''), file=sys.stderr, flush=True)
        if not r['ok']:
            print(r['error'], file=sys.stderr, flush=True)
            if args.fail_fast:
                break
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, 'summary.json'), 'w') as f:
        json.dump(results, f, indent=2)
    bad = [r for r in results if not r['ok']]
    print(f'run_notebooks: {len(results) - len(bad)}/{len(results)} notebooks ok', file=sys.stderr)
    sys.exit(1 if bad else 0)


if __name__ == '__main__':
    main()
