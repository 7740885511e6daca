#!/usr/bin/env bash
# The runs of issue "Verdicts that replicate", queued so that each step adds the most evidence per CPU
# hour first (the protocol and the verdict rules are those of experiments/README.md; only the order of
# the runs is chosen here):
#   1. fold 0 of every phantom replicate (9 models x 3 phantoms): gives every Figs. 2-3 claim its
#      replicates (n = replicates, not folds);
#   2. the ME placement ablations of Fig. 3f,g on the seed-0 phantom (8 models, sinusoids, folds 0-1),
#      then the Fig. 3 aggregate re-made over every model it has (missing jobs are listed, not invented);
#   3. folds 1-2 of the phantom replicates (more precise replicate means);
#   4. fold 0 of the two-class UB-joint jobs of Fig. 1b,f on the seed-0 phantom (31 jobs: gives that
#      claim, which has no evidence yet, its first paired comparison);
#   5. fold 3 of the phantom replicates;
#   6. fold 1 of the UB-joint jobs (62 in all).
# Resumable at every step (finished jobs are skipped). Run it with the experiment code of a checkout
# pinned to one commit, the results in this (main) checkout, at low priority:
#
#   git worktree add --detach ../runs-pin <commit>
#   PIN=../runs-pin PY=.venv/bin/python nohup nice -n 19 bash experiments/evidence_queue.sh > /tmp/queue.log 2>&1 &
#
# and commit finished jobs with scripts/commit_finished_runs.sh (never `git add -A` while it runs).
set -euo pipefail
cd "$(dirname "$0")/.."
R="$PWD/experiments/results"
PY=${PY:-$(command -v python)}
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"   # absolute, the venv's link kept (not resolved)
PIN=$(realpath "${PIN:?PIN: the pinned checkout the experiment code runs from}")
ABLATIONS=MS-ME-I,MS-ME-E,MS-ME-B,MS-ME-D,MS-ME-EB,MS-ME-ED,MS-ME-BD,MS-ME-IEBD
cd "$PIN"
export PYTHONPATH="$PIN"
step() { echo "== $(date -u +%FT%TZ) $*"; }

step "1. phantom replicates, fold 0"
RESULTS="$R" PY="$PY" FOLDS=0 bash experiments/phantom_replicates.sh

step "2. ME placement ablations (Fig. 3f,g), seed-0 phantom, sinusoids, folds 0-1"
"$PY" experiments/fig3_attention.py --preset cpu --out "$R/cpu" --classes sinusoids --folds 0,1 \
    --models "$ABLATIONS" --workers 2 --quiet
"$PY" experiments/fig3_attention.py --preset cpu --out "$R/cpu" --classes sinusoids,arteries --folds 0,1,2,3 \
    --models "MS,MS-SE,MS-ME,MS+,$ABLATIONS" --aggregate-only --quiet

step "3. phantom replicates, folds 1-2"
RESULTS="$R" PY="$PY" FOLDS="1 2" bash experiments/phantom_replicates.sh

ub_joint() {
  "$PY" experiments/fig1_upper_bound.py --preset cpu --out "$R/cpu" --classes sinusoids,arteries --folds "$1" \
      --workers 2 --quiet
}
step "4. two-class UB-joint (Fig. 1b,f), seed-0 phantom, fold 0"
ub_joint 0

step "5. phantom replicates, fold 3"
RESULTS="$R" PY="$PY" FOLDS=3 bash experiments/phantom_replicates.sh

step "6. two-class UB-joint (Fig. 1b,f), seed-0 phantom, folds 0-1"
ub_joint 0,1
step "done"
