"""What trayagent asks of slskd for the user: retries and cancels, planned as plain data.

slskd's rules shape both:
- An enqueue that lists one (filename, size) twice fails whole with a 500 ("Two or more files
  in request are duplicated"), so a retry lists each peer's file once, however often it failed.
- Re-enqueueing a file that has since completed downloads it again, so such failures are skipped.
- A download cancelled while it waits between slskd's own retries ends `Completed, Errored`
  carrying the previous attempt's error, so whoever cancels notes the id first and the tracker
  reports that end as cancelled (see tracker rule 7).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import AbstractSet, Callable, Collection, Iterable, Sequence

from trayagent.config import SlskdConfig
from trayagent.core.model import Finished, Kind, Transfer
from trayagent.slskd.client import SlskdClient
from trayagent.slskd.errors import SlskdError, SlskdUnreachable
from trayagent.store import CANCEL, RETRY, Store

log = logging.getLogger(__name__)

#: After an enqueue POST timed out, how long to watch slskd's list for the files to appear.
ENQUEUE_CONFIRM_SECONDS = 10.0

FileKey = tuple[str, str]  # (username, filename): what slskd keeps across retries and restarts


@dataclass(slots=True)
class RetryPlan:
    """Per peer, the files to enqueue once each, and the failures (transfer ids) they answer."""

    files: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    completed_since: int = 0  # failures skipped: the same peer's file succeeded later
    in_progress: int = 0  # failures skipped: slskd already has that peer's file queued or running

    @property
    def empty(self) -> bool:
        return not self.files


def plan_retry(
    recent: Sequence[Finished],
    retried: AbstractSet[str],
    live: AbstractSet[FileKey],
    wanted: Collection[str] | None = None,
) -> RetryPlan:
    """Choose what to re-enqueue among `recent` (newest first).

    `retried`: transfer ids already retried (never twice); `live`: files with a download that
    has not ended; `wanted`: only these failure ids (None: every recent failure).
    """
    plan = RetryPlan()
    succeeded: set[FileKey] = set()
    chosen: dict[FileKey, int] = {}  # file -> size of its newest failure
    for f in recent:
        key = (f.username, f.filename)
        if f.outcome is Kind.SUCCEEDED:
            succeeded.add(key)  # everything older for this file is answered
            continue
        if f.outcome is not Kind.FAILED or f.transfer_id in retried:
            continue
        if wanted is not None and f.transfer_id not in wanted:
            continue
        if key in succeeded:
            plan.completed_since += 1
            continue
        if key in live:
            plan.in_progress += 1
            continue
        if key not in chosen:
            chosen[key] = f.size
            plan.files.setdefault(f.username, []).append((f.filename, f.size))
        plan.failures.setdefault(f.username, []).append(f.transfer_id)
    return plan


def new_records(transfers: Iterable[Transfer], username: str, filenames: AbstractSet[str],
                known: AbstractSet[str]) -> set[str]:
    """Which of a peer's files slskd lists under an id not seen before (an enqueue took effect)."""
    return {t.filename for t in transfers
            if t.username == username and t.filename in filenames and t.id not in known}


class CancelNotingClient(SlskdClient):
    """A client whose cancel_download first hands the id to `note` (which records it).

    Given to the playlist sync, so the cancels it makes are known as cancels to the agent's
    tracker, even when slskd ends them `Completed, Errored`. Everything else is SlskdClient's.
    """

    def __init__(self, cfg: SlskdConfig, note: Callable[[Collection[str]], None]) -> None:
        super().__init__(cfg)
        self._note = note

    def cancel_download(self, username: str, transfer_id: str) -> None:
        self._note([transfer_id])
        super().cancel_download(username, transfer_id)


class IssuedLedger:
    """The retries and cancels made so far, by this process or another (`trayagent sync`).

    Persisted first: an end seen after a crash must still be judged by what was issued. The
    caller serialises access (the agent's lock).
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._issued: dict[str, set[str]] = {RETRY: set(), CANCEL: set()}
        self._row = 0

    def note(self, action: str, ids: Collection[str], at: datetime) -> None:
        if ids:
            self._store.note_issued(action, ids, at)
            self._issued[action].update(ids)

    def ids(self, action: str) -> set[str]:
        """Ids retried or cancelled so far, including what other processes noted since last asked."""
        rows, self._row = self._store.issued(self._row)
        for kind, tid in rows:
            self._issued.setdefault(kind, set()).add(tid)
        return self._issued[action]


def enqueue_retry(client: SlskdClient, user: str, files: list[tuple[str, int]],
                  confirm: Callable[[set[str]], int]) -> int | None:
    """Re-enqueue one peer's files; how many went in, or None when the retry failed.

    slskd answers an enqueue only after reaching the peer, so the POST may have taken
    effect although no answer came in time: then `confirm` (given the file names) reads
    slskd's list and the count is what it finds there.
    """
    try:
        result = client.enqueue(user, files)
    except SlskdUnreachable as exc:
        count = confirm({name for name, _size in files})
        if not count:
            log.warning("retry for %r failed: %s", user, exc)
            return None
        log.info("retry for %r: no answer in time, but slskd lists %d file(s) again", user, count)
        return count
    except SlskdError as exc:
        log.warning("retry for %r failed: %s", user, exc)
        return None
    return len(result.enqueued) if result.ids_known else len(files) - result.failed_count


def confirm_enqueued(read: Callable[[], Sequence[Transfer] | None], user: str, names: set[str],
                     known: set[str], interval: float) -> int:
    """Read slskd's list until the files appear under new ids (or give up); how many appeared.

    `read` is a whole poll of the agent, every record built: the peer may have no followed
    download, so a per-peer poll would not read it, and its recorded ends would not be built.
    """
    deadline = time.monotonic() + ENQUEUE_CONFIRM_SECONDS
    found: set[str] = set()
    while True:
        listed = read()
        if listed is not None:
            found |= new_records(listed, user, names, known)
            if found >= names:
                break
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(max(interval, 0.1), left))
    return len(found)


def removable(listed: Iterable[Transfer], recorded: Callable[[str], Kind | None], wanted: AbstractSet[Kind],
              now: datetime, min_age: float) -> list[Transfer]:
    """The ended transfers whose recorded end is one of `wanted`, ended at least `min_age` s ago."""
    return [t for t in listed
            if t.status.terminal and recorded(t.id) in wanted and _old_enough(t, now, min_age)]


def _old_enough(t: Transfer, now: datetime, min_age: float) -> bool:
    if min_age <= 0:
        return True
    ended = t.ended_at
    return ended is not None and now - ended >= timedelta(seconds=min_age)


def remove_transfers(client: SlskdClient, transfers: Iterable[Transfer], stopping: threading.Event) -> int:
    """DELETE each one from slskd's list, by its id; returns how many went.

    Stops at shutdown, and when slskd cannot be reached (every other removal would fail too).
    """
    removed = failed = 0
    for t in transfers:
        if stopping.is_set():
            break
        try:
            client.remove_download(t.username, t.id)
            removed += 1
        except SlskdError as exc:
            failed += 1
            if failed == 1:
                log.warning("could not remove %r: %s", t.filename, exc)
            if isinstance(exc, SlskdUnreachable):
                break
    if failed > 1:
        log.warning("could not remove %d finished transfer(s) in all", failed)
    return removed
