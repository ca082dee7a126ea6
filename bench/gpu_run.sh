#!/usr/bin/env bash
# The GPU benchmarks in one call on the lent accelerator machine (JAX and PyTorch there, no
# TensorFlow, no network), at most 8 minutes. From the repository root, with the wheels of keras,
# namex, optree, pydantic (+ pydantic_core, annotated_types, typing_inspection, typing_extensions),
# graphviz and pyfarmhash (torch-rechub too for ISSUE8=1) downloaded for Python 3.12 into .whl/
# (see the device notes in bench/README.md):
#
#     bash bench/gpu_run.sh               # writes its logs under $OUT (default /tmp/gpu_out)
#     bash bench/gpu_run.sh --cpu-smoke   # the same steps on a CPU at tiny sizes, about 2-3 minutes:
#                                         # no wheels, JAX on the CPU, TensorFlow hidden, torch if importable
#
# Issue 16 (bench/trainer_speed.py): `composer train`'s own loop (ScanLoop) against a bare scanned
# loop of the same Keras model (the ceiling), Keras fit and torch.compile:
#   1. MMoE-8 at batch 8192, 1024, 32768 under JAX: ScanLoop, bare scan, Keras fit (paired);
#   2. MMoE-8 hand-written in PyTorch under torch.compile, same rows, batches and steps (own process);
#   3. PLE, STAR, PEPNet, APG at batch 8192: ScanLoop beside each one's own bare scan;
#   then the goals, from the three parts' JSON.
# 4. DIN into MMoE (bench/din_mmoe.py): Composer against hand-written Keras on JAX, batch 1024/8192.
# ISSUE8=1 adds issue 8's parts afterwards (Keras fit of MMoE-8 and hand-written Keras at three
# batch sizes, both lowerings; PLE/STAR/PEPNet/APG float32 and mixed_bfloat16 under fit; the torch
# backend and PyTorch models): about 8 more minutes, so raise BUDGET (seconds, default 465) with it.
# Each part has its own time limit (T1..T7 seconds, in the order below), cut to what is left of
# BUDGET, so one that overruns leaves the others' figures and the call stays within the budget.
set -o pipefail
START=$SECONDS
BUDGET=${BUDGET:-465}
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false TF_CPP_MIN_LOG_LEVEL=3
if [ "${1:-}" = "--cpu-smoke" ]; then
  SMOKE=--smoke
  NOTF=$(mktemp -d)  # a tensorflow that cannot be imported, as on the GPU machine
  mkdir "$NOTF/tensorflow"
  echo 'raise ModuleNotFoundError("no TensorFlow on the GPU machine (hidden by gpu_run.sh --cpu-smoke)")' \
    > "$NOTF/tensorflow/__init__.py"
  export PYTHONPATH=$NOTF:$PWD JAX_PLATFORMS=cpu
  echo "CPU smoke run: tiny sizes, the figures mean nothing" | tee "$OUT/gpu.txt"
  DIN_ARGS="--batch 64,128 --rows 256 --reps 1"
else
  SMOKE=
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
  DIN_ARGS="--batch 1024,8192 --rows 65536 --reps 3"
fi
KERAS_BACKEND=jax python3 -c "import jax, keras; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__)" \
  | tee -a "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" 2>/dev/null | tee -a "$OUT/gpu.txt"

# part NAME LIMIT_S COMMAND...: runs COMMAND under min(LIMIT_S, what is left of BUDGET), logs to $OUT/NAME.txt
part() {
  local name=$1 limit=$2 left=$((BUDGET - (SECONDS - START)))
  shift 2
  (( left < limit )) && limit=$left
  if (( limit < 10 )); then echo "== $name: skipped, under 10 s left for it" | tee "$OUT/$name.txt"; return; fi
  echo "== $name (at most ${limit}s; $((SECONDS - START))s so far)"
  timeout -k 5 "$limit" "$@" 2>&1 | grep --line-buffered -v '^RESULT ' | tee "$OUT/$name.txt"
  local rc=${PIPESTATUS[0]}
  if (( rc == 124 || rc == 137 )); then echo "== $name: cut off at its ${limit}s limit" | tee -a "$OUT/$name.txt"
  elif (( rc != 0 )); then echo "== $name: exit status $rc" | tee -a "$OUT/$name.txt"; fi
}
TS=bench/trainer_speed.py
rm -f "$OUT"/trainer_*.json
part trainer_mmoe8 ${T1:-170} env KERAS_BACKEND=jax python3 $TS --part mmoe8 $SMOKE --json "$OUT/trainer_mmoe8.json"
part trainer_torch ${T2:-120} env KERAS_BACKEND=torch python3 $TS --part torch $SMOKE --json "$OUT/trainer_torch.json"
part trainer_blueprints ${T3:-130} env KERAS_BACKEND=jax python3 $TS --part blueprints $SMOKE --json "$OUT/trainer_blueprints.json"
echo "== issue 16: all parts" | tee "$OUT/trainer_report.txt"
python3 $TS --report "$OUT"/trainer_{mmoe8,torch,blueprints}.json $SMOKE 2>&1 | tee -a "$OUT/trainer_report.txt"
part din_mmoe_jax ${T4:-90} env KERAS_BACKEND=jax python3 bench/din_mmoe.py --backends jax $DIN_ARGS
if [ -n "${ISSUE8:-}" ]; then
  STEPS=${STEPS:-20}
  part mmoe8_jax ${T5:-130} env KERAS_BACKEND=jax python3 bench/backends_mmoe8.py --backends jax \
    --batch-sizes 1024,8192,32768 --steps "$STEPS" --reps 3 --both-lowerings
  part blueprints ${T6:-170} env KERAS_BACKEND=jax python3 bench/blueprint_throughput.py --blueprints ple,star,pepnet,apg \
    --batch-sizes 1024,32768 --steps "$STEPS" --reps 3 --rows 20000
  part mmoe8_torch ${T7:-170} python3 bench/backends_mmoe8.py --backends torch \
    --batch-sizes 1024,8192,32768 --steps "$STEPS" --reps 3 --both-lowerings
fi
echo "== done in $((SECONDS - START))s"
[ -n "${NOTF:-}" ] && rm -r "$NOTF"
true
