"""The playlist sync as a running agent runs it (the tray's *Sync playlists*).

The agent shows the sync's progress in its state and reports its end as one transient
``sync`` event; this module runs the sync and says how it ended, in the words of that event.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Collection

from trayagent.actions import CancelNotingClient
from trayagent.config import Config

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SyncEnd:
    """How a sync ended: `status` ok, incomplete or error; a summary, or the error in plain words."""

    status: str
    summary: str | None = None
    error: str | None = None


def run_agent_sync(config: Config, note_cancels: Callable[[Collection[str]], None], stop: threading.Event,
                   show: Callable[[str], None]) -> SyncEnd:
    """Run the configured sync; `show` gets each progress line, `note_cancels` each cancel first.

    The cancels the sync makes are noted before they are sent, so the agent's tracker reports
    those ends as cancelled (see actions.CancelNotingClient).
    """
    from trayagent.sync.store import SyncBusy
    from trayagent.sync_cli import run_configured_sync
    from trayagent.sync.playlist import PlaylistError

    try:
        client = CancelNotingClient(config.slskd, note_cancels)
        try:
            report = run_configured_sync(config, progress_cb=lambda p: show(p.text()), stop_event=stop,
                                         client=client)
        finally:
            client.close()
    except (PlaylistError, SyncBusy, ValueError, OSError) as exc:
        log.warning("playlist sync: %s", exc)
        return SyncEnd("error", error=str(exc))
    return SyncEnd("ok" if report.ok else "incomplete", summary=report.summary())
