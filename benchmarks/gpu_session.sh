#!/usr/bin/env bash
# Every GPU check and benchmark in one run, for a machine with one CUDA GPU lent for minutes:
#
#   OUT=/tmp/gpu-results bash benchmarks/gpu_session.sh          # from the repository root
#
# In order, each with its own time limit so that one slow part cannot starve the rest; the
# defaults add up to 9 minutes, for a machine lent for one 10-minute command:
#   0. wheels found under $WHEELS or wheelhouse/*/ (benchmarks/gpu_wheels.py), installed   -> wheels.log
#   1. the CUDA tests (`pytest -m gpu`)                                       -> $OUT/test_gpu.log
#   2. benchmarks/train_step.py: the layered T=3 r=3 and T=5 r=5 recipes, eager, bf16,
#      bf16 + channels_last, batch 64 and 256
#                                                                              -> $OUT/train_step.json
#   3. benchmarks/gpu_packing.py, 16 trials (one per GPU, packed, packed under MPS)
#                                                                              -> $OUT/gpu_packing.json
#   4. seed_table at 3 seeds and real budgets with --gpus-per-trial auto, timed: the three T=5
#      r=5 cells (the costliest) first, then the other 17, each sweep a part of its own
#                          -> $OUT/table_r5.log, table_rest.log, seed_table_gpu.csv (every
#                             finished trial, from MLflow, also when a part ran out of time)
# Parts 3 and 4 run the sweep, so they need Ray, MLflow and Optuna importable; where they are not
# (a bare GPU image), the part says so in its file and the script goes on. MNIST comes from
# $MOTIONCORE_DATA (default: shared/mnist, then ../shared/mnist). Limits in seconds: $TEST_S,
# $STEP_S, $PACK_S, $R5_S, $TABLE_S. What ran and how long each part took: $OUT/summary.json.
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

# Wheels brought along for an image without Ray, MLflow or Optuna (benchmarks/gpu_wheels.py):
# every file under $WHEELS (default /tmp/wheels) and wheelhouse/*/, chunks joined, installed into
# /tmp/site for this run only.
WHEELS=${WHEELS:-/tmp/wheels}
if compgen -G "$WHEELS/*" >/dev/null || compgen -G "wheelhouse/*/*" >/dev/null; then
    mkdir -p /tmp/wheel-install
    cp "$WHEELS"/* wheelhouse/*/* /tmp/wheel-install/ 2>/dev/null
    for first in /tmp/wheel-install/*.whl.chunk00; do
        [ -e "$first" ] || continue
        whl=${first%.chunk00}
        cat "$whl".chunk* >"$whl" && rm "$whl".chunk*
    done
    start=$SECONDS
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site /tmp/wheel-install/*.whl >"$OUT/wheels.log" 2>&1
    rc=$?
    export PYTHONPATH=$PYTHONPATH:/tmp/site
    parts+=("{\"part\": \"wheels\", \"rc\": $rc, \"seconds\": $((SECONDS - start)), \"file\": \"wheels.log\"}")
    echo "wheels: rc $rc in $((SECONDS - start)) s (wheels.log)"
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.txt" 2>&1
part test_gpu "${TEST_S:-60}" test_gpu.log "$PY" -m pytest -q -m gpu -p no:cacheprovider
part train_step "${STEP_S:-60}" train_step.json "$PY" benchmarks/train_step.py --steps 20 \
    --cells unsup_T3_r3,unsup_T5_segmentation_r5 --no-compile --variants eager,bf16,bf16+channels_last
if sweep_ready >"$OUT/gpu_packing.json"; then
    part gpu_packing "${PACK_S:-100}" gpu_packing.json "$PY" benchmarks/gpu_packing.py \
        --trials 16 --steps 400 --mps
fi
R5=unsup_T5_none_r5,unsup_T5_motion_r5,unsup_T5_segmentation_r5
REST=$("$PY" -c "from search_spaces import load; print(','.join(c.id for c in load('seed_table').cells
    if c.id not in '$R5'.split(',')))" 2>/dev/null)
STORE=sqlite:////tmp/gpu-sweeps/mlflow.db
if sweep_ready >"$OUT/table_r5.log"; then
    for run in "r5 ${R5_S:-120} $R5" "rest ${TABLE_S:-180} $REST"; do
        set -- $run
        part "table_$1" "$2" "table_$1.log" "$PY" -m orchestrator.sweep --space seed_table \
            --seeds 3 --cells "$3" --experiment "seed_table_gpu_$1" --gpus-per-trial auto \
            --max-concurrent 16 --out /tmp/gpu-sweeps --tracking-uri "$STORE"
        "$PY" -m orchestrator.record --tracking-uri "$STORE" --experiment "seed_table_gpu_$1" \
            --out "$OUT/seed_table_gpu.csv" >>"$OUT/table_$1.log" 2>&1
    done
fi
(IFS=,; echo "[${parts[*]}]") >"$OUT/summary.json"
cat "$OUT/summary.json"
