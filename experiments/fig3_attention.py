"""Fig. 3: attention. MS-SE and MS-ME relative to MS (3c), MS-ME relative to MS+ (3d) and to the
UB models of Fig. 1 (3e, needs --ub-results), ME placement ablations relative to MS-ME (3f,g).

    python experiments/fig3_attention.py --preset small --out results/fig3 [--shard 1/4] [--classes sinusoids]
    python experiments/fig3_attention.py --aggregate-only --out results/fig3 --ub-results results/fig1
"""

import sys

from marker_excite.experiments import DEFAULT_ABLATIONS, csv_list, script_main


def add_arguments(parser):
    parser.add_argument(
        "--models",
        type=csv_list,
        default=None,
        help="comma-separated zoo models to run (default: MS, MS-SE, MS-ME, MS+ and the ablations)",
    )
    parser.add_argument(
        "--ablations",
        type=csv_list,
        default=list(DEFAULT_ABLATIONS),
        help=f"ME placement ablations (default: {','.join(DEFAULT_ABLATIONS)})",
    )


if __name__ == "__main__":
    sys.exit(
        script_main(
            "fig3_attention",
            add_arguments=add_arguments,
            options=lambda a: dict(models=a.models, ablations=a.ablations),
        )
    )
