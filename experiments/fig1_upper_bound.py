"""Fig. 1: the upper bound. One UNet per marker subset (31), class and fold; subsets ranked by F1
(1c,g), groups of subsets compared with Mann-Whitney U (1d,e,h,i), and two-class models relative to the
per-class ones (1b,f; skip with --no-joint).

    python experiments/fig1_upper_bound.py --preset small --out results/fig1 [--shard 1/4] [--classes sinusoids]
"""

import sys

from marker_excite.experiments import script_main


def add_arguments(parser):
    parser.add_argument(
        "--no-joint",
        dest="joint",
        action="store_false",
        help="skip the models trained on both classes at once (Fig. 1b,f)",
    )


if __name__ == "__main__":
    sys.exit(script_main("fig1_upper_bound", add_arguments=add_arguments, options=lambda a: dict(joint=a.joint)))
