"""A cell of the reports' tables: the mean test error over the seeds that trained, its
standard error, and how many more runs did not train, written the same way in every table."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    """Test error (%) over the seeds of one (row, column) that trained; ``untrained``: how
    many more did not (``RunRecord.trained``)."""

    mean: float
    se: float | None
    n: int
    untrained: int = 0

    @classmethod
    def of(cls, errors: list[float], untrained: int = 0) -> "Cell":
        se = statistics.stdev(errors) / math.sqrt(len(errors)) if len(errors) > 1 else None
        return cls(statistics.fmean(errors), se, len(errors), untrained)

    def __str__(self) -> str:
        spread = f" ± {self.se:.2f}" if self.se is not None else ""
        untrained = f", +{self.untrained} did not train" if self.untrained else ""
        return f"{self.mean:.2f}{spread} ({self.n}{untrained})"


def cell_text(cell: Cell | None, untrained: int) -> str:
    """The cell, or where no run trained, how many did not (a dash where none ran)."""
    if cell is not None:
        return str(cell)
    return f"– ({untrained} did not train)" if untrained else "–"
