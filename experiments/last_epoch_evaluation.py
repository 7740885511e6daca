"""Evaluate every finished run with its last-epoch weights too: how much the model selection decides.

    python experiments/last_epoch_evaluation.py --out experiments/results/cpu --models MS,MS-ME,MS-SE,MS+

Writes ``runs/<job>/evaluation.last.csv`` next to each run's ``evaluation.csv`` (its weights must be on
this machine; see ``marker_excite.experiments.last_epoch``); ``reproduction_report.py`` compares the claims
measured with both epochs.
"""

import argparse
import os
import sys
from pathlib import Path

from marker_excite.experiments.cli import csv_list, exit_status
from marker_excite.experiments.last_epoch import evaluate_last


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, nargs="+", required=True, help="experiment output folder(s)")
    parser.add_argument("--models", type=csv_list, default=None, help="model labels, comma-separated (default: all)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def run() -> None:
        written = evaluate_last(args.out, models=args.models)
        print(f"last_epoch_evaluation: {len(written)} file(s) written")

    return exit_status("last_epoch_evaluation", run)


if __name__ == "__main__":
    sys.exit(main())
