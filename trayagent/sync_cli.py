"""Entry points of the playlist sync: `trayagent sync` and the tray's "Sync playlists"."""

from __future__ import annotations

import json
import os
import signal
import threading
from dataclasses import replace
from functools import partial
from typing import IO, Callable, Sequence

from trayagent.config import Config
from trayagent.errors import TrayagentError
from trayagent.slskd.client import SlskdClient
from trayagent.sync.engine import EngineTimings, SyncClient, SyncEngine
from trayagent.sync.playlist import PlaylistError, SkippedLine, load_playlists
from trayagent.sync.report import SyncProgress, SyncReport, format_eta, progress_bar


def run_configured_sync(
    config: Config,
    paths: Sequence[str | os.PathLike[str]] = (),
    progress_cb: Callable[[SyncProgress], None] | None = None,
    stop_event: threading.Event | None = None,
    client: SyncClient | None = None,
) -> SyncReport:
    """The tray's "Sync playlists": the given (or configured) playlists, state in state_path.

    Raises PlaylistError for an unreadable playlist, SyncBusy when a sync already runs and
    ValueError when no playlist is given or configured. Meant for a background thread.
    """
    chosen = list(paths) or list(config.sync.playlists)
    if not chosen:
        raise ValueError("no playlists configured in [sync] playlists")
    skipped: list[SkippedLine] = []
    tracks = load_playlists(chosen, skipped)
    client, own_client = _client_for(config, client)
    try:
        engine = SyncEngine(client, config.sync, config.state_path, timings=EngineTimings(rules=config.tracking))
        report = engine.run(tracks, progress_cb=progress_cb, stop_event=stop_event)
        return _with_skipped(report, skipped)
    finally:
        if own_client is not None:
            own_client.close()


def _client_for(config: Config, client: SyncClient | None) -> tuple[SyncClient, SlskdClient | None]:
    """The given client, or a new SlskdClient for `[slskd]` (returned twice: the caller closes it)."""
    if client is not None:
        return client, None
    own = SlskdClient(config.slskd)
    return own, own


def _with_skipped(report: SyncReport, skipped: list[SkippedLine]) -> SyncReport:
    return replace(report, skipped_lines=tuple(skipped))


class _Display:
    """Progress where a human watches (a bar on a terminal), a line per settled track otherwise."""

    def __init__(self, err: IO[str]) -> None:
        self.err = err
        self.tty = bool(getattr(err, "isatty", lambda: False)())
        self.started = False

    def show(self, progress: SyncProgress) -> None:
        if self.tty:
            self.err.write("\r\x1b[2K" + progress_bar(progress))
        else:
            if not self.started and progress.eta is not None:
                self.err.write(f"{progress.total} tracks; searching them takes about {format_eta(progress.eta)}"
                               " at the configured search rate\n")
            for line in progress.settled:
                self.err.write(f"[{progress.done}/{progress.total}] {line}\n")
        self.started = True
        self.err.flush()

    def close(self) -> None:
        if self.tty:
            self.err.write("\n")
            self.err.flush()


def _write_text_report(report: SyncReport, out: IO[str]) -> None:
    for s in report.skipped_lines:
        out.write(f"skipped playlist line {s.source}:{s.line}: {s.reason}: {s.text}\n")
    for t in report.tracks:
        if t.status not in ("completed", "skipped"):
            out.write(t.line() + "\n")
    out.write(report.summary() + "\n")


def run_sync_command(
    config: Config,
    paths: Sequence[str | os.PathLike[str]],
    json_out: bool,
    out: IO[str],
    err: IO[str],
    *,
    client: SyncClient | None = None,
    engine_factory: Callable[..., SyncEngine] | None = None,
    stop_event: threading.Event | None = None,
    dry_run: bool = False,
) -> int:
    """`trayagent sync [PATH...] [--json] [--dry-run]`: 0 all obtained, 1 otherwise, 2 bad input.

    Without PATHs the playlists of `[sync] playlists` are used. Progress goes to `err` (a bar
    on a terminal, a line per settled track otherwise); the report goes to `out` (JSON with
    --json). Ctrl-C stops cleanly: the state is saved and the next run resumes. --dry-run
    searches and ranks, shows the picks, and enqueues nothing.
    """
    chosen = list(paths) or list(config.sync.playlists)
    if not chosen:
        err.write("trayagent sync: no playlists given and none configured in [sync] playlists\n")
        return 2
    skipped: list[SkippedLine] = []
    try:
        tracks = load_playlists(chosen, skipped)
    except PlaylistError as exc:
        err.write(f"trayagent sync: {exc}\n")
        return 2
    client, own_client = _client_for(config, client)
    factory = engine_factory or partial(SyncEngine, timings=EngineTimings(rules=config.tracking))
    engine = factory(client, config.sync, config.state_path, **({"dry_run": True} if dry_run else {}))
    display = _Display(err)
    stop = stop_event or threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        report = _with_skipped(engine.run(tracks, progress_cb=display.show, stop_event=stop), skipped)
    except TrayagentError as exc:  # SyncBusy: another sync runs; or the lock/state file cannot be had
        err.write(f"trayagent sync: {exc}\n")
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        if own_client is not None:
            own_client.close()
        display.close()
    if json_out:
        out.write(json.dumps(report.to_json(), ensure_ascii=False) + "\n")
    else:
        _write_text_report(report, out)
    out.flush()
    return 0 if report.ok else 1


__all__ = ["run_configured_sync", "run_sync_command"]
