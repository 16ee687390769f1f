#!/usr/bin/python3
"""First-cell time of a notebook through the real tslab kernel: kernel start → first code cell done (JSON lines).

    /usr/bin/python3 bench/notebook-first-cell.py [--rounds 3] [--before f8ce39e] [--notebook 00-quickstart]

Compares, in one run and alternating, the notebook as it is now (it imports the built package `vitpeft`: tslab reads
dist/*.d.ts) with the same notebook at the `--before` commit (it imported `./lib/index` through links in notebooks/:
tslab type-checked and compiled the kit's sources at every kernel start). The before variant is exported from git
into a temporary folder (lib/, data-loaders/, recipes/, notebooks/ with its links; node_modules linked to this
checkout's). Needs the build (`npm run build`) and the project-local kernel (`npm run kernel:install -- --local`).
Prints the host and load first, then one line per measurement, then per variant the median, min and max and the ratio
before ÷ now of the medians. Times on a shared machine are only comparable within one run.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import nbformat
from jupyter_client import KernelManager

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def first_code_cell(path):
    nb = nbformat.read(path, as_version=4)
    return next(c.source for c in nb.cells if c.cell_type == 'code' and c.source.strip())


def export_before(rev, name, dest):
    """The notebook and the kit's sources at `rev`, laid out as that commit had them (links in notebooks/)."""
    tar = subprocess.run(['git', 'archive', rev, 'lib', 'data-loaders', 'recipes', 'notebooks', 'package.json'],
                         cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(['tar', '-x', '-C', dest], input=tar, check=True)
    os.symlink(os.path.join(ROOT, 'node_modules'), os.path.join(dest, 'node_modules'))
    nbdir = os.path.join(dest, 'notebooks')
    for link in ('lib', 'data-loaders', 'recipes'):
        p = os.path.join(nbdir, link)
        if not os.path.lexists(p) and os.path.isdir(os.path.join(dest, link)):
            os.symlink(f'../{link}', p)
    return os.path.join(nbdir, f'{name}.ipynb')


def measure(code, cwd, timeout):
    km = KernelManager(kernel_name='tslab')
    t0 = time.time()
    km.start_kernel(cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=timeout)
        t1 = time.time()
        msg_id = kc.execute(code)
        status = None
        while True:
            m = kc.get_iopub_msg(timeout=timeout)
            if m['parent_header'].get('msg_id') != msg_id:
                continue
            if m['msg_type'] == 'error' or (m['msg_type'] == 'stream' and m['content']['name'] == 'stderr'):
                status = 'error'
            if m['msg_type'] == 'status' and m['content']['execution_state'] == 'idle':
                break
        reply = kc.get_shell_msg(timeout=timeout)
        while reply['parent_header'].get('msg_id') != msg_id:  # e.g. a late kernel_info_reply
            reply = kc.get_shell_msg(timeout=timeout)
        t2 = time.time()
        status = status or reply['content']['status']
        return {'kernel_ready_s': round(t1 - t0, 2), 'first_cell_s': round(t2 - t1, 2), 'total_s': round(t2 - t0, 2), 'status': status}
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--before', default='f8ce39e', help='git revision whose notebooks imported ./lib/index (default f8ce39e)')
    ap.add_argument('--notebook', default='00-quickstart')
    ap.add_argument('--timeout', type=int, default=600)
    args = ap.parse_args()
    os.environ['JUPYTER_PATH'] = os.path.join(ROOT, '.jupyter', 'share', 'jupyter')
    os.environ.setdefault('VITPEFT_SCALE', 'ci')
    if not os.path.exists(os.path.join(ROOT, 'dist', 'lib', 'index.d.ts')):
        sys.exit('notebook-first-cell: dist/ is missing: npm run build')
    now_nb = os.path.join(ROOT, 'notebooks', f'{args.notebook}.ipynb')
    with tempfile.TemporaryDirectory(prefix='vitpeft-first-cell-') as tmp:
        before_nb = export_before(args.before, args.notebook, tmp)
        variants = {
            'before': (first_code_cell(before_nb), os.path.dirname(before_nb)),
            'now': (first_code_cell(now_nb), os.path.dirname(now_nb)),
        }
        cpu = ''
        try:
            cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
        except (OSError, StopIteration):
            pass
        print(json.dumps({'bench': 'notebook-first-cell', 'notebook': args.notebook, 'before': args.before, 'host': platform.node(),
                          'cpus': os.cpu_count(), 'cpu': cpu, 'load': [round(x, 2) for x in os.getloadavg()]}), flush=True)
        results = {k: [] for k in variants}
        for r in range(args.rounds):
            order = ['before', 'now'] if r % 2 == 0 else ['now', 'before']
            for v in order:
                code, cwd = variants[v]
                m = measure(code, cwd, args.timeout)
                results[v].append(m)
                print(json.dumps({'variant': v, 'round': r, **m, 'load1': round(os.getloadavg()[0], 2)}), flush=True)
        med = {}
        for v, ms in results.items():
            totals = [m['total_s'] for m in ms]
            med[v] = statistics.median(totals)
            print(json.dumps({'variant': v, 'median_total_s': med[v], 'min_total_s': min(totals), 'max_total_s': max(totals),
                              'median_first_cell_s': statistics.median(m['first_cell_s'] for m in ms),
                              'errors': sum(m['status'] != 'ok' for m in ms)}), flush=True)
        print(json.dumps({'ratio_before_over_now': round(med['before'] / med['now'], 2), 'load': [round(x, 2) for x in os.getloadavg()]}), flush=True)


if __name__ == '__main__':
    main()
