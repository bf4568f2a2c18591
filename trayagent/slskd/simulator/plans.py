"""Scripted lives for transfers: a list of steps the clock thread plays out against a record.

Why: tests and the demo need a transfer to queue, start, progress, fail, be retried or finish on
a timetable (scaled by `speedup`), the way slskd would move it, without anyone driving each change.

Steps: ("state", s, hold), ("wait", secs), ("transfer", bps[, until_bytes]), ("end", s[, exception]),
("attempt",), ("attempts", n), ("remove",).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from trayagent.slskd.simulator.records import TransferRecord, apply_state
from trayagent.slskd.simulator.wire import is_completed, wall

INIT_SECONDS = 0.3  # how long a plan's transfer step shows "Initializing" (scaled by speedup)

StepArg = str | int | float | None
Step = tuple[StepArg, ...]

STEP_KINDS = frozenset({"state", "wait", "transfer", "end", "attempt", "attempts", "remove"})

# What a step tells the runner: hold here until a later tick, go on to the next step, or drop the plan.
_WAIT, _NEXT, _STOP = "wait", "next", "stop"


@dataclass(slots=True)
class Plan:
    """A scripted life for one transfer, advanced by the clock thread."""

    tid: str
    steps: list[Step]
    idx: int = 0
    started: float | None = None  # monotonic start of the current step
    entered: bool = False
    base_bytes: int = 0
    last_state: str | None = None

    def reset_to(self, idx: int, started: float | None) -> None:
        self.idx, self.started, self.entered, self.base_bytes = idx, started, False, 0


def check_steps(steps: Sequence[Sequence[StepArg]]) -> list[Step]:
    """The steps as tuples; ValueError names the first step the runner could not play."""
    checked = [tuple(s) for s in steps]
    for step in checked:
        if not step or step[0] not in STEP_KINDS:
            raise ValueError(f"unknown plan step {step!r}")
        if step[0] in {"state", "end"} and (len(step) < 2 or not isinstance(step[1], str)):
            raise ValueError(f"plan step {step!r} needs a state string")
        if step[0] in {"transfer", "wait", "attempts"} and len(step) < 2:
            raise ValueError(f"plan step {step!r} needs a number")
    return checked


def advance(plan: Plan, rec: TransferRecord, now: float, speedup: float) -> bool:
    """Play `plan` up to `now`; False once it is over (ended, removed, or ended from outside)."""
    if rec.removed:
        return False
    if rec.state != plan.last_state and is_completed(rec.state) and plan.last_state is not None:
        return False  # cancelled (or otherwise ended) from outside
    if plan.started is None:
        plan.started = now
    speed = max(float(speedup), 1e-9)
    while plan.idx < len(plan.steps):
        step = plan.steps[plan.idx]
        t0 = now if plan.started is None else plan.started
        outcome = _RUNNERS[str(step[0])](plan, rec, step, t0, now, speed)
        if outcome == _WAIT:
            return True
        if outcome == _STOP:
            return False
    return False


def _num(value: StepArg) -> float:
    if value is None:
        raise TypeError("a plan step needs a number here")
    return float(value)


def _set(plan: Plan, rec: TransferRecord, state: StepArg, mono: float) -> None:
    apply_state(rec, str(state), wall(mono))
    plan.last_state = str(state)


def _hold(plan: Plan, rec: TransferRecord, step: Step, t0: float, now: float, speed: float) -> str:
    """("state", s, hold) and ("wait", secs): show a state (or nothing new) for a while."""
    kind = step[0]
    if kind == "state" and not plan.entered:
        _set(plan, rec, step[1], t0)
        plan.entered = True
    hold = _num(step[2]) if kind == "state" and len(step) > 2 else _num(step[1]) if kind == "wait" else 0.0
    end = t0 + hold / speed
    if now < end:
        return _WAIT
    plan.reset_to(plan.idx + 1, end)
    return _NEXT


def _transfer(plan: Plan, rec: TransferRecord, step: Step, t0: float, now: float, speed: float) -> str:
    """("transfer", bps[, until_bytes]): Initializing, then InProgress at bps until the target."""
    bps = _num(step[1]) * speed
    target = min(int(_num(step[2])), rec.size) if len(step) > 2 else rec.size
    if not plan.entered:
        _set(plan, rec, "Initializing", t0)
        plan.base_bytes = rec.bytes_transferred
        plan.entered = True
    init_end = t0 + INIT_SECONDS / speed
    if now < init_end:
        return _WAIT
    if rec.state != "InProgress":
        _set(plan, rec, "InProgress", init_end)
        rec.average_speed = bps
    if bps <= 0:
        return _WAIT  # stalled for good
    done_at = init_end + max(target - plan.base_bytes, 0) / bps
    upto = min(now, done_at)
    rec.bytes_transferred = max(
        rec.bytes_transferred, min(target, plan.base_bytes + int((upto - init_end) * bps))
    )
    if now < done_at:
        return _WAIT
    rec.bytes_transferred = max(rec.bytes_transferred, target)
    plan.reset_to(plan.idx + 1, done_at)
    return _NEXT


def _end(plan: Plan, rec: TransferRecord, step: Step, t0: float, now: float, speed: float) -> str:
    """("end", s[, exception]): the attempt ends in state s."""
    _set(plan, rec, step[1], t0)
    if len(step) > 2 and step[2] is not None:
        rec.exception = str(step[2])
    if step[1] == "Completed, Succeeded":
        rec.bytes_transferred = max(rec.bytes_transferred, rec.size)
    plan.reset_to(plan.idx + 1, t0)
    return _NEXT


def _attempt(plan: Plan, rec: TransferRecord, step: Step, t0: float, now: float, speed: float) -> str:
    """("attempt",): slskd 0.25+ retry: same id, attempts + 1, back to the queue."""
    rec.attempts += 1
    rec.started_at = None
    _set(plan, rec, "Queued, Locally", t0)
    plan.reset_to(plan.idx + 1, t0)
    return _NEXT


def _attempts(plan: Plan, rec: TransferRecord, step: Step, t0: float, now: float, speed: float) -> str:
    """("attempts", n): set the attempt counter."""
    rec.attempts = int(_num(step[1]))
    plan.reset_to(plan.idx + 1, t0)
    return _NEXT


def _remove(plan: Plan, rec: TransferRecord, step: Step, t0: float, now: float, speed: float) -> str:
    """("remove",): the record is soft-removed, which ends the plan."""
    rec.removed = True
    return _STOP


_RUNNERS: dict[str, Callable[[Plan, TransferRecord, Step, float, float, float], str]] = {
    "state": _hold, "wait": _hold, "transfer": _transfer, "end": _end,
    "attempt": _attempt, "attempts": _attempts, "remove": _remove,
}
