#!/usr/bin/env bash
# Open the kit's notebooks in Jupyter with the kit's tslab kernel (registered under .jupyter/ if needed).
#   npm run jupyter                 # classic Jupyter Notebook on notebooks/ (npm run builds the package first)
#   npm run jupyter -- --port 9999  # extra arguments go to Jupyter
# Uses JupyterLab instead when `jupyter lab` is installed. The kernel starts in the notebook's folder and notebooks
# import the kit as the package `vitpeft` (this checkout's dist/, through node_modules/vitpeft), so nothing needs
# configuring; after editing lib/, run `npm run build` (or `npm run build -- --watch`) and restart the kernel.
# As root (containers, the README's own set-up) Jupyter refuses to start without --allow-root: it is added, with a note.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${VITPEFT_PYTHON:-/usr/bin/python3}"
SPEC="$ROOT/.jupyter/share/jupyter/kernels/tslab/kernel.json"
if [ ! -f "$SPEC" ] || ! grep -q "\"$ROOT/node_modules/tslab/bin/tslab\"" "$SPEC" \
   || [ ! -f "$ROOT/.jupyter/share/jupyter/nbextensions/vitpeft/plotly-$(cd "$ROOT" && node -p 'require("plotly.js-dist/package.json").version').js" ]; then
  "$ROOT/environment/install-kernel.sh" --local
fi
[ -f "$ROOT/dist/lib/index.js" ] || echo "jupyter.sh: dist/ is missing: notebooks cannot import 'vitpeft' until you run 'npm run build'" >&2
export JUPYTER_PATH="$ROOT/.jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
extra=()
if [ "$(id -u)" -eq 0 ] && [[ " $* " != *" --allow-root "* ]]; then
  echo "jupyter.sh: running as root: passing --allow-root (Jupyter refuses root otherwise; prefer a normal user where you can)" >&2
  extra+=(--allow-root)
fi
if "$PY" -c 'import jupyterlab' 2>/dev/null; then
  exec "$PY" -m jupyterlab --notebook-dir="$ROOT/notebooks" ${extra[@]+"${extra[@]}"} "$@"
fi
exec "$PY" -m notebook --notebook-dir="$ROOT/notebooks" ${extra[@]+"${extra[@]}"} "$@"
