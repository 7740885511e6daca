"""REPRODUCTION.md: every claim of the paper next to what the finished runs of an output folder measure.

    python experiments/reproduction_report.py --out experiments/results/cpu \
        --replicates experiments/results/cpu-seed1 experiments/results/cpu-seed2

Reads every ``runs/*/evaluation.csv`` and ``log.csv`` of ``--out`` (all experiments share it) and
``table1_quantification/stats.json``; writes ``--out/REPRODUCTION.md`` (see
``marker_excite.experiments.reproduction``). ``--replicates``: output folders of the same jobs run with other
``--seed`` values; the report then compares the spread between seeds with the differences between models.
``--phantoms``: output folders of the same jobs on other phantoms (replicate-level statistics, headline,
``replicates.png``). ``--longer``: the output folder of ``experiments/gpu/longer_training.sh`` (MS and MS-ME trained 10x longer).
"""

import argparse
import sys
from pathlib import Path

from marker_excite.experiments.cli import exit_status
from marker_excite.experiments.reproduction import write_report
from marker_excite.experiments.spec import preset

CPU_PROTOCOL = (
    "Protocol `cpu` (experiments/README.md): synthetic phantom (8 samples, 528 annotated 84-px patches), "
    "124 -> 84 px UNet of depth 3 and 16 filters, batch 8, 60 epochs x 25 steps, Adam 0.001 with cosine "
    "decay, no augmentation, best validation epoch, 4 folds (5 train / 1 validation / 2 test samples), "
    "evaluation on all 31 marker subsets. Absolute F1 values are the phantom's, not the paper's."
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("experiments/results/cpu"), help="experiment output folder")
    parser.add_argument("--preset", default="cpu", help="preset the runs used (named in the report's header)")
    parser.add_argument(
        "--replicates",
        type=Path,
        nargs="*",
        default=[],
        help="output folders of seed replicates (the same jobs run with another --seed)",
    )
    parser.add_argument(
        "--phantoms",
        type=Path,
        nargs="*",
        default=[],
        help="output folders of the same jobs on other phantoms (each with a phantom.json naming its seed)",
    )
    parser.add_argument(
        "--real",
        type=Path,
        nargs="*",
        default=[],
        help="output folders of `marker-excite compare` on real images (section 'Real data')",
    )
    parser.add_argument(
        "--longer",
        type=Path,
        default=None,
        help="output folder of experiments/gpu/longer_training.sh (section 'Longer training')",
    )
    args = parser.parse_args(argv)

    def run() -> None:
        p = preset(args.preset)
        protocol = CPU_PROTOCOL if p.name == "cpu" else f"Protocol `{p.name}` (experiments/README.md)."
        path = write_report(
            args.out,
            protocol=protocol,
            replicates=args.replicates,
            longer=args.longer,
            phantoms=args.phantoms,
            real=args.real,
        )
        print(f"report: {path}")

    return exit_status("reproduction_report", run)


if __name__ == "__main__":
    sys.exit(main())
