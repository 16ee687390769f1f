#!/usr/bin/env bash
# Register the kit's TypeScript kernel (tslab) with Jupyter, and install plotly.js where Jupyter serves it.
#
#   npm run kernel:install               # for your user: every Jupyter tool sees it (jupyter kernelspec list,
#                                        #   jupyter notebook, jupyter nbconvert --execute), no variables needed
#   npm run kernel:install -- --local    # project-local, under .jupyter/ (what `npm run notebooks` and
#                                        #   `npm run jupyter` use; Jupyter finds it with JUPYTER_PATH=.jupyter/share/jupyter)
#   npx vitpeft-kernel [--local]         # the same from a project that installed the vitpeft package
#
# The kernelspec ("tslab", display name "TypeScript") starts tslab by absolute path (re-run after moving the
# project) with the Python that has jupyter_client (VITPEFT_PYTHON, default /usr/bin/python3); tslab itself hands the
# kernel over to the tslab installed next to the notebook when there is one. It preloads environment/tslab-preload.js
# (NODE_OPTIONS), which serialises tslab's zeromq sends and keeps a kernel shutdown from crashing (zmq-serial.js).
# plotly.js goes to <jupyter data dir>/nbextensions/vitpeft/plotly-<version>.js: charts of a saved notebook load it
# from there after a reload (lib/report/plot.ts), so notebooks never store the 10 MB bundle.
set -euo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="${VITPEFT_PYTHON:-/usr/bin/python3}"

command -v node >/dev/null || { echo "install-kernel.sh: node is not on PATH" >&2; exit 1; }
TSLAB_DIR="$(node -p "require('path').dirname(require.resolve('tslab/package.json', { paths: [process.argv[1]] }))" "$ROOT" 2>/dev/null)" || {
  echo "install-kernel.sh: tslab is not installed next to $ROOT: run 'npm ci' (or 'npm install vitpeft') first" >&2; exit 1; }
PLOTLY_DIR="$(node -p "require('path').dirname(require.resolve('plotly.js-dist/package.json', { paths: [process.argv[1]] }))" "$ROOT" 2>/dev/null)" || {
  echo "install-kernel.sh: plotly.js-dist is not installed next to $ROOT: run 'npm ci' first" >&2; exit 1; }
TSLAB="$TSLAB_DIR/bin/tslab"
PRELOAD="$ROOT/environment/tslab-preload.js"
"$PY" -c 'import jupyter_client' 2>/dev/null || {
  echo "install-kernel.sh: $PY has no jupyter_client: run 'environment/setup-system.sh' first (Debian: python3-jupyter-client)" >&2; exit 1; }

# $1 = the Jupyter data folder that got the kernelspecs (…/share/jupyter or the user data dir).
finish() {
  local data="$1" k version
  for k in tslab jslab; do
    [ -f "$data/kernels/$k/kernel.json" ] || continue
    node -e '
      const fs = require("fs"); const [file, preload] = process.argv.slice(1);
      const spec = JSON.parse(fs.readFileSync(file, "utf8"));
      spec.env = { ...(spec.env || {}), NODE_OPTIONS: `--require ${JSON.stringify(preload)}` };
      fs.writeFileSync(file, JSON.stringify(spec, null, 1) + "\n");
    ' "$data/kernels/$k/kernel.json" "$PRELOAD"
  done
  version="$(node -p 'require(process.argv[1]).version' "$PLOTLY_DIR/package.json")"
  mkdir -p "$data/nbextensions/vitpeft"
  cp "$PLOTLY_DIR/plotly.js" "$data/nbextensions/vitpeft/plotly-$version.js.tmp"
  mv -f "$data/nbextensions/vitpeft/plotly-$version.js.tmp" "$data/nbextensions/vitpeft/plotly-$version.js"
}

case "${1:-}" in
  ""|--user)
    "$TSLAB" install --python="$PY" --user --binary="$TSLAB"
    DATA="$("$PY" -c 'import jupyter_core.paths as p; print(p.jupyter_data_dir())')"
    finish "$DATA"
    echo "kernel 'tslab' registered for user $(id -un) in $DATA/kernels (check: jupyter kernelspec list)" ;;
  --local)
    "$TSLAB" install --python="$PY" --prefix="$ROOT/.jupyter" --binary="$TSLAB"
    finish "$ROOT/.jupyter/share/jupyter"
    echo "kernel 'tslab' registered under $ROOT/.jupyter (JUPYTER_PATH=$ROOT/.jupyter/share/jupyter)" ;;
  -h|--help) sed -n '2,17p' "$0" ;;
  *) echo "install-kernel.sh: unknown option '$1' (valid: --user (default), --local)" >&2; exit 2 ;;
esac
