"""What the Marker Excite modules learned: their gates for every marker subset, vs the initialisation.

    python experiments/attention_analysis.py --out experiments/results/cpu experiments/results/cpu-seed1

Writes ``runs/<job>/attention.json`` for every finished run with ME modules whose weights are present
(see ``marker_excite.experiments.attention``); ``reproduction_report.py`` shows them.
"""

import argparse
import os
import sys
from pathlib import Path

from marker_excite.experiments.attention import analyse
from marker_excite.experiments.cli import exit_status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, nargs="+", required=True, help="experiment output folder(s)")
    parser.add_argument("--overwrite", action="store_true", help="measure runs that already have attention.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def run() -> None:
        written = analyse(args.out, overwrite=args.overwrite)
        print(f"attention_analysis: {len(written)} file(s) written")

    return exit_status("attention_analysis", run)


if __name__ == "__main__":
    sys.exit(main())
