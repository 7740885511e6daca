#!/bin/sh
# The paper's own network on one GPU with Keras' JAX backend (a machine without TensorFlow and without
# internet): paper preset (572 -> 388 px, depth 5, 32 filters, batch 2, 200 epochs) on the paper phantom,
# sinusoids, folds FOLDS, in STAGES:
#   ms  MS and MS-ME           (experiments/fig3_attention.py --models MS,MS-ME)
#   mz  MZ (and MS, shared)    (experiments/fig2_sampling.py --models MZ,MS)
#   ub  UB, the 31 subsets     (experiments/fig1_upper_bound.py)
# WORKERS trainings share the GPU side by side (--workers), in PRECISION (bf16 by default: docs/training.md).
#
# Resumable across calls that each fit in one device command (9 minutes): it stops training BUDGET
# seconds after it started (a training cut short is lost: a paper-size checkpoint is too large to bring
# back), evaluates the finished runs with their last-epoch weights, and with PACK writes the small files
# of RESULTS (configs, log.csv, evaluation*.csv, curves.png, shard logs; no weights, no store) into one
# .tgz. Unpacked into RESULTS here and carried by the next call's working tree, the finished jobs are
# skipped (a job is done when its evaluation.csv exists), so every call adds the next trainings.
#
# usage: sh experiments/gpu/paper_scale.sh [EXTRA EXPERIMENT OPTIONS]   e.g. --epochs 1 for a check
# env:   PYTHON (python3), RESULTS (experiments/results/paper-gpu), STORE (a sample store; default: the
#        paper phantom generated into /tmp with synth --workers), STAGES ("ms mz ub"), FOLDS (0,1,2,3),
#        WORKERS (8), PRECISION (bf16), BUDGET (400: seconds of training), TOTAL (540: seconds until the
#        last-epoch evaluation stops too, then packing), PACK (a .tgz to write; default none).
# The GPU machine lacks keras and two of its needs: fetch their wheels here once (repo root, .whl/
# ignored through .git/info/exclude), carry .whl in the call; this script installs them:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl keras==3.15.1 namex optree
# one device call: PACK=$OUT/paper-gpu.tgz sh experiments/gpu/paper_scale.sh   (experiments/README.md, "Paper scale")
set -u
PYTHON=${PYTHON:-python3}
RESULTS=${RESULTS:-experiments/results/paper-gpu}
STAGES=${STAGES:-"ms mz ub"}
FOLDS=${FOLDS:-0,1,2,3}
WORKERS=${WORKERS:-8}
PRECISION=${PRECISION:-bf16}
BUDGET=${BUDGET:-400}
TOTAL=${TOTAL:-540}
PACK=${PACK:-}
EXTRA="$*"
START=$(date +%s)
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -d .whl ] && ! $PYTHON -c "import keras" 2>/dev/null; then
  $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
mkdir -p "$RESULTS"

if [ -z "${STORE:-}" ]; then
  STORE=/tmp/paper-phantom.h5
  [ -f "$STORE" ] || $PYTHON -m marker_excite synth --preset paper --out "$STORE" --workers "$WORKERS" --quiet || exit 1
  echo "paper_scale: phantom ready after $(($(date +%s) - START)) s"
fi

common="--preset paper --store $STORE --classes sinusoids --folds $FOLDS --precision $PRECISION --out $RESULTS"
# run experiment script $1 with options $2 until the training budget is spent
stage() {
  left=$((START + BUDGET - $(date +%s)))
  if [ "$left" -lt 60 ]; then
    echo "paper_scale: no time left for $1"
    return 0
  fi
  echo "paper_scale: $1 for up to $left s"
  # shellcheck disable=SC2086  # the option lists are split on purpose
  timeout -k 30 "$left" $PYTHON "experiments/$1.py" $common $2 --workers "$WORKERS" --quiet $EXTRA
  echo "paper_scale: $1 exit $? after $(($(date +%s) - START)) s"
}

for s in $STAGES; do
  case $s in
    ms) stage fig3_attention "--models MS,MS-ME" ;;
    mz) stage fig2_sampling "--models MZ,MS" ;;
    ub) stage fig1_upper_bound "" ;;
    *) echo "paper_scale: unknown stage $s (ms, mz, ub)"; exit 2 ;;
  esac
done

# the last-epoch weights exist only here, now: evaluate them before the machine goes back (one file per
# run as it is done: what the time allows)
left=$((START + TOTAL - $(date +%s)))
[ "$left" -gt 10 ] && timeout -k 10 "$left" $PYTHON experiments/last_epoch_evaluation.py --out "$RESULTS"
echo "paper_scale: last-epoch evaluation done after $(($(date +%s) - START)) s"

if [ -n "$PACK" ]; then
  tar czf "$PACK" -C "$(dirname "$RESULTS")" --exclude='*.h5' --exclude='*.h5.samples' --exclude=checkpoint \
    --exclude='.checkpoint*' --exclude=tensorboard --exclude='.*.tmp' "$(basename "$RESULTS")" || exit 1
  echo "paper_scale: packed $(find "$RESULTS" -name evaluation.csv | wc -l) finished run(s) into $PACK"
fi
