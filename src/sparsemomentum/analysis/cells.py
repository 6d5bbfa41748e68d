"""A cell of the reports' tables: the mean test error over the seeds that trained, its
standard error, and how many more runs did not train, written the same way in every table."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    """Test error (%) over the seeds of one (row, column) that trained; one seed has no
    standard error, so that a table never shows a spread it did not measure."""

    mean: float
    se: float | None
    n: int

    @classmethod
    def of(cls, errors: list[float]) -> "Cell":
        se = statistics.stdev(errors) / math.sqrt(len(errors)) if len(errors) > 1 else None
        return cls(statistics.fmean(errors), se, len(errors))


def cell_text(cell: Cell | None, untrained: int = 0) -> str:
    """'mean ± SE (n, +k did not train)', or where no run trained, how many did not (a dash
    where none ran)."""
    if cell is None:
        return f"– ({untrained} did not train)" if untrained else "–"
    spread = f" ± {cell.se:.2f}" if cell.se is not None else ""
    more = f", +{untrained} did not train" if untrained else ""
    return f"{cell.mean:.2f}{spread} ({cell.n}{more})"
