#!/usr/bin/env bash
# Every GPU check and benchmark in one run, for a machine with one CUDA GPU lent for minutes:
#
#   OUT=/tmp/gpu-results bash benchmarks/gpu_session.sh          # from the repository root
#
# In order, each with its own time limit so that one slow part cannot starve the rest:
#   1. the CUDA tests (`pytest -m gpu`)                                       -> $OUT/test_gpu.log
#   2. benchmarks/train_step.py: eager, bf16, bf16 + channels_last, batch 64 and 256
#                                                                              -> $OUT/train_step.json
#   3. benchmarks/gpu_packing.py with 64 trials (one per GPU, packed, packed under MPS)
#                                                                              -> $OUT/gpu_packing.json
#   4. the whole seed_table at 3 seeds and real budgets with --gpus-per-trial auto, timed
#                                                           -> $OUT/seed_table.log, ablation.md
# Parts 3 and 4 run the sweep, so they need Ray, MLflow and Optuna importable; where they are not
# (a bare GPU image), the part says so in its file and the script goes on. MNIST comes from
# $MOTIONCORE_DATA (default: shared/mnist, then ../shared/mnist). Limits in seconds: $TEST_S,
# $STEP_S, $PACK_S, $TABLE_S. A summary of what ran and how long each part took: $OUT/summary.json.
set -u
OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT"
PY=${PY:-$(command -v python3)}
[ -x .venv/bin/python ] && PY=.venv/bin/python
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
for d in "${MOTIONCORE_DATA:-}" shared/mnist ../shared/mnist; do
    if [ -n "$d" ] && [ -e "$d/t10k-images-idx3-ubyte.gz" ]; then export MOTIONCORE_DATA=$d; break; fi
done
parts=()

part() {  # part NAME LIMIT_S OUTFILE COMMAND...: run one part, record its status and time
    local name=$1 limit=$2 file=$3; shift 3
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$file" 2>&1
    local rc=$?
    parts+=("{\"part\": \"$name\", \"rc\": $rc, \"seconds\": $((SECONDS - start)), \"file\": \"$file\"}")
    echo "$name: rc $rc in $((SECONDS - start)) s ($file)"
}

sweep_ready() {
    "$PY" -c "import ray, mlflow, optuna" 2>/dev/null && return 0
    echo "skipped: ray, mlflow or optuna is not importable with $PY (install the project first)"
    return 1
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
part test_gpu "${TEST_S:-240}" test_gpu.log "$PY" -m pytest -q -m gpu -p no:cacheprovider
part train_step "${STEP_S:-180}" train_step.json "$PY" benchmarks/train_step.py --steps 30 \
    --no-compile --variants eager,bf16,bf16+channels_last
if sweep_ready >"$OUT/gpu_packing.json"; then
    part gpu_packing "${PACK_S:-420}" gpu_packing.json "$PY" benchmarks/gpu_packing.py \
        --trials 64 --steps 400 --mps
fi
if sweep_ready >"$OUT/seed_table.log"; then
    part seed_table "${TABLE_S:-1800}" seed_table.log "$PY" -m orchestrator.sweep \
        --space seed_table --seeds 3 --gpus-per-trial auto --max-concurrent 16 --out /tmp/gpu-sweeps
    cp /tmp/gpu-sweeps/seed_table-*/ablation.md "$OUT/" 2>/dev/null
fi
(IFS=,; echo "[${parts[*]}]") >"$OUT/summary.json"
cat "$OUT/summary.json"
