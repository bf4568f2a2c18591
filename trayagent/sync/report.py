"""What a sync tells people: per-track results, totals, progress snapshots and their wording.

One vocabulary everywhere (JSON report, text report, log line per track, progress bar, the
tray's tooltip) so a track never reads as "queued" in one place and "pending" in another:

- completed / skipped (already had) / picked (dry run: would be downloaded)
- queued: enqueued at a peer, waiting in its queue or downloading
- pending: searched at least once, not settled yet (searching, choosing, waiting to retry)
- not_searched: not searched yet (waits for the search rate)
- failed / not_found, with the reason in words
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from trayagent.core.model import parse_flags

from trayagent.sync.playlist import SkippedLine
from trayagent.sync.ranking import short_path
from trayagent.sync.store import (
    ACTIVE, COMPLETED, ENQUEUING, FAILED, NOT_FOUND, PENDING, PICKED, READY, SEARCHING, TERMINAL, TrackState,
)

#: Report statuses in the order the totals list them.
STATUSES = ("skipped", "completed", "picked", "queued", "pending", "not_searched", "failed", "not_found")


@dataclass(frozen=True, slots=True)
class TrackResult:
    key: str
    artist: str
    title: str
    status: str  # one of STATUSES
    reason: str | None = None
    username: str | None = None
    filename: str | None = None
    attempts: int = 0
    searches: int = 0
    found: bool = False
    near_misses: tuple[dict[str, str], ...] = ()

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["near_misses"] = list(self.near_misses)
        return {k: v for k, v in data.items() if v is not None and v != []}

    def line(self) -> str:
        """One line for the log, a pipe, or the text report."""
        label = f"{self.artist} - {self.title}"
        where = f"{short_path(self.filename)} from {self.username}" if self.filename and self.username else ""
        if self.status in ("completed", "picked", "queued") and where:
            verb = {"completed": "downloaded", "picked": "would download", "queued": "queued"}[self.status]
            return f"{verb}: {label} ({where})"
        words = {"skipped": "already had", "not_searched": "not searched yet"}.get(
            self.status, self.status.replace("_", " "))
        return f"{words}: {label}" + (f" ({self.reason})" if self.reason else "")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def track_result(state: TrackState, tried: list[tuple[str, str, str]]) -> TrackResult:
    """A track's state in the report's words; `tried` is (username, filename, outcome), oldest first."""
    user, name = (tried[-1][0], tried[-1][1]) if tried else (None, None)
    if state.skipped:
        status = "skipped"
    elif state.status == PICKED:
        status = "picked"
        pick = state.pick or {}
        user, name = _text(pick.get("username")), _text(pick.get("filename"))
    elif state.status in (ACTIVE, ENQUEUING):
        status = "queued"
    elif state.status == PENDING and state.searches == 0 and not tried:
        status = "not_searched"
    elif state.status in (PENDING, SEARCHING, READY):
        status = "pending"
    else:
        status = state.status
    return TrackResult(
        key=state.key, artist=state.artist, title=state.title, status=status, reason=state.reason,
        username=user, filename=name, attempts=len({u for u, _f, _o in tried}), searches=state.searches,
        found=state.found, near_misses=tuple(state.near_misses) if status in ("not_found", "pending") else (),
    )


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What a run achieved, per track and in totals."""

    tracks: tuple[TrackResult, ...] = ()
    stopped: bool = False  # stop_event ended the run before every track was settled
    error: str | None = None  # why the run gave up (slskd unreachable, refused...)
    skipped_lines: tuple[SkippedLine, ...] = ()  # playlist lines that named no track
    dry_run: bool = False

    def count(self, status: str) -> int:
        return sum(1 for t in self.tracks if t.status == status)

    @property
    def total(self) -> int:
        return len(self.tracks)

    @property
    def found(self) -> int:
        """Tracks a search found a candidate for (whatever happened to the download)."""
        return sum(1 for t in self.tracks if t.found)

    @property
    def ok(self) -> bool:
        """Every track is on disk or downloaded (a dry run: or would be), and nothing went wrong."""
        good = ("completed", "skipped", "picked") if self.dry_run else ("completed", "skipped")
        return self.error is None and all(t.status in good for t in self.tracks)

    def totals(self) -> dict[str, int]:
        out = {"total": self.total, "found": self.found}
        out.update({status: self.count(status) for status in STATUSES})
        return out

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = dict(self.totals())
        out["stopped"] = self.stopped
        out["dry_run"] = self.dry_run
        if self.error:
            out["error"] = self.error
        out["tracks"] = [t.to_json() for t in self.tracks]
        out["skipped_lines"] = [s.to_json() for s in self.skipped_lines]
        return out

    def summary(self) -> str:
        """One line for a notification or the end of the CLI output."""
        t = self.totals()
        parts = [f"{t['picked']} would be downloaded" if self.dry_run else f"{t['completed']} downloaded"]
        for status, words in (("skipped", "already had"), ("queued", "still queued"),
                              ("pending", "being searched"), ("not_searched", "not searched yet"),
                              ("failed", "failed"), ("not_found", "not found")):
            if t[status]:
                parts.append(f"{t[status]} {words}")
        if self.skipped_lines:
            n = len(self.skipped_lines)
            parts.append(f"{n} playlist line{'s' if n != 1 else ''} skipped")
        kind = "Dry run" if self.dry_run else "Sync"
        text = f"{kind} of {t['total']} track{'' if t['total'] == 1 else 's'}: " + ", ".join(parts)
        if self.error:
            text += f" (stopped: {self.error})"
        elif self.stopped:
            text += " (stopped)"
        return text


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """A snapshot for a progress bar, the tray tooltip, or a line per settled track."""

    total: int
    done: int
    active: int  # enqueued at peers: waiting in their queues or downloading
    searching: int
    completed: int
    failed: int
    not_found: int
    current: str = ""
    downloading: int = 0  # of `active`, transfers in progress
    eta: float | None = None  # seconds until every track is searched, from the search rate
    settled: tuple[str, ...] = ()  # one line per track settled since the previous snapshot

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    @property
    def queued(self) -> int:
        return max(0, self.active - self.downloading)

    def counts(self) -> list[str]:
        """The non-zero counts in words, shared by the bar and the tooltip."""
        out = []
        for n, words in ((self.downloading, "downloading"), (self.queued, "queued"), (self.failed, "failed"),
                         (self.not_found, "not found")):
            if n:
                out.append(f"{n} {words}")
        if self.eta is not None and self.done < self.total:
            out.append(f"~{format_eta(self.eta)} left")
        return out

    def text(self) -> str:
        extra = self.counts()
        if self.searching:
            extra.append("searching")
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"Sync {self.done}/{self.total}{tail}"


