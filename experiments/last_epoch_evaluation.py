"""Evaluate every finished run with its last-epoch weights too: how much the model selection decides.

    python experiments/last_epoch_evaluation.py --out experiments/results/cpu --models MS,MS-ME,MS-SE,MS+

Writes ``runs/<job>/evaluation.last.csv`` next to each run's ``evaluation.csv`` (its weights must be on
this machine; see ``marker_excite.experiments.last_epoch``); ``reproduction_report.py`` compares the claims
measured with both epochs.
"""

import sys

from marker_excite.experiments.cli import analysis_main, csv_list
from marker_excite.experiments.last_epoch import evaluate_last


def main(argv=None) -> int:
    return analysis_main(
        "last_epoch_evaluation",
        __doc__.splitlines()[0],
        lambda args: evaluate_last(args.out, models=args.models),
        argv,
        add_arguments=lambda p: p.add_argument(
            "--models", type=csv_list, default=None, help="model labels, comma-separated (default: all)"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
