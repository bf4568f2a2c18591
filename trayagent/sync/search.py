"""Searching for one track on slskd, the way slskd and its peers want it.

- At most `searches_per_minute` search POSTs, counted across runs (the clock is in the store),
  and none while slskd says it is not logged in to the Soulseek network.
- The agent chooses the search id, so whatever slskd saved can be deleted: slskd writes the
  search *before* it validates it, and keeps a 400 (no usable words) or a 409 (not logged in)
  as a "Completed, Errored" search. Every search ends deleted, answered or not.
- A 400 is final for that text: the next query form is tried, and after the last one the
  track is not found. It is never retried in a loop, and never holds up other tracks.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Callable, ParamSpec, Protocol, TypeVar

from trayagent.sync.queries import query_forms, why_unsearchable
from trayagent.slskd.errors import SlskdBadResponse, SlskdBusy, SlskdError, SlskdNotFound, SlskdUnreachable
from trayagent.sync.store import PENDING, SEARCHING, SyncStore, TrackState

log = logging.getLogger(__name__)


_P = ParamSpec("_P")
_R = TypeVar("_R")


class SlskdCall(Protocol):
    """The engine's way to call slskd: the call's own result, with reachability and login noted."""

    def __call__(self, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs) -> _R: ...


class SearchClient(Protocol):
    """The part of SlskdClient a search needs (its JSON as slskd sent it, narrowed where read)."""

    def start_search(
        self, text: str, search_id: str | None = None, timeout_ms: int = 15000
    ) -> dict[str, object]: ...

    def get_search(self, search_id: str, include_responses: bool = False) -> dict[str, object]: ...

    def search_responses(self, search_id: str) -> list[dict[str, object]]: ...

    def delete_search(self, search_id: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SearchTimings:
    """Seconds unless named otherwise."""

    interval: float  # between search POSTs (60 / searches_per_minute)
    timeout_ms: int = 15000  # slskd's searchTimeout: it ends a search this long after the last response
    guard: float = 180.0  # give up on a search that never completes
    busy_backoff: float = 2.0  # after a 429
    login_check: float = 5.0  # how long slskd's "logged in" answer is trusted


class SearchRunner:
    """Starts, polls and deletes the searches of a sync (one engine, one runner)."""

    def __init__(
        self,
        client: SearchClient,
        store: Callable[[], SyncStore],
        call: SlskdCall,
        clock: Callable[[], float],
        timings: SearchTimings,
    ) -> None:
        self.client = client
        self._store = store
        self._call = call
        self.clock = clock
        self.t = timings
        self._login: tuple[float, bool] | None = None  # (checked at, logged in)

    # ------------------------------------------------------------- may we search now?

    def rate_allows(self, now: float) -> bool:
        """Whether the search clock (shared by every run on this state file) allows a POST now."""
        last = float(self._store().meta("last_search_at") or 0.0)
        last = min(last, now)  # the wall clock went back: don't wait for ever
        return now - last >= self.t.interval

    def next_allowed(self, now: float) -> float:
        """Seconds until the search clock allows the next POST."""
        last = min(float(self._store().meta("last_search_at") or 0.0), now)
        return max(0.0, self.t.interval - (now - last))

    def logged_in(self, now: float) -> bool:
        """slskd's own word (GET server state), trusted for `login_check` seconds."""
        if self._login is not None and now - self._login[0] < self.t.login_check:
            return self._login[1]
        state = getattr(self.client, "server_state", None)
        if state is None:  # a client without it: the 409 still tells us
            return True
        try:
            logged_in = bool(self._call(state).logged_in)
        except (SlskdNotFound, SlskdBadResponse) as exc:  # no usable answer: a 409 still tells us
            log.debug("slskd's server state unavailable (%s); searching anyway", exc)
            logged_in = True
        self._login = (now, logged_in)
        if not logged_in:
            log.warning("slskd is not logged in to the Soulseek network; not searching until it is")
        return logged_in

    # ------------------------------------------------------------- one search

    def start(self, state: TrackState) -> str | None:
        """POST the track's current query form. Returns why the track cannot be searched, or None."""
        forms = query_forms(state.artist, state.title)
        if not forms:
            return why_unsearchable(state.artist, state.title)
        if state.form >= len(forms):
            state.form = 0
        now = self.clock()
        store = self._store()
        text = forms[state.form]
        state.search_id, state.search_text, state.search_started = str(uuid.uuid4()), text, now
        state.status = SEARCHING
        store.save(state, now)  # the id first: a restart finds (and deletes) the search
        store.set_meta("last_search_at", repr(now))  # every POST counts against the rate
        try:
            self._call(self.client.start_search, text, search_id=state.search_id, timeout_ms=self.t.timeout_ms)
        except SlskdBusy:
            self.back_to_pending(state, self.t.busy_backoff)
            return None
        except SlskdUnreachable:
            raise  # unknown whether it started: SEARCHING stays, the poll finds out
        except SlskdError as exc:
            return self._refused(state, forms, exc)
        state.searches += 1
        if state.form == 0:
            state.rounds += 1
        store.save(state, now)
        log.info("searching %r for %s", text, state.label)
        return None

    def _refused(self, state: TrackState, forms: list[str], exc: SlskdError) -> str | None:
        """slskd said no; it saved the search anyway (as errored): delete it, then decide."""
        text, sid = state.search_text, state.search_id
        assert sid is not None
        self.delete(sid)
        if exc.status == 400:  # final for this text: never the same POST again
            log.warning("slskd refused the search %r for %s: %s", text, state.label, exc)
            if state.form + 1 < len(forms):
                state.form += 1
                self.back_to_pending(state, 0.0)
                return None
            return f"slskd refused the search text {text!r} ({exc})"
        if exc.status == 409:  # not logged in to the Soulseek network
            self._login = (self.clock(), False)
        log.warning("search for %s not started: %s", state.label, exc)
        self.back_to_pending(state, max(self.t.busy_backoff, self.t.interval))
        return None

    def back_to_pending(self, state: TrackState, delay: float) -> None:
        now = self.clock()
        state.status, state.search_id, state.search_started = PENDING, None, None
        state.next_at = now + delay
        self._store().save(state, now)

    def poll(self, state: TrackState) -> list[dict[str, object]] | None:
        """The responses once the search has ended (and it is deleted), else None."""
        sid = state.search_id
        assert sid
        now = self.clock()
        info: dict[str, object]
        try:
            info = self._call(self.client.get_search, sid)
        except SlskdNotFound:
            log.info("search for %s is gone from slskd; searching again", state.label)
            self.back_to_pending(state, 0.0)
            return None
        except SlskdBadResponse as exc:
            log.warning("search for %s: %s", state.label, exc)
            info = {}
        done = info.get("isComplete") is True or "Completed" in str(info.get("state", ""))
        if not done:
            if state.search_started and now - state.search_started > self.t.guard:
                log.warning("search %r never completed; deleting it", state.search_text)
                self.delete(sid)
                return []  # must not block every other track's search
            return None
        try:
            responses = self._call(self.client.search_responses, sid)
        except SlskdNotFound:
            responses = []
        self.delete(sid)
        return responses

    def delete(self, search_id: str) -> None:
        """Delete a search; a 404 means it is already gone, which is what we want."""
        try:
            self._call(self.client.delete_search, search_id)
        except SlskdNotFound:
            pass
        except SlskdUnreachable:
            raise
        except SlskdError as exc:
            log.warning("could not delete search %s: %s", search_id, exc)


__all__ = ["SearchClient", "SearchRunner", "SearchTimings", "SlskdCall"]
