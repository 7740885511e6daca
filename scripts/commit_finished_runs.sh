#!/usr/bin/env bash
# Commit the small files of every finished experiment job (a runs/<job>/ folder with an evaluation.csv)
# under the given results folders; weights, checkpoints and stores are ignored by .gitignore. Never
# `git add -A` while jobs run: an unfinished run's folder is not ignored.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=()
for dir in "$@"; do
  for ev in "$dir"/runs/*/evaluation.csv; do
    [ -f "$ev" ] || continue
    job=$(dirname "$ev")
    if [ -n "$(git status --porcelain -- "$job")" ]; then jobs+=("$job"); fi
  done
done
[ ${#jobs[@]} -gt 0 ] || { echo "nothing new"; exit 0; }
git add -- "${jobs[@]}"
names=$(for j in "${jobs[@]}"; do echo -n "$(basename "$(dirname "$(dirname "$j")")"):$(basename "$j") "; done)
git commit -q -m "Replicate results (cpu preset): ${names% }" -- "${jobs[@]}"
echo "committed ${#jobs[@]} job(s)"
