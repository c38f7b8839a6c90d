"""How `firmware_bridge.replay` runs one report section: a section that cannot be done
raises `Skip` with the reason, and `run_section` names any failure in the summary's
`missing` list instead of ending the program, so a damaged log still gets a report.
Bad input (`UserError`) still ends the program with its one line.

Shared by the replay's section modules (`replay_run`, `replay_recheck`, `replay_sim`,
`replay_fit`, `replay_render`); imports nothing of ours above the base floor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ppo_robot.cli import UserError, one_line

log = logging.getLogger("replay")
"""The replay's logger (one name for every replay module: its level is set once)."""


class Skip(Exception):
    """A report section that cannot be done; the message says why."""


def run_section(missing: list[str], what: str, fn: Callable[[], Any]) -> Any:
    """Run one report section; a failure is named in `missing`, never a traceback.
    Bad input (UserError) still ends the program with its one line."""
    try:
        return fn()
    except UserError:
        raise
    except Skip as e:
        missing.append(f"{what}: {e}")
    except Exception as e:  # a damaged log can break a section in many ways; report, go on
        log.debug("%s failed", what, exc_info=True)
        missing.append(f"{what}: {type(e).__name__}: {one_line(e)}")
    return None


def report():
    """The report module (figures and report.md), imported only when a section draws."""
    from firmware_bridge.analysis import report

    return report
