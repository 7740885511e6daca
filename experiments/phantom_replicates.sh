#!/usr/bin/env bash
# Phantom replicates of the cpu protocol (issue "Verdicts that replicate"): the Figs. 2-3 models on
# sinusoids, folds 0-3, on the cpu phantoms of seeds 1, 2 and 3 (data, folds and Case tables as the
# generator makes them; training seed 0 as in the seed-0 reproduction). Fold-major order, so that every
# phantom has fold 0 before any has fold 1 (replicate-level statistics early). Resumable: finished jobs
# are skipped. Run it from a checkout pinned to one commit, at low priority, with RESULTS pointing at the
# main checkout's experiments/results:
#
#   git worktree add --detach ../runs-pin <commit>
#   cd ../runs-pin && RESULTS=../main/experiments/results nice -n 19 bash experiments/phantom_replicates.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-experiments/results}
PY=${PY:-python}
SEEDS=${SEEDS:-"1 2 3"}
FOLDS=${FOLDS:-"0 1 2 3"}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # this checkout's package, not an installed one
for seed in $SEEDS; do
  out="$RESULTS/cpu-phantom$seed"
  mkdir -p "$out"
  [ -f "$out/phantom_cpu.h5" ] || "$PY" -m marker_excite synth --preset cpu --seed "$seed" --out "$out/phantom_cpu.h5" --quiet
  # the phantom this folder trains on, for the report (marker_excite.experiments.replicates.phantom_of)
  [ -f "$out/phantom.json" ] || printf '{\n  "seed": %d,\n  "preset": "cpu",\n  "command": "marker-excite synth --preset cpu --seed %d --out phantom_cpu.h5"\n}\n' \
      "$seed" "$seed" > "$out/phantom.json"
done
for fold in $FOLDS; do
  for seed in $SEEDS; do
    out="$RESULTS/cpu-phantom$seed"
    "$PY" experiments/fig2_sampling.py --preset cpu --out "$out" --store "$out/phantom_cpu.h5" \
        --classes sinusoids --folds "$fold" --workers 2 --quiet
    "$PY" experiments/fig3_attention.py --preset cpu --out "$out" --store "$out/phantom_cpu.h5" \
        --classes sinusoids --folds "$fold" --models MS,MS-SE,MS-ME,MS+ --workers 2 --quiet
  done
done
