#!/usr/bin/env bash
# Re-aggregates every committed experiment result (tables, statistics, figures, the reproduction report)
# from its committed run files, in a scratch copy, with this checkout's code, and lists the files that
# come out different from the committed ones. A behaviour-preserving change of the package must not change
# this list; to compare two versions of the code, keep both regenerated trees and diff them:
#
#   bash scripts/check_reaggregation.sh /tmp/before    # on the old commit
#   bash scripts/check_reaggregation.sh /tmp/after     # on the new one
#   diff -r /tmp/before /tmp/after
#
# (Aggregates committed by older code may differ from a fresh re-aggregation where the code has since
# added fields, e.g. the preset's `precision`; that is what the first list shows.)
set -euo pipefail
cd "${REPO:-$(dirname "$0")/..}"
REPO=$PWD
PY=${PY:-python}
KEEP=${1:-}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/committed" "$scratch/again"
git archive HEAD experiments/results | tar -x -C "$scratch/committed"
git archive HEAD experiments/results | tar -x -C "$scratch/again"
cd "$scratch/again"   # relative paths, as in the committed files
R=experiments/results
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
quiet() { "$PY" "$REPO/$1" "${@:2}" > "$scratch/log" 2>&1 || { cat "$scratch/log"; exit 1; }; }
quiet experiments/fig1_upper_bound.py --preset cpu --out $R/cpu --classes sinusoids,arteries --folds 0,1 --aggregate-only
quiet experiments/fig2_sampling.py --preset cpu --out $R/cpu --classes sinusoids,arteries --folds 0,1,2,3 --aggregate-only
quiet experiments/fig3_attention.py --preset cpu --out $R/cpu --classes sinusoids,arteries --folds 0,1,2,3 \
    --models MS,MS-SE,MS-ME,MS+,MS-ME-I,MS-ME-E,MS-ME-B,MS-ME-D,MS-ME-EB,MS-ME-ED,MS-ME-BD,MS-ME-IEBD --aggregate-only
quiet experiments/fig4_heterogeneous.py --preset cpu --out $R/cpu --classes sinusoids --folds 0 --aggregate-only
for seed in 1 2 3 4; do
  quiet experiments/fig3_attention.py --preset cpu --out $R/cpu-seed$seed --classes sinusoids --folds 0,1 \
      --models MS,MS-ME --aggregate-only
done
for d in $R/cpu-phantom*; do
  [ -d "$d/fig2_sampling" ] || continue
  folds=$(ls "$d/runs" | sed -n 's/^MS__all__sinusoids__f//p' | sort -n | paste -sd,)
  quiet experiments/fig2_sampling.py --preset cpu --out "$d" --store "$d/phantom_cpu.h5" --classes sinusoids \
      --folds "$folds" --aggregate-only
  quiet experiments/fig3_attention.py --preset cpu --out "$d" --store "$d/phantom_cpu.h5" --classes sinusoids \
      --folds "$folds" --models MS,MS-SE,MS-ME,MS+ --aggregate-only
done
# shellcheck disable=SC2046
quiet experiments/reproduction_report.py --out $R/cpu --preset cpu --longer $R/gpu-jax \
    --replicates $R/cpu-seed1 $R/cpu-seed2 $R/cpu-seed3 $R/cpu-seed4 --phantoms $(ls -d $R/cpu-phantom*) \
    --real $R/real-mp6843
echo "files that differ from the committed ones:"
diff -rq "$scratch/committed/experiments/results" "$R" | sed "s|$scratch/||g" || true
if [ -n "$KEEP" ]; then rm -rf "$KEEP"; cp -r "$R" "$KEEP"; echo "regenerated tree kept in $KEEP"; fi
