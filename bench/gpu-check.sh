#!/usr/bin/env bash
# One-command check of the webgpu backend on a machine with a GPU (issue 15): under 8 minutes (the
# steps time out at 30 + 150 + 120 + 150 s = 7.5 min; a timed-out step is reported as failed).
#   bash bench/gpu-check.sh [out dir, default gpu-check]        (from a clone, after `npm ci`)
# Linux needs the Vulkan loader and the GPU's Vulkan driver (docs/performance.md "Running on a GPU":
# libvulkan1; NVIDIA's nvidia_icd.json, in containers NVIDIA_DRIVER_CAPABILITIES with `graphics`;
# pin one driver with VK_DRIVER_FILES). Steps, each with a time limit:
#   1. the adapter (vendor, architecture, software or not, limits)            -> adapter.json
#   2. the webgpu parity tests (CI=true: fail, never skip)                      -> parity.tap
#   3. vlm bench tiny and small on webgpu                                       -> bench.json
#   4. vlm bench: training steps of the full-size 222M model (random weights), batch 8 -> step-222m.json
# then result.json gathers them (with each step's exit status). Exit status 0 only if all passed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}
mkdir -p "$OUT"
say() { printf '\n== %s\n' "$*"; }

say "1/4 adapter"
timeout 30 npx tsx bench/gpu-check.ts adapter "$OUT/adapter.json"
adapter=$?
[ $adapter -eq 0 ] || { echo "no WebGPU adapter: see docs/performance.md (GPU)"; exit 1; }

say "2/4 webgpu tests: nanoVLM fixture parity at the wasm tolerances, generation, training vs wasm, resume"
CI=true timeout 150 node scripts/test.mjs test/core/webgpu.test.ts test/core/model/fixture-webgpu.test.ts test/plugins/stage/train-webgpu.test.ts >"$OUT/parity.tap" 2>&1
parity=$?
grep -aE '^# (tests|pass|fail|skipped)|^not ok' "$OUT/parity.tap"

say "3/4 vlm bench tiny + small (webgpu)"
timeout 120 npx vlm bench recipes/bench/tiny.yaml recipes/bench/small.yaml --backend webgpu --steps 5 --warmup 2 --gen-runs 2 --json "$OUT/bench.json"
bench=$?

say "4/4 the full-size 222M model (random weights, nothing downloaded): training steps at batch 8 (webgpu)"
timeout 150 npx vlm bench recipes/bench/small.yaml --random-full-size --batch-size 8 --backend webgpu --steps 3 --warmup 1 --no-generate --json "$OUT/step-222m.json"
step=$?

npx tsx bench/gpu-check.ts summary "$OUT" "adapter=$adapter" "parity=$parity" "bench=$bench" "step222m=$step"
[ $parity -eq 0 ] && [ $bench -eq 0 ] && [ $step -eq 0 ]
