#!/usr/bin/env bash
# The one prepared GPU check for a device machine (NVIDIA H200, no Node, no registry): WebGPU through Dawn's Vulkan
# (or EGL / OpenGL ES) backend with the NVIDIA driver, the kit's cross-backend cases against wasm, and ViT-B/16@224
# inference + ExPLoRA step (img/s, peak GPU memory) on webgpu, on wasm, and in PyTorch CUDA fp32 on the same machine.
# Everything it needs travels in the folder tools/gpu-pack.sh builds; see environment/GPU.md for the exact call.
#
#   bash environment/gpu-device-check.sh [PACK] [--local]
#     PACK     the folder from tools/gpu-pack.sh (default out/gpu-pack)
#     --local  rehearsal on a machine without a GPU: no system changes (the loader packages are not unpacked into /),
#              WebGPU forced onto whatever adapter exists (llvmpipe), tiny benchmark sizes
# Results (three files, as the device tool returns at most eight): $OUT/gpu-check.jsonl (one JSON object per line),
# $OUT/gpu-check.log (everything printed) and $OUT/machine.txt; OUT defaults to out/gpu-check.
# Budget: GPU_CHECK_SECONDS (default 480) for the whole run; every step has its own timeout, cut to what is left, and a
# failing step does not stop the later ones. Run it with the device tool's timeout_s at 560 or more.
set -uo pipefail
PACK="out/gpu-pack"
LOCAL=0
for a in "$@"; do
  case "$a" in
    --local) LOCAL=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) PACK="$a" ;;
  esac
