#!/usr/bin/env bash
# Issue 8's GPU benchmark, in one call on the lent accelerator machine (JAX and PyTorch there, no
# TensorFlow, no network). From the repository root, with the wheels of keras, namex, optree,
# pydantic (+ pydantic_core, annotated_types, typing_inspection, typing_extensions), graphviz and
# torch-rechub downloaded for Python 3.12 into .whl/ (see the device notes in bench/README.md):
#
#     bash bench/gpu_run.sh        # writes its logs under $OUT (default /tmp/gpu_out)
#
# 1. MMoE-8: Composer and hand-written Keras on JAX at batch 1024/8192/32768;
# 2. PLE, STAR, PEPNet, APG: examples/s and peak GPU memory, float32 then mixed_bfloat16;
# 3. MMoE-8 under PyTorch: Keras on torch, hand-written PyTorch (eager, torch.compile), torch-rechub.
# Each part has its own time limit, so one that overruns leaves the others' figures.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=3
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
KERAS_BACKEND=jax python3 -c "import jax, keras, torch; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__, '| torch', torch.__version__)" | tee -a "$OUT/gpu.txt"
STEPS=${STEPS:-20}
KERAS_BACKEND=jax timeout -k 5 ${T1:-130} python3 bench/backends_mmoe8.py --backends jax \
  --batch-sizes 1024,8192,32768 --steps "$STEPS" --reps 3 --both-lowerings 2>&1 | tee "$OUT/mmoe8_jax.txt"
KERAS_BACKEND=jax timeout -k 5 ${T2:-170} python3 bench/blueprint_throughput.py --blueprints ple,star,pepnet,apg \
  --batch-sizes 1024,32768 --steps "$STEPS" --reps 3 --rows 20000 2>&1 | tee "$OUT/blueprints.txt"
timeout -k 5 ${T3:-170} python3 bench/backends_mmoe8.py --backends torch \
  --batch-sizes 1024,8192,32768 --steps "$STEPS" --reps 3 --both-lowerings 2>&1 | tee "$OUT/mmoe8_torch.txt"
# 4. DIN into MMoE (bench/din_mmoe.py): Composer against hand-written Keras on JAX at batch 1024/8192.
KERAS_BACKEND=jax timeout -k 5 ${T4:-90} python3 bench/din_mmoe.py --backends jax --batch 1024,8192 \
  --rows 65536 --reps 3 2>&1 | tee "$OUT/din_mmoe_jax.txt"
