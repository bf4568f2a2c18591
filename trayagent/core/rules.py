"""The one rule set for following a download on slskd until its end is certain.

Both the agent's tracker and the playlist sync follow downloads, and slskd makes the same
things ambiguous for both: a failure slskd may still retry, a transfer errored by slskd's own
restart that comes back under a new id, a record that is briefly not listed. `judge` says
what an observation means under those rules, so the two cannot drift apart again (they had:
the sync waited 65 s / 600 s where the tracker waited 60 s / 300 s).

Pure: the caller keeps the clocks (when a failure or a restart was first seen, how many polls
in a row a download was missing) and hands in the seconds elapsed; `judge` only decides.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from trayagent.core.model import Kind, Status


class FollowRules(Protocol):
    """How long to wait before believing a disappearance, a failure, or a restart casualty.

    Met by `tracker.Rules` and by the config's `[tracking]` section.
    """

    @property
    def grace_polls(self) -> int: ...

    @property
    def failure_settle(self) -> float: ...

    @property
    def restart_window(self) -> float: ...


class Phase(enum.Enum):
    GOING = "going"  # queued or in progress: nothing to decide yet
    SETTLING = "settling"  # failed, but slskd may still retry it or bring it back: wait
    MISSING = "missing"  # not listed, not yet for long enough to give it up
    ENDED = "ended"  # the end is certain: `outcome` (and `reason`) say which


class Wait(enum.Enum):
    """Which clock a settling download runs on (the caller starts it if it is not running)."""

    FAILURE = "failure"  # a retryable failure: `failure_settle`
    RESTART = "restart"  # slskd restarted under it: `restart_window`


@dataclass(frozen=True, slots=True)
class Verdict:
    phase: Phase
    outcome: Kind | None = None  # ENDED only: SUCCEEDED, FAILED or CANCELLED
    reason: str | None = None  # ENDED as FAILED: why, in slskd's words ("rejected", "missing", ...)
    wait: Wait | None = None  # SETTLING only

    @property
    def ended(self) -> bool:
        return self.phase is Phase.ENDED


#: Why a download that vanished from slskd's list failed, when nothing better is known.
MISSING_REASON = "missing"
#: Why a restart casualty that never came back failed, when its record said nothing better.
RESTART_REASON = "errored"

GOING = Verdict(Phase.GOING)
MISSING = Verdict(Phase.MISSING)
SETTLING_FAILURE = Verdict(Phase.SETTLING, wait=Wait.FAILURE)
SETTLING_RESTART = Verdict(Phase.SETTLING, wait=Wait.RESTART)
CANCELLED = Verdict(Phase.ENDED, Kind.CANCELLED)


def judge(
    status: Status | None,
    rules: FollowRules,
    *,
    casualty: bool = False,
    failing_for: float | None = None,
    restarting_for: float | None = None,
    missing_polls: int = 0,
    cancelled: bool = False,
    last_reason: str | None = None,
) -> Verdict:
    """What one observation of a followed download means.

    `status`: what slskd shows for it now; None when this poll did not list it.
    `casualty`: its record says slskd's own restart errored it (`Transfer.is_shutdown_casualty`).
    `failing_for` / `restarting_for`: seconds since a retryable failure / a restart casualty was
    first seen; None when that clock is not running (this observation starts it: 0 s).
    `missing_polls`: polls in a row it was not listed, this one included (absent only).
    `cancelled`: the follower itself asked slskd to cancel it, so a failure is a cancellation.
    `last_reason`: why its last record seen failed, if it did (absent only).
    """
    if status is None:
        return _judge_absent(rules, failing_for, restarting_for, missing_polls, cancelled, last_reason)
    kind = status.kind
    if kind is Kind.QUEUED or kind is Kind.IN_PROGRESS:
        return GOING
    if kind is not Kind.FAILED:
        return CANCELLED if kind is Kind.CANCELLED else Verdict(Phase.ENDED, kind)
    if cancelled:
        return CANCELLED
    if casualty:  # it returns under a new id once slskd has logged in again
        if (restarting_for or 0.0) >= rules.restart_window:
            return Verdict(Phase.ENDED, Kind.FAILED, status.reason)
        return SETTLING_RESTART
    if status.retryable and (failing_for or 0.0) < rules.failure_settle:
        return SETTLING_FAILURE
    return Verdict(Phase.ENDED, Kind.FAILED, status.reason)


def _judge_absent(
    rules: FollowRules, failing_for: float | None, restarting_for: float | None,
    missing_polls: int, cancelled: bool, last_reason: str | None,
) -> Verdict:
    """Not listed: after a restart it may yet come back; otherwise gone after `grace_polls`."""
    if restarting_for is not None:
        if restarting_for < rules.restart_window:
            return SETTLING_RESTART
        return CANCELLED if cancelled else Verdict(Phase.ENDED, Kind.FAILED, last_reason or RESTART_REASON)
    if missing_polls < rules.grace_polls:
        return MISSING
    if cancelled:  # cancelled and removed from slskd's list
        return CANCELLED
    reason = last_reason if failing_for is not None else None
    return Verdict(Phase.ENDED, Kind.FAILED, reason or MISSING_REASON)


__all__ = [
    "MISSING_REASON", "RESTART_REASON", "FollowRules", "Phase", "Verdict", "Wait", "judge",
]
