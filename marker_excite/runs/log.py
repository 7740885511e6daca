"""The per-epoch training log of a run directory (``log.csv``): one row of losses and scores per epoch."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from marker_excite.atomic import write_text
from marker_excite.runs.directory import RunDirError


def write_log(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Write the per-epoch log (all rows, columns of the first row) atomically."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    write_text(path, buf.getvalue())


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def read_log(path: Path) -> list[dict[str, Any]]:
    """The per-epoch log as dicts with numbers converted; [] when the file does not exist."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as fh:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise RunDirError(f"training log {path} is corrupt: {exc}") from None
