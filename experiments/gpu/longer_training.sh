#!/bin/sh
# Longer training on one GPU with Keras' JAX backend (a machine without TensorFlow): MS and MS-ME, cpu
# preset, sinusoids, fold 0, trained for LONG epochs (default 600, 10x the preset's 60: 15,000 steps) and
# for the preset's SHORT epochs (60: the backend check against the committed TensorFlow CPU runs), seeds
# SEEDS. Every (model, seed) of the long arm is its own process; the short arm runs one process per seed.
# Each finished run is also evaluated with its last-epoch weights (evaluation.last.csv).
#
# usage: sh experiments/gpu/longer_training.sh STORE OUT      (STORE: the cpu phantom the CPU runs used)
# env:   PYTHON (python3), LONG (600), SHORT (60; empty: no short arm), SEEDS ("0 1 2 3 4")
# Results: OUT/e<epochs>-seed<s>/runs/<job>/ (as every experiment's), logs OUT/*.log. See experiments/README.md.
set -u
STORE=$1
OUT=$2
PYTHON=${PYTHON:-python3}
LONG=${LONG:-600}
SHORT=${SHORT-60}
SEEDS=${SEEDS:-"0 1 2 3 4"}
export KERAS_BACKEND=jax XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
mkdir -p "$OUT"
common="--preset cpu --store $STORE --classes sinusoids --folds 0"

# train and evaluate MODELS for EPOCHS with SEED into OUT/e<EPOCHS>-seed<SEED>, then the last epoch
arm() {
  dir="$OUT/e$2-seed$3"
  $PYTHON experiments/fig3_attention.py $common --models "$1" --epochs "$2" --seed "$3" --out "$dir" &&
    $PYTHON experiments/last_epoch_evaluation.py --out "$dir" --models "$1"
}

for s in $SEEDS; do
  for m in MS MS-ME; do
    arm "$m" "$LONG" "$s" > "$OUT/e$LONG-seed$s-$m.log" 2>&1 &
  done
  if [ -n "$SHORT" ]; then
    arm MS,MS-ME "$SHORT" "$s" > "$OUT/e$SHORT-seed$s.log" 2>&1 &
  fi
done
wait
echo "longer_training: done"
