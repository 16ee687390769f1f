#!/usr/bin/env bash
# System packages of the kit (called by .ci/run): Jupyter from Debian packages for the tslab notebooks and their
# runner, headless Chromium for the HTML-export check, and Mesa's EGL + llvmpipe for the WebGPU backend test (Dawn's
# OpenGL ES backend dlopens the unversioned libEGL.so from libegl-dev; test/webgpu.test.ts).
#
#   sudo environment/setup-system.sh            # Jupyter + chromium + Mesa EGL
#   sudo environment/setup-system.sh --no-browser
#
# Uses /usr/bin/python3 (Debian's interpreter, where the python3-* packages install). Needs root (apt-get).
# Idempotent: packages already present are left alone. After this, register the kit's kernel with
# `npm run kernel:install` and run the notebooks with `npm run notebooks`.
set -euo pipefail

want_browser=1
for a in "$@"; do
  case "$a" in
    --no-browser) want_browser=0 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "setup-system.sh: unknown option '$a' (valid: --no-browser)" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else echo "setup-system.sh: needs root (apt-get)" >&2; exit 1; fi
fi

# jupyter-client: the `jupyter kernelspec` command (python3-jupyter-client is only the library).
JUPYTER_PKGS=(jupyter-nbconvert python3-nbclient python3-jupyter-client jupyter-client jupyter-notebook python3-ipykernel)
BROWSER_PKGS=(chromium)
# WebGPU on a CPU-only machine: glvnd EGL (+ the libEGL.so link), Mesa's EGL vendor library, the llvmpipe DRI driver
GL_PKGS=(libegl-dev libegl-mesa0 libgl1-mesa-dri)

missing() { for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"; done; }

need_j=$(missing "${JUPYTER_PKGS[@]}")
need_g=$(missing "${GL_PKGS[@]}")
need_b=""
[ "$want_browser" = 1 ] && need_b=$(missing "${BROWSER_PKGS[@]}")

if [ -n "$need_j$need_g$need_b" ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  # shellcheck disable=SC2086
  [ -n "$need_j" ] && $SUDO apt-get install -y $need_j
  # shellcheck disable=SC2086
  [ -n "$need_g$need_b" ] && $SUDO apt-get install -y --no-install-recommends $need_g $need_b
fi

/usr/bin/python3 -c 'import nbclient, nbformat, nbconvert, jupyter_client; print("jupyter: nbclient", nbclient.__version__, "nbconvert", nbconvert.__version__, "jupyter_client", jupyter_client.__version__)'
if [ "$want_browser" = 1 ]; then chromium --version; fi
