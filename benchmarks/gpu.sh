#!/usr/bin/env bash
# The accelerator benchmark, in one interleaved run of at most 10 minutes: train-step images/s
# and peak device memory of LeNet-5, the CIFAR StageNet (with and without LCN) and AlexNet at
# batch 256 -- jaxconv in float32, bfloat16 and float32 with --xla_gpu_deterministic_ops --
# against torch eager, channels_last, AMP bfloat16 (NCHW and channels_last) and torch.compile.
#
#   bash benchmarks/gpu.sh              # on a CUDA machine, from the repository root
#   bash benchmarks/gpu.sh --dry-run    # anywhere (CPU): the same pipeline shrunk, 1-3 minutes
#
# Needs jax for CUDA (pip install -U "jax[cuda13]", or "jax[cuda12]" for an older driver; see
# docs/accelerators.md) and, for the torch rows, torch with CUDA (they are skipped without it).
# Environment: PYTHON (interpreter), BATCH (default 256), MODELS (comma-separated),
# SETUP_SECONDS (compile deadline, default 300), LAYERS=1 also runs the layer
# micro-benchmarks if the 10 minutes allow. Rows that fail or miss the deadline say why.
# Prints a markdown table for benchmarks/README.md (with the header lines: GPU, versions).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
BUDGET=590  # seconds for the whole script
export TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false

if [ "${1:-}" = "--dry-run" ]; then
  echo "== dry run on CPU (tiny sizes; figures mean nothing)"
  exec timeout 300 "$PY" benchmarks/_gpu_step.py --device=cpu --models="${MODELS:-lenet5}" \
    --batch="${BATCH:-8}" --jax=f32,bf16,f32+det --torch=eager,channels_last,amp,amp+channels_last \
    --torch_compile="" --rounds=1 --reps=1 --chunk_seconds=0.02 \
    --setup_seconds="${SETUP_SECONDS:-240}"
elif [ $# -gt 0 ]; then
  echo "usage: bash benchmarks/gpu.sh [--dry-run]" >&2; exit 2
fi

echo "== devices"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  || echo "nvidia-smi not found"
if ! timeout 120 "$PY" -c "import jax, sys; print('jax', jax.__version__, jax.devices()); \
sys.exit(jax.default_backend() != 'gpu')"; then
  echo "jax has no GPU backend here: pip install -U 'jax[cuda13]' (or cuda12); stopping"; exit 1
fi
TORCH_KINDS="eager,channels_last,amp,amp+channels_last"
TORCH_COMPILE="compile+channels_last,amp+compile+channels_last"
if ! timeout 120 "$PY" -c "import torch, sys; print('torch', torch.__version__, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA'); \
sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  echo "torch with CUDA not available: torch rows skipped"
  TORCH_KINDS="" TORCH_COMPILE=""
fi

echo; echo "== train step, one interleaved run"
timeout $((BUDGET - SECONDS - 10)) "$PY" benchmarks/_gpu_step.py --device=gpu \
  --models="${MODELS:-lenet5,stagenet_cifar,stagenet_cifar_lcn,alexnet}" \
  --batch="${BATCH:-256}" --jax=f32,bf16,f32+det --torch="$TORCH_KINDS" \
  --torch_compile="$TORCH_COMPILE" --rounds=3 --reps=2 --chunk_seconds=0.25 \
  --setup_seconds="${SETUP_SECONDS:-300}" \
  || echo "(train-step benchmark: exit $?, timed out or failed)"

LEFT=$((BUDGET - SECONDS))
if [ "${LAYERS:-0}" = "1" ] && [ "$LEFT" -gt 150 ]; then
  echo; echo "== layer micro-benchmarks in bfloat16 (LC vs conv, LCN share, pools, conv)"
  timeout $((LEFT - 10)) "$PY" benchmarks/layers.py --device=gpu --dtype=bfloat16 \
    --xla=default --rounds=2 --chunk_seconds=0.05 || echo "(layers: exit $?; continuing)"
fi
echo "gpu.sh: ${SECONDS} s"
