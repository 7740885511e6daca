"""``marker-excite store``: list the samples of a sample store, or remove some (one atomic update)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from marker_excite.data.store import SampleInfo, SampleStore, read_index

HELP = "list the samples of a sample store (markers, classes, shape, spacing) or remove samples from it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="one line per sample (also: marker-excite info STORE)")
    listing.add_argument("store", help="sample store (.h5 index file)")
    listing.add_argument("--json", action="store_true", help="print the samples as JSON")
    remove = actions.add_parser("remove", help="remove samples (all named, or none if one is not in the store)")
    remove.add_argument("store", help="sample store (.h5 index file)")
    remove.add_argument("names", nargs="+", metavar="NAME", help="sample(s) to remove")


def sample_summary(info: SampleInfo) -> dict[str, Any]:
    """What ``store list`` shows of a sample (also its JSON form)."""
    counts = info.class_counts
    return {
        "name": info.name,
        "region": info.region,
        "markers": list(info.markers),
        "classes": {c: counts[c] for c in info.classes},
        "shape_zyx": list(info.shape_zyx),
        "spacing_zyx_um": list(info.spacing),
        "annotated_slices": len(info.annotated_slices),
        "dtype": info.dtype,
    }


def describe_store(path: str | Path, as_json: bool = False) -> str:
    """The samples of a store: a header line and one line per sample (or JSON)."""
    with SampleStore(path, "r") as store:
        samples = [sample_summary(info) for info in store.infos()]
    if as_json:
        return json.dumps({"store": str(path), "samples": samples}, indent=2)
    lines = [f"store {path}: {len(samples)} sample{'s' * (len(samples) != 1)}"]
    width = max((len(s["name"]) for s in samples), default=0)
    for s in samples:
        classes = ", ".join(f"{c} {n:,} voxels" for c, n in s["classes"].items()) or "no labels"
        lines.append(
            f"  {s['name']:<{width}}  {s['region'] or 'no region'}; {' x '.join(map(str, s['shape_zyx']))} voxels at "
            f"{' x '.join(f'{v:g}' for v in s['spacing_zyx_um'])} µm ({s['dtype']}); markers {', '.join(s['markers'])}; "
            f"{s['annotated_slices']} annotated slice(s); {classes}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(describe_store(args.store, as_json=args.json))
        return 0
    names = list(dict.fromkeys(args.names))
    read_index(Path(args.store))  # an existing store, never a new one
    with SampleStore(args.store, "a") as store:
        store.remove(*names)
        left = len(store.names())
    print(f"removed {', '.join(names)} from {args.store}; {left} sample{'s' * (left != 1)} left")
    return 0
