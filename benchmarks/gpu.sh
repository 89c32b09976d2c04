#!/usr/bin/env bash
# Train-step and layer benchmarks on one CUDA GPU in bfloat16, in under 5 minutes.
#
#   bash benchmarks/gpu.sh               # from the repository root, venv active
#   BATCH=256 bash benchmarks/gpu.sh     # every model at batch 256 (default: each model's own)
#
# Needs jax with CUDA (pip install "jax[cuda12]"); torch with CUDA is optional (its rows are
# skipped when torch is absent or has no GPU). Each step has its own time limit, so one that
# hangs cannot eat the budget; a step that fails prints why and the next one still runs.
# Prints markdown tables (copy them into benchmarks/README.md with the header lines).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
BATCH=${BATCH:-0}
export TF_CPP_MIN_LOG_LEVEL=3 XLA_PYTHON_CLIENT_PREALLOCATE=false

echo "== devices"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
  || echo "nvidia-smi not found"
if ! timeout 120 "$PY" -c "import jax, sys; print('jax', jax.__version__, jax.devices()); \
sys.exit(jax.default_backend() != 'gpu')"; then
  echo "jax has no GPU backend here: install jax[cuda12]; stopping"; exit 1
fi
TORCH_VARIANTS=""
if timeout 120 "$PY" -c "import torch, sys; print('torch', torch.__version__, \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA'); \
sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
  TORCH_VARIANTS="eager,channels_last"
else
  echo "torch with CUDA not available: torch rows skipped"
fi

run() {  # run <seconds> <command...>: time-limited, never aborts the script
  local limit=$1; shift
  echo; echo "== $*"
  timeout "$limit" "$@" || echo "(exit $?: timed out or failed; continuing)"
}

# 1. Train step, bf16 compute (float32 params, as mixed precision trains): jax vs torch autocast.
run 150 "$PY" benchmarks/train_step.py --device=gpu --dtype=bfloat16 --jax=default \
  --torch="$TORCH_VARIANTS" --models=lenet5,stagenet_cifar,stagenet_cifar_lcn,alexnet \
  --batch="$BATCH" --rounds=3 --chunk_seconds=0.2
# 2. Layer micro-benchmarks in bf16 (LC vs conv, LCN share, pools, conv lowering).
run 130 "$PY" benchmarks/layers.py --device=gpu --dtype=bfloat16 --xla=default --rounds=2 \
  --chunk_seconds=0.05
