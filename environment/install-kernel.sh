#!/usr/bin/env bash
# Register the kit's TypeScript kernel (tslab) with Jupyter.
#
#   environment/install-kernel.sh          # project-local: .jupyter/share/jupyter/kernels/{tslab,jslab}
#   environment/install-kernel.sh --user   # into your own Jupyter data dir (any Jupyter you start then sees it)
#
# The kernelspec starts this checkout's tslab by absolute path (re-run after moving the project) with the Python that
# has jupyter_client (VITPEFT_PYTHON, default /usr/bin/python3). For the project-local install, Jupyter finds the kernel
# through JUPYTER_PATH=<project>/.jupyter/share/jupyter: `npm run notebooks` and `npm run jupyter` set it themselves.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${VITPEFT_PYTHON:-/usr/bin/python3}"
TSLAB="$ROOT/node_modules/.bin/tslab"

[ -x "$TSLAB" ] || { echo "install-kernel.sh: $TSLAB not found: run 'npm ci' first" >&2; exit 1; }
"$PY" -c 'import jupyter_client' 2>/dev/null || {
  echo "install-kernel.sh: $PY has no jupyter_client: run 'sudo environment/setup-system.sh' first" >&2; exit 1; }

# The kernelspecs also preload environment/tslab-preload.js (NODE_OPTIONS), which serialises tslab's zeromq sends:
# unpatched, a notebook that prints while iopub is busy can kill the kernel with EBUSY (see zmq-serial.js).
add_preload() {
  local dir="$1" k
  for k in tslab jslab; do
    [ -f "$dir/$k/kernel.json" ] || continue
    node -e '
      const fs = require("fs"); const [file, preload] = process.argv.slice(1);
      const spec = JSON.parse(fs.readFileSync(file, "utf8"));
      spec.env = { ...(spec.env || {}), NODE_OPTIONS: `--require ${JSON.stringify(preload)}` };
      fs.writeFileSync(file, JSON.stringify(spec, null, 1) + "\n");
    ' "$dir/$k/kernel.json" "$ROOT/environment/tslab-preload.js"
  done
}

case "${1:-}" in
  "") "$TSLAB" install --python="$PY" --prefix="$ROOT/.jupyter" --binary="$TSLAB"
      add_preload "$ROOT/.jupyter/share/jupyter/kernels"
      echo "kernel 'tslab' registered under $ROOT/.jupyter (JUPYTER_PATH=$ROOT/.jupyter/share/jupyter)" ;;
  --user) "$TSLAB" install --python="$PY" --user --binary="$TSLAB"
      add_preload "$("$PY" -c 'import jupyter_core.paths as p; print(p.jupyter_data_dir())')/kernels"
      echo "kernel 'tslab' registered for user $(id -un)" ;;
  *) echo "install-kernel.sh: unknown option '$1' (valid: --user)" >&2; exit 2 ;;
esac
