"""slskd as the agent last saw it: reachable or not, logged in to Soulseek, where it saves.

Each change of reachability is one transient ``connection`` event (lost, restored), never one
per failed poll; failures in a row set the poll's back-off. The agent owns one of these and
reads it into each ``AgentState`` snapshot.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime

from trayagent.config import PollConfig
from trayagent.core.model import Event, EventType
from trayagent.slskd.client import SlskdClient
from trayagent.slskd.errors import SlskdError, SlskdUnreachable

log = logging.getLogger(__name__)


class ServerStatus:
    """Reachability, login and download directory of one slskd, as the agent's jobs found them."""

    def __init__(self, download_dir_known: bool) -> None:
        self.connected: bool | None = None  # None until the first poll
        self.failures = 0  # failed polls in a row
        self.logged_in: bool | None = None
        self._download_dir_known = download_dir_known

    def poll_failed(self, exc: SlskdError, now: datetime) -> Event | None:
        """A poll could not read slskd: the `lost` event when it was reachable until now."""
        self.failures += 1
        if self.connected is False:
            log.debug("slskd still unreachable (%d failures): %s", self.failures, exc)
            return None
        log.warning("slskd %s: %s", "unreachable" if isinstance(exc, SlskdUnreachable) else "cannot be read", exc)
        self.connected = False
        return Event(EventType.CONNECTION, now, status="lost", error=str(exc))

    def poll_succeeded(self, now: datetime) -> Event | None:
        """A poll read slskd: the `restored` event when it was unreachable until now."""
        was = self.connected
        self.failures = 0
        self.connected = True
        if was is not False:
            return None
        log.warning("slskd reachable again")
        return Event(EventType.CONNECTION, now, status="restored")

    def next_interval(self, poll: PollConfig, ok: bool, busy: bool) -> float:
        """Seconds to the next poll: active while downloads are followed, backing off on failures."""
        if ok:
            return poll.active_interval if busy else poll.idle_interval
        return min(poll.max_backoff, max(poll.active_interval, 0.05) * 2 ** self.failures)

    def learn_download_dir(self, client: SlskdClient) -> str | None:
        """Ask slskd where downloads land, for the Recent menu, until it answers; None if not local.

        slskd often runs on another machine or in a container, so its path is taken only when
        that directory exists here. Asked once per run (again after an error).
        """
        if self._download_dir_known:
            return None
        try:
            remote = client.download_directory()
        except SlskdError as exc:
            log.debug("download directory unavailable: %s", exc)
            return None
        self._download_dir_known = True
        if remote and os.path.isdir(remote):
            log.info("slskd saves downloads in %s", remote)
            return remote
        log.info("slskd's download directory %r is not on this machine; set [slskd] download_dir", remote)
        return None
