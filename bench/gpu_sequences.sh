#!/usr/bin/env bash
# Issue 15's GPU run, in one call on the lent accelerator machine (JAX there, no TensorFlow, no
# network). From the repository root, with the wheels of keras, namex, optree, pydantic (+
# pydantic_core, annotated_types, typing_inspection, typing_extensions), graphviz and pyfarmhash
# for Python 3.12 in .whl/ (bench/README.md, "The GPU run"), and a copy of the data in .gpudata/
# (kuairand_pure/ and kuairand/ from ../shared/data; the machine sees nothing outside the tree):
#
#     bash bench/gpu_sequences.sh      # logs under $OUT (default /tmp/gpu_out)
#
# 1. bench/din_mmoe.py: DIN into MMoE at kuairand-pure's shapes, Composer vs hand-written Keras;
# 2. `composer compare` on kuairand-pure, 3 seeds: MMoE without histories, MMoE with every history
#    mean-pooled (and the point-in-time counts), DIN into MMoE (target attention).
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || exit 1
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=3 KERAS_BACKEND=jax
export COMPOSER_DATA_DIR=${COMPOSER_DATA_DIR:-$PWD/.gpudata}
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__)" | tee -a "$OUT/gpu.txt"
if [ -f bench/din_mmoe.py ]; then
  timeout -k 5 ${T1:-100} python3 bench/din_mmoe.py ${DIN_ARGS:---backends jax --batch 1024,8192 --rows 262144 --reps 3} 2>&1 | tee "$OUT/din_mmoe.txt"
fi
timeout -k 5 ${T2:-420} python3 -m composer compare bench/sequences/mmoe_no_history.yaml \
  bench/sequences/mmoe_mean_history.yaml blueprints/din_mmoe.yaml --seeds ${SEEDS:-3} \
  --out /tmp/kuairand_compare 2>&1 | grep -v "^WARNING\|^I0000\|^W0000" | tee "$OUT/kuairand_compare.txt"
cp /tmp/kuairand_compare/compare.txt "$OUT/" 2>/dev/null || true
