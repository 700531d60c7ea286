"""Shared bits of the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Result:
    name: str
    measured: str
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "NOT met", None: "-"}[self.met]
