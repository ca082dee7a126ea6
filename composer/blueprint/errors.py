"""One exception type for every user mistake, carrying where it happened."""
from __future__ import annotations

import difflib
from dataclasses import dataclass


@dataclass
class Location:
    file: str
    line: int | None = None  # 1-based
    column: int | None = None  # 1-based

    def __str__(self) -> str:
        parts = [self.file]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


class BlueprintError(Exception):
    """A user mistake in a blueprint or a data file.

    Printed by the CLI as ``FILE:LINE:COL: key: what is wrong; what is valid`` with exit status 2.
    ``problems`` holds more than one located message when validation found several.
    """

    def __init__(self, message: str, *, location: Location | None = None, key: str | None = None,
                 hint: str | None = None):
        self.message = message
        self.location = location
        self.key = key
        self.hint = hint
        self.problems: list[BlueprintError] = [self]
        super().__init__(self.render())

    def render(self) -> str:
        head = f"{self.location}: " if self.location else ""
        key = f"{self.key}: " if self.key else ""
        hint = f"; {self.hint}" if self.hint else ""
        return f"{head}{key}{self.message}{hint}"

    @classmethod
    def many(cls, problems: list["BlueprintError"]) -> "BlueprintError":
        """One error carrying several problems; identical messages (e.g. from the stamped
        copies of one block) are shown once."""
        unique = {}
        for p in problems:
            unique.setdefault(p.render(), p)
        problems = list(unique.values())
        first = problems[0]
        first.problems = problems
        first.args = ("\n".join(p.render() for p in problems),)
        return first

    def __str__(self) -> str:
        return "\n".join(p.render() for p in self.problems)


def did_you_mean(word: str, choices, *, what: str = "valid") -> str:
    """A hint: the closest choice if one is close, then the valid choices."""
    choices = sorted({str(c) for c in choices})
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    shown = ", ".join(choices[:25]) + (", ..." if len(choices) > 25 else "")
    valid = f"{what}: {shown}" if choices else f"no {what} choices exist"
    return f"did you mean '{close[0]}'? {valid}" if close else valid
