"""The errors every floor raises for bad input and faulted runs, and their exit codes.

Standard library only and nothing of ours, so that every floor (envs, the wire, the host,
the analysis, the entry points) may import it without a cycle.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2
EXIT_FAULT = 3


class UserError(Exception):
    """Bad input: reported as one line, exit code 2."""


class RunFault(Exception):
    """A run that started and ended by fault (deploy): one line, exit code 3."""


def one_line(e: BaseException) -> str:
    """An exception as one line: its first two non-empty lines joined, else its type name."""
    text = str(e).strip() or type(e).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[:2]) if lines else type(e).__name__
