"""`--shard I/N`: a deterministic share of the files, so that N jobs of any scheduler (Kubernetes
Indexed Jobs, Slurm arrays) split a folder between them with no coordinator. Standard library
only: the command line checks the flag before it loads anything heavy."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from training.errors import InputError


@dataclass(frozen=True)
class Shard:
    """Share `index` of `count` (0 <= index < count): the files whose name hashes to it."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`I/N` as --shard writes it; InputError for anything else."""
        index, slash, count = text.partition("/")
        if not (slash and index.strip().isdigit() and count.strip().isdigit()):
            raise InputError(f"--shard {text} is not I/N, e.g. --shard 0/4 (the first of 4)")
        shard = cls(int(index), int(count))
        if shard.count < 1 or shard.index >= shard.count:
            raise InputError(
                f"--shard {text}: I must be from 0 to N-1 and N at least 1, "
                f"e.g. --shard 0/{max(1, shard.count)}"
            )
        return shard

    def takes(self, name: str) -> bool:
        """True when the file `name` (as the CSV names it) belongs to this shard.

        A hash of the name, not a place in a listing: every job of a scheduler computes it
        alone, and a file added or removed between the jobs' listings moves no other file.
        """
        if self.count == 1:
            return True
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index

    def suffix(self) -> str:
        """How the default output file name says which shard it holds: `.shard-0-of-4`."""
        return "" if self.count == 1 else f".shard-{self.index}-of-{self.count}"