done
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
case "$PACK" in /*) ;; *) PACK="$ROOT/$PACK" ;; esac
OUT="${OUT:-$ROOT/out/gpu-check}"
mkdir -p "$OUT"
J="$OUT/gpu-check.jsonl"
: > "$J"
exec > >(tee "$OUT/gpu-check.log") 2>&1
T0=$(date +%s)
DEADLINE="${GPU_CHECK_SECONDS:-480}" # the whole check; a device call may run 600 s at most
step() { echo; echo "== [$(($(date +%s) - T0))s] $*"; }
# timeout for the next step: its own cap, cut to what is left of the deadline (0 = skip the step)
# (never 0: GNU timeout reads 0 as "no limit")
left() { local l=$((DEADLINE - ($(date +%s) - T0))); [ "$l" -lt "$1" ] && echo $((l > 10 ? l : 1)) || echo "$1"; }
note() { printf '{"kind":"note","step":"%s","text":%s}\n' "$1" "$(printf '%s' "$2" | head -c 4000 | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))' 2>/dev/null || echo '""')" >> "$J"; }

[ -f "$PACK/gpu-bench.js" ] || { echo "gpu-device-check: $PACK/gpu-bench.js not found: build the pack with tools/gpu-pack.sh and carry it" >&2; exit 1; }
W=/tmp/vitpeft-gpu
rm -rf "$W"
mkdir -p "$W/bin" "$W/app/node_modules/webgpu/dist/linux-x64" "$W/lib" "$W/tmp"

step "unpack: node, Dawn, the bundle"
xz -dc "$PACK/node.xz" > "$W/bin/node" && chmod +x "$W/bin/node"
export PATH="$W/bin:$PATH"
cp "$PACK/gpu-bench.js" "$PACK"/*.wasm "$W/app/"
cp "$PACK/node_modules/webgpu/index.js" "$PACK/node_modules/webgpu/package.json" "$W/app/node_modules/webgpu/"
xz -dc "$PACK/node_modules/webgpu/dist/linux-x64/dawn.node.xz" > "$W/app/node_modules/webgpu/dist/linux-x64/dawn.node"
export VITPEFT_WASM_DIR="$W/app"
node --version
BENCH=(node "$W/app/gpu-bench.js")

step "loaders: Vulkan loader, glvnd EGL / GL (the driver's ICD and vendor libraries come from the machine)"
if [ "$LOCAL" = 0 ]; then
  if ! ldconfig -p | grep -q 'libvulkan.so.1 '; then
    for f in "$PACK"/debs/*.deb; do dpkg -x "$f" /; done
  else
    for f in "$PACK"/debs/*.deb; do case "$f" in *libvulkan1*) ;; *) dpkg -x "$f" / ;; esac; done
  fi
  ldconfig
fi
# Dawn's GL backend dlopens the unversioned libEGL.so (a dev-package link): provide it in a private dir
EGL1="$(ldconfig -p | awk '/libEGL.so.1 .*x86-64/ {print $NF; exit}')"
[ -n "$EGL1" ] && ln -sf "$EGL1" "$W/lib/libEGL.so"
export LD_LIBRARY_PATH="$W/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_RUNTIME_DIR="$W/xdg"; mkdir -p -m 700 "$XDG_RUNTIME_DIR"

step "machine"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv 2>&1 || echo "no nvidia-smi"
  echo "--- libraries"; ldconfig -p | grep -E 'libvulkan|libEGL|libGLX_nvidia|libnvidia-(glcore|glvkspirv|eglcore|gpucomp)|libcuda\.so' | head -20
  echo "--- Vulkan ICDs"; ls -l /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1 | head -20
  for f in /usr/share/vulkan/icd.d/*nvidia* /etc/vulkan/icd.d/*nvidia* /usr/local/nvidia/share/vulkan/icd.d/*; do [ -f "$f" ] && { echo "$f:"; cat "$f"; }; done
  echo "--- EGL vendors"; ls -l /usr/share/glvnd/egl_vendor.d /usr/local/nvidia/share/glvnd/egl_vendor.d 2>&1 | head
  echo "--- devices"; ls /dev/nvidia* /dev/dri 2>&1 | head
  echo "--- torch"; timeout 60 python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1 | tail -1
} | tee "$OUT/machine.txt"
note machine "$(cat "$OUT/machine.txt")"

step "WebGPU adapters: one probe per Dawn backend / driver-file variant"
ICD_NV=""; for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json; do [ -f "$f" ] && { ICD_NV="$f"; break; }; done
EGL_NV=""; for f in /usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json /usr/share/glvnd/egl_vendor.d/10_nvidia.json; do [ -f "$f" ] && { EGL_NV="$f"; break; }; done
VARIANTS=(
  "default|"
  "vulkan|VITPEFT_WEBGPU_DAWN=backend=vulkan"
)
[ -n "$ICD_NV" ] && VARIANTS+=("vulkan-nvidia-icd|VITPEFT_WEBGPU_DAWN=backend=vulkan VK_DRIVER_FILES=$ICD_NV VK_ICD_FILENAMES=$ICD_NV")
VARIANTS+=("gles-surfaceless|VITPEFT_WEBGPU_DAWN=backend=opengles EGL_PLATFORM=surfaceless${EGL_NV:+ __EGL_VENDOR_LIBRARY_FILENAMES=$EGL_NV}")
VARIANTS+=("gles-device|VITPEFT_WEBGPU_DAWN=backend=opengles EGL_PLATFORM=device${EGL_NV:+ __EGL_VENDOR_LIBRARY_FILENAMES=$EGL_NV}")
CHOSEN_ENV=""
CHOSEN_NAME=""
for v in "${VARIANTS[@]}"; do
  name="${v%%|*}"; envs="${v#*|}"
  echo "-- $name: $envs"
  line="$(env $envs timeout "$(left 45)" "${BENCH[@]}" probe 2>"$W/tmp/probe-$name.err" | tail -1)"
  tail -3 "$W/tmp/probe-$name.err"
  echo "${line:-{\"kind\":\"probe\",\"error\":\"no output\"\}}" | sed "s/^{/{\"variant\":\"$name\",/" >> "$J"
  echo "$line" | cut -c1-600
  if [ -z "$CHOSEN_ENV" ] && echo "$line" | grep -q '"chosen":{' && echo "$line" | grep -q '"chosen":{[^}]*"software":false'; then
    CHOSEN_ENV="$envs"; CHOSEN_NAME="$name"
  fi
done
if [ -z "$CHOSEN_NAME" ] && [ "$LOCAL" = 1 ]; then CHOSEN_ENV="VITPEFT_WEBGPU_DAWN=backend=opengles"; CHOSEN_NAME="local-software"; fi
echo "chosen variant: ${CHOSEN_NAME:-none (no hardware adapter)}"
note chosen "${CHOSEN_NAME:-none}: ${CHOSEN_ENV}"

if [ "$LOCAL" = 1 ]; then
  FWD_B=2; TRAIN_B=1; ITERS=1; MODEL=vit_tiny_patch16_224; WASM_FWD_B=2; WASM_TRAIN_B=1
else
  FWD_B=32; TRAIN_B=16; ITERS=5; MODEL=vit_base_patch16_224; WASM_FWD_B=8; WASM_TRAIN_B=4
fi

if [ -n "$CHOSEN_NAME" ]; then
  step "correctness on the GPU: the kit's cross-backend cases, webgpu against wasm"
  env $CHOSEN_ENV timeout "$(left 150)" "${BENCH[@]}" check 2>&1 | grep -v 'artificially reduced' | tee -a "$W/tmp/check.txt" | grep '^{' | tail -1 >> "$J"
  tail -2 "$W/tmp/check.txt" | cut -c1-600

  step "webgpu: $MODEL inference (batch $FWD_B) and ExPLoRA step (batch $TRAIN_B)"
  env $CHOSEN_ENV VITPEFT_BACKEND=webgpu timeout "$(left 180)" "${BENCH[@]}" bench --model "$MODEL" --batch "$FWD_B" --train-batch "$TRAIN_B" --iters "$ITERS" 2>&1 \
    | grep -v 'artificially reduced' | tee "$W/tmp/bench-webgpu.txt" | grep '^{"kind":"bench"' >> "$J"
  grep '^{"kind":"bench"' "$W/tmp/bench-webgpu.txt" | cut -c1-400; tail -3 "$W/tmp/bench-webgpu.txt" | grep -v '^{' | cut -c1-400
fi

step "wasm (one thread) on the same machine: $MODEL inference (batch $WASM_FWD_B) and ExPLoRA step (batch $WASM_TRAIN_B)"
VITPEFT_BACKEND=wasm timeout "$(left 120)" "${BENCH[@]}" bench --model "$MODEL" --batch "$WASM_FWD_B" --train-batch "$WASM_TRAIN_B" --iters 1 2>&1 \
  | tee "$W/tmp/bench-wasm.txt" | grep '^{"kind":"bench"' >> "$J"
grep '^{"kind":"bench"' "$W/tmp/bench-wasm.txt" | cut -c1-400

step "PyTorch CUDA fp32 (TF32 off) on the same machine"
if [ "$LOCAL" = 0 ] && python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  for cfg in "forward $FWD_B" "explora $TRAIN_B"; do
    set -- $cfg
    timeout "$(left 90)" python3 "$ROOT/bench/peer_torch.py" --device cuda --model "$MODEL" --config "$1" --batch "$2" --iters 20 --warmup 3 --threads 16 2>&1 | tail -1 | tee -a "$J"
  done
else
  echo "no CUDA PyTorch here (or --local): skipped"
fi

step "done in $(($(date +%s) - T0)) s; results: $J"
