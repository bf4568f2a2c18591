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

from dataclasses import dataclass, field
from typing import AbstractSet, Any, Callable, Collection, Iterable, Sequence

from trayagent.core.model import Finished, Kind, Transfer

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


class CancelNotingClient:
    """A client whose cancel_download first hands the id to `note` (which records it).

    Given to the playlist sync, so the cancels it makes are known as cancels to the agent's
    tracker, even when slskd ends them `Completed, Errored`. Everything else passes through.
    """

    def __init__(self, client: Any, note: Callable[[Collection[str]], None]) -> None:
        self._client = client
        self._note = note

    def cancel_download(self, username: str, transfer_id: str) -> None:
        self._note([transfer_id])
        self._client.cancel_download(username, transfer_id)

    def close(self) -> None:
        self._client.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
