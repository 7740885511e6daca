"""Table 1 / Fig. 5: vasculature quantification with MS-ME on the phantom. Trains (or reuses: same job
ids as fig3_attention, so pointing --out at a Fig. 3 folder reuses its MS-ME runs) one MS-ME per class
and fold, reports its F1 over the marker sets M2 (Table 1), and segments every test sample with an M2
subset to measure sinusoid / artery volume fractions per region against the phantom's true fractions
(Fig. 5c). Outputs: results.csv, quantification.csv, stats.json ("table1"), figures/fig5c.png.

    python experiments/table1_quantification.py --preset small --out results/table1 [--classes sinusoids,arteries]
"""

import sys

from marker_excite.experiments import quantify_experiment, script_main


def after(exp, args):
    path = quantify_experiment(exp, args.out, args.store, progress=not args.quiet)
    print(f"quantification: {path}")


if __name__ == "__main__":
    sys.exit(script_main("table1_quantification", after=after))
