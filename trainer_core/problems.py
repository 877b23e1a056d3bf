"""Findings about a dataset item, each with what to do about it.

"error" excludes the item, "warning" keeps it but asks the user to look (strict mode fails on both), "info" records
something the pack handled on its own.
"""

from __future__ import annotations

import dataclasses

ERROR = "error"
WARNING = "warning"
INFO = "info"
_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


@dataclasses.dataclass(frozen=True)
class Problem:
    severity: str
    code: str
    """Stable identifier for tests and tools, e.g. ``caption_missing``."""
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.severity}: {self.message}. Fix: {self.fix}"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Problem:
        return cls(**data)


def is_blocking(problem: Problem) -> bool:
    """Whether strict mode fails on it."""
    return problem.severity in (ERROR, WARNING)


def sorted_problems(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: _ORDER.get(p.severity, 3))
