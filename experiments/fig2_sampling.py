"""Fig. 2: Marker Sampling. MZ and MS relative to HeMIS (2b); HeMIS-MS, MS-DO and MS-VR relative to MS (2c).

python experiments/fig2_sampling.py --preset small --out results/fig2 [--shard 1/4] [--classes sinusoids]
"""

import sys

from marker_excite.experiments import csv_list, script_main


def add_arguments(parser):
    parser.add_argument(
        "--models",
        type=csv_list,
        default=None,
        help="comma-separated zoo models to run (default: HeMIS, MZ, MS, HeMIS-MS, MS-DO, MS-VR)",
    )


if __name__ == "__main__":
    sys.exit(script_main("fig2_sampling", add_arguments=add_arguments, options=lambda a: dict(models=a.models)))
