"""What the Marker Excite modules learned: their gates for every marker subset, vs the initialisation.

    python experiments/attention_analysis.py --out experiments/results/cpu experiments/results/cpu-seed1

Writes ``runs/<job>/attention.json`` for every finished run with ME modules whose weights are present
(see ``marker_excite.experiments.attention``); ``reproduction_report.py`` shows them.
"""

import sys

from marker_excite.experiments.attention import analyse
from marker_excite.experiments.cli import analysis_main


def main(argv=None) -> int:
    return analysis_main(
        "attention_analysis",
        __doc__.splitlines()[0],
        lambda args: analyse(args.out, overwrite=args.overwrite),
        argv,
        add_arguments=lambda p: p.add_argument(
            "--overwrite", action="store_true", help="measure runs that already have attention.json"
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
