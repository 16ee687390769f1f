#!/usr/bin/env bash
# Open the kit's notebooks in Jupyter with the kit's tslab kernel (registered under .jupyter/ if needed).
#   npm run jupyter                 # classic Jupyter Notebook on notebooks/
#   npm run jupyter -- --port 9999  # extra arguments go to Jupyter
# Uses JupyterLab instead when `jupyter lab` is installed. The kernel starts in the notebook's folder; notebooks import
# the kit as './lib/index' through the notebooks/lib link (and notebooks/data-loaders), so nothing needs configuring.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${VITPEFT_PYTHON:-/usr/bin/python3}"
SPEC="$ROOT/.jupyter/share/jupyter/kernels/tslab/kernel.json"
if [ ! -f "$SPEC" ] || ! grep -q "\"$ROOT/node_modules/.bin/tslab\"" "$SPEC"; then
  "$ROOT/environment/install-kernel.sh"
fi
export JUPYTER_PATH="$ROOT/.jupyter/share/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"
if "$PY" -c 'import jupyterlab' 2>/dev/null; then
  exec "$PY" -m jupyterlab --notebook-dir="$ROOT/notebooks" "$@"
fi
exec "$PY" -m notebook --notebook-dir="$ROOT/notebooks" "$@"
