"""slskd's download list and its rules: supersede-on-re-request, soft removal, asynchronous cancels,
queue positions, what a restart does to unfinished transfers, and the plans that move them.

Why apart from the HTTP routes: these rules hold whether a change comes over HTTP, from a test's
Python call or from the clock; the routes only translate them into status codes.
Not thread-safe: every caller holds the simulator's lock.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Iterable, Sequence

from trayagent.slskd.simulator import plans
from trayagent.slskd.simulator.plans import Plan, Step
from trayagent.slskd.simulator.records import TransferRecord, apply_state
from trayagent.slskd.simulator.wire import COMPLETED_SET, JsonObject, flags, flags_value, is_completed, wall

log = logging.getLogger(__name__)

SHUTDOWN_EXCEPTION = "Application shut down"

#: One file asked for in an enqueue: (filename, size).
FileRequest = tuple[str, int]


def has_traversal(filename: str) -> bool:
    """slskd refuses a filename with a '..' segment."""
    return any(seg == ".." for seg in re.split(r"[\\/]", filename))


def backdate(rec: TransferRecord, now: float, ended_ago: float | None, duration: float) -> None:
    """Stamp requestedAt/enqueuedAt/startedAt/endedAt as slskd would have for a record added
    already in its state, `duration` seconds of transfer before it ended (or before now)."""
    end = now - (ended_ago or 0.0)
    names = flags(rec.state)
    if "Completed" in names:
        rec.ended_at = end
        if rec.bytes_transferred or "Succeeded" in names:
            rec.started_at = end - duration
        first = (rec.started_at if rec.started_at is not None else end) - 2.0
        rec.requested_at, rec.enqueued_at = first - 1.0, first
    elif names & {"InProgress", "Initializing"}:
        rec.started_at = now - duration
        rec.requested_at, rec.enqueued_at = rec.started_at - 3.0, rec.started_at - 2.0
    elif "Remotely" in names:
        rec.enqueued_at = now


class TransferBook:
    """Every download record, by id and by (username, filename), with the plans that move them."""

    def __init__(self) -> None:
        self.records: dict[str, TransferRecord] = {}
        self._by_key: dict[tuple[str, str], list[str]] = {}
        self.plans: dict[str, Plan] = {}
        self.suspended: dict[str, Plan] = {}  # old tid -> plan, across a restart
        self.cancelling: dict[str, float] = {}  # tid -> monotonic time the cancel lands

    # ------------------------------------------------------------------ records

    def get(self, tid: str) -> TransferRecord:
        """The record with this id (removed ones included); KeyError if there is none."""
        rec = self.records.get(tid)
        if rec is None:
            raise KeyError(tid)
        return rec

    def new_record(self, username: str, filename: str, size: int, state: str, *, supersede: bool) -> TransferRecord:
        """A new record; it soft-removes older records of the same file unless `supersede=False`."""
        key = (username, filename)
        if supersede:
            for old in self._by_key.get(key, []):
                self.records[old].removed = True
        rec = TransferRecord(str(uuid.uuid4()), username, filename, size, state, time.time())
        self.records[rec.id] = rec
        self._by_key.setdefault(key, []).append(rec.id)
        return rec

    def delete(self, tid: str) -> None:
        """Hard-delete a record (as if slskd's database lost it): gone even by id."""
        rec = self.records.pop(tid)
        ids = self._by_key.get((rec.username, rec.filename), [])
        if tid in ids:
            ids.remove(tid)
        self.plans.pop(tid, None)
        self.cancelling.pop(tid, None)

    def listed(self, include_removed: bool) -> list[TransferRecord]:
        """Every record in insertion order, the soft-removed ones only when asked."""
        return [r for r in self.records.values() if include_removed or not r.removed]

    def of_user(self, username: str) -> list[TransferRecord]:
        """One peer's records that are not removed, in insertion order."""
        return [r for r in self.records.values() if r.username == username and not r.removed]

    # ------------------------------------------------------------------ slskd's rules

    def enqueue(
        self, username: str, items: Iterable[FileRequest], plan: Sequence[Step] | None
    ) -> tuple[list[JsonObject], list[JsonObject]]:
        """DownloadService.EnqueueAsync: (enqueued, failed); a file already in progress fails."""
        enqueued: list[JsonObject] = []
        failed: list[JsonObject] = []
        new_ids: list[str] = []
        for filename, size in items:
            active = [
                self.records[t] for t in self._by_key.get((username, filename), [])
                if not self.records[t].removed and not is_completed(self.records[t].state)
            ]
            if active:  # "Skipped: Already in progress"; a C# tuple serialises as {}
                failed.append({})
                continue
            rec = self.new_record(username, filename, int(size), "Queued, Locally", supersede=True)
            rec.attempts = 0  # no attempt has started yet (the first one makes it 1)
            new_ids.append(rec.id)
            enqueued.append(rec.to_json())
        if plan:
            for tid in new_ids:
                self.plans[tid] = Plan(tid, list(plan))
        return enqueued, failed

    def cancel(self, tid: str, delay: float) -> None:
        """The transfer's token is cancelled: it stops moving now, and the record turns
        `Completed, Cancelled` only when the task fails `delay` seconds later (0: at once)."""
        rec = self.records[tid]
        if is_completed(rec.state):
            return
        self.plans.pop(tid, None)
        if delay > 0:
            self.cancelling.setdefault(tid, time.monotonic() + delay)
        else:
            self.land_cancel(tid, time.time())

    def land_cancel(self, tid: str, when: float) -> None:
        """The cancelled transfer's task fails now."""
        self.cancelling.pop(tid, None)
        rec = self.records.get(tid)
        if rec is None or is_completed(rec.state):
            return
        if rec.state == "Queued, Locally" and rec.exception is not None:
            # Waiting between slskd's own retries: the cancelled wait fails the retry loop, and
            # TryFail keeps the earlier attempt's endedAt and exception (Common/Retry.cs).
            rec.state = "Completed, Errored"
            rec.place_in_queue = None
            return
        apply_state(rec, "Completed, Cancelled", when)

    @staticmethod
    def remove_if_completed(rec: TransferRecord) -> None:
        """`remove=true`: only a record in TransferStateCategories.Completed is removed."""
        if flags_value(rec.state) in COMPLETED_SET:
            rec.removed = True

    def clear_completed(self) -> None:
        """`DELETE downloads/all/completed`: every completed record is soft-removed."""
        for rec in self.records.values():
            if not rec.removed:
                self.remove_if_completed(rec)

    def position(self, rec: TransferRecord) -> int:
        """The place in the peer's queue, which slskd stores on the record until it is rewritten."""
        rec.place_in_queue = 1 + sum(
            1 for r in self.records.values()
            if r.username == rec.username and not r.removed and "Queued" in flags(r.state)
            and r.requested_at < rec.requested_at
        )
        return rec.place_in_queue

    # ------------------------------------------------------------------ the clock

    def tick(self, now: float, speedup: float) -> None:
        """Play every plan up to `now` and land the cancels that are due."""
        for tid, plan in list(self.plans.items()):
            try:
                rec = self.records.get(plan.tid)
                keep = rec is not None and plans.advance(plan, rec, now, speedup)
            except Exception:
                log.exception("plan for %s failed; dropping it", tid)
                keep = False
            if not keep:
                self.plans.pop(tid, None)
        for tid, due in list(self.cancelling.items()):
            if now >= due:
                self.land_cancel(tid, wall(due))

    def shift_plans(self, paused: float) -> None:
        """Plans not hit by a restart resume where they were after `paused` seconds down."""
        for plan in self.plans.values():
            if plan.started is not None:
                plan.started += paused

    # ------------------------------------------------------------------ restart

    def shutdown_casualties(self, now: float) -> list[str]:
        """What slskd does at startup: every unfinished transfer becomes `Completed, Errored`."""
        casualties: list[str] = []
        for rec in self.records.values():
            if rec.removed or (rec.ended_at is not None and is_completed(rec.state)):
                continue
            apply_state(rec, "Completed, Errored", now)
            rec.ended_at = now
            rec.exception = SHUTDOWN_EXCEPTION
            casualties.append(rec.id)
            self.cancelling.pop(rec.id, None)
            plan = self.plans.pop(rec.id, None)
            if plan is not None:
                self.suspended[rec.id] = plan
        return casualties

    def reenqueue(self, casualties: list[str], enqueue_plan: Sequence[Step] | None) -> None:
        """After the restart's login, slskd enqueues each casualty again under a new id."""
        now = time.monotonic()
        for old_id in casualties:
            old = self.records[old_id]
            plan = self.suspended.pop(old_id, None)
            if old.removed:  # the user removed it while slskd was logging in
                continue
            new = self.new_record(old.username, old.filename, old.size, "Queued, Locally", supersede=True)
            if plan is not None:
                transfer_steps = [i for i, s in enumerate(plan.steps[: plan.idx + 1]) if s[0] == "transfer"]
                resume = transfer_steps[-1] if transfer_steps else plan.idx
                new_plan = Plan(new.id, plan.steps)
                new_plan.reset_to(resume, now)
                new_plan.last_state = new.state
                self.plans[new.id] = new_plan
            elif enqueue_plan:  # slskd re-enqueues through the normal enqueue path
                self.plans[new.id] = Plan(new.id, list(enqueue_plan))
            log.debug("re-enqueued %s as %s", old_id, new.id)