def progress_of(states: Sequence[TrackState], eta: float | None, settled: tuple[str, ...]) -> SyncProgress:
    """A snapshot of a run's tracks, in the report's vocabulary."""
    return SyncProgress(
        total=len(states),
        done=sum(1 for s in states if s.status in TERMINAL),
        active=sum(1 for s in states if s.status in (ACTIVE, ENQUEUING)),
        searching=sum(1 for s in states if s.status == SEARCHING),
        completed=sum(1 for s in states if s.status == COMPLETED and not s.skipped),
        failed=sum(1 for s in states if s.status == FAILED),
        not_found=sum(1 for s in states if s.status == NOT_FOUND),
        current=next((s.label for s in states if s.status == SEARCHING), ""),
        downloading=sum(1 for s in states if s.status == ACTIVE and _downloading(s)),
        eta=eta,
        settled=settled,
    )


def _downloading(state: TrackState) -> bool:
    return state.current is not None and bool(parse_flags(state.current.state) & {"InProgress", "Initializing"})


def format_eta(seconds: float) -> str:
    """"<1 min", "14 min", "2 h 05 min": as precise as an estimate deserves."""
    minutes = int(round(seconds / 60.0))
    if minutes < 1:
        return "<1 min"
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def progress_bar(progress: SyncProgress, width: int = 30) -> str:
    """One terminal line: bar, counts, time left and the track being searched."""
    filled = int(round(progress.fraction * width))
    text = f"[{'#' * filled}{'-' * (width - filled)}] {progress.done}/{progress.total}"
    for part in progress.counts():
        text += f"  {part}"
    if progress.current:
        text += f"  searching: {progress.current[:40]}"
    return text


__all__ = [
    "STATUSES", "SyncProgress", "SyncReport", "TrackResult", "format_eta", "progress_bar", "progress_of", "track_result",
]
