"""Which of slskd's download lists a poll reads, and reading them.

slskd's whole list grows with every transfer it keeps, so reading and parsing it on every
poll costs more the longer slskd runs. While a few peers' downloads are followed, a poll
reads only those peers' own lists; the whole list is read at the idle interval (by id only,
when nothing in it can be new) and whenever a per-peer read could miss something. The agent
keeps the tracker and hands it in; this module keeps only when the whole list was last read.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Mapping

from trayagent.config import PollConfig
from trayagent.core.model import Kind
from trayagent.core.tracker import Tracker
from trayagent.slskd.client import SlskdClient
from trayagent.slskd.errors import SlskdError, SlskdUnauthorized, SlskdUnreachable
from trayagent.slskd.parsing import Downloads

log = logging.getLogger(__name__)

#: What a poll read, and the peers it covers (None: slskd's whole list, every new record built).
Fetched = tuple[Downloads, frozenset[str] | None]


class Poller:
    """Reads slskd for each poll: the followed peers' lists, or the whole list (by id if it may).

    `on_failure` is called when slskd cannot be reached or refuses the credentials: the poll
    failed, and the next one reads the whole list (a reconnect).
    """

    def __init__(self, client: SlskdClient, config: PollConfig, on_failure: Callable[[SlskdError], None]) -> None:
        self._client = client
        self._config = config
        self._on_failure = on_failure
        self._full_due = True  # the next poll reads slskd's whole list (see peers_to_poll)
        self._last_full = float("-inf")  # monotonic time of the last full poll

    def whole_list_next(self) -> None:
        """The next poll reads slskd's whole list (after a reconnect, a failed commit, a login)."""
        self._full_due = True

    def fetch(self, tracker: Tracker, build_all: bool) -> Fetched | None:
        """Read slskd for one poll; `build_all` reads the whole list and builds every record.

        Returns what was read and the peers it covers (None: the whole list, built), or None
        when the poll failed (already handed to `on_failure`).
        """
        peers = None if build_all else self.peers_to_poll(tracker)
        known = None if build_all else tracker.recorded
        if peers is not None:
            return self._fetch_peers(tracker, peers, known)
        return self._fetch_all(tracker, known, None if build_all else self.whole_list_by_id(tracker))

    def _whole_list_needed(self, tracker: Tracker) -> bool:
        """The reasons, other than the idle interval, that a poll reads and builds the whole list."""
        p = self._config
        return self._full_due or p.max_peers <= 0 or not tracker.initialized or tracker.needs_full_poll()

    def peers_to_poll(self, tracker: Tracker) -> frozenset[str] | None:
        """The peers whose own lists this poll reads, or None to read slskd's whole list.

        The whole list is read on the first poll, once per idle_interval (so downloads added
        elsewhere are noticed as soon as when idle), at once after a failed poll (a reconnect),
        a failed peer's list, a download gone missing from its peer's list, or an slskd restart,
        and whenever more than [poll] max_peers peers are followed.
        """
        p = self._config
        if self._whole_list_needed(tracker):
            return None
        if time.monotonic() - self._last_full >= p.idle_interval - p.active_interval / 2:
            return None
        peers = tracker.peers()
        if not peers or len(peers) > p.max_peers or "" in peers:
            return None
        return peers

    def whole_list_by_id(self, tracker: Tracker) -> frozenset[str] | None:
        """The followed ids, when this poll may read slskd's whole list for its ids only.

        That is when the whole list is read because idle_interval has passed (or nothing is
        followed): if every id in it is recorded or followed, it holds nothing new, and the
        followed peers' own lists give their records (client.list_downloads, `followed`).
        None, and the whole list is built, whenever a reason in peers_to_poll other than the
        interval holds, or the followed peers cannot all be read one by one.
        """
        if self._whole_list_needed(tracker):
            return None
        peers = tracker.peers()
        if len(peers) > self._config.max_peers or "" in peers or any(d.missing_polls for d in tracker.active):
            return None
        return tracker.followed_ids()

    def after_poll(self, tracker: Tracker, full: bool, whole: bool) -> None:
        """After a committed poll: when the next one must read the whole list."""
        if whole:
            self._last_full = time.monotonic()
        if full:
            self._full_due = False
        elif any(d.missing_polls for d in tracker.active):
            self._full_due = True  # absence is confirmed against the whole list, poll by poll

    def _failed(self, exc: SlskdError) -> None:
        self._full_due = True  # after a reconnect, the whole list first
        self._on_failure(exc)

    def _fetch_all(
        self, tracker: Tracker, known: Mapping[str, Kind] | None, followed: frozenset[str] | None = None,
    ) -> Fetched | None:
        """Read slskd's whole list; by id only when `followed` is given and nothing in it is new.

        Read by id, the poll then reads the followed peers' lists and covers those peers.
        """
        # While downloads are followed, the memory a parse frees is used again within a second.
        trim = not tracker.active
        try:
            listed = self._client.list_downloads(known=known, followed=followed, trim=trim)
        except SlskdError as exc:
            self._failed(exc)
            return None
        if not listed.by_id:
            return listed, None
        peers = tracker.peers()
        if not peers:
            return listed, frozenset()
        fetched = self._fetch_peers(tracker, peers, known)
        if fetched is None or fetched[1] is None:
            return fetched  # failed, or no peer's list answered and the whole list was built
        got, covered = fetched
        got.recorded_ids = [*got.recorded_ids, *listed.recorded_ids]
        got.by_id = True
        return got, covered

    def _fetch_peers(
        self, tracker: Tracker, peers: frozenset[str], known: Mapping[str, Kind] | None,
    ) -> Fetched | None:
        """Read each peer's list; the poll covers the peers whose lists were read whole.

        No answer, or credentials refused, fails the poll as a full one would. A peer whose
        list fails otherwise (a 5xx, a body that is not a group) is left out: its downloads
        are neither seen nor counted absent, and the next poll reads the whole list (this one
        does, when no peer's list answered).
        """
        out = Downloads()
        out.recorded_ids = []
        covered: set[str] = set()
        error: SlskdError | None = None
        for user in sorted(peers):
            try:
                got = self._client.list_user_downloads(user, known=known)
            except (SlskdUnreachable, SlskdUnauthorized) as exc:
                self._failed(exc)
                return None
            except SlskdError as exc:
                error = exc
                log.debug("download list of %r unavailable: %s", user, exc)
                continue
            out.extend(got)
            out.recorded_ids.extend(got.recorded_ids)
            out.skipped += got.skipped
            if not got.skipped:
                covered.add(user)
        if error is not None:
            if not covered and not out:
                return self._fetch_all(tracker, known)  # no peer's list answered: the whole list, now
            self._full_due = True
        return out, frozenset(covered)
