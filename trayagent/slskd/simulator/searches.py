"""slskd's searches and the peers that answer them: which files a peer returns for a query,
when responses arrive, and when and how a search ends.

Why apart from the HTTP routes: these are Soulseek's and slskd's rules (query terms, limits,
timeouts, what a restart does to a running search); the routes only bind requests to them.
Not thread-safe: every caller holds the simulator's lock.
"""

from __future__ import annotations

import copy
import random
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from trayagent.slskd.simulator.wire import JsonObject, format_time, wall

#: Which searches a set of peers sees: a case-insensitive substring of the text, or a predicate.
Matcher = str | Callable[[str], bool]


def _listed(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _count(response: JsonObject, key: str) -> int:
    return len(_listed(response.get(key, [])))


def _obj(value: object) -> JsonObject:
    """A share entry given to `add_search_results`; anything but a JSON object is a misuse."""
    if not isinstance(value, dict):
        raise TypeError(f"search results must be JSON objects, not {type(value).__name__}")
    return value


def search_time(epoch: float) -> str:
    """A search's StartedAt/EndedAt: UTC with Z, fraction without trailing zeros (.NET "O")."""
    head, _, frac = format_time(epoch, True).rstrip("Z").partition(".")
    frac = frac.rstrip("0")
    return f"{head}.{frac}Z" if frac else f"{head}Z"


@dataclass(slots=True)
class Search:
    """One search as slskd keeps it, with the responses still to arrive."""

    id: str
    text: str
    token: int
    started_mono: float
    started_wall: float
    all_responses: list[JsonObject]
    arrivals: list[float]  # seconds after the start at which each response arrives
    timeout: float  # searchTimeout: the search ends this long after the last response
    response_limit: int
    file_limit: int
    state: str = "InProgress"
    complete: bool = False
    ended_wall: float | None = None
    received: list[JsonObject] = field(default_factory=list)

    def to_json(self, include_responses: bool) -> JsonObject:
        # slskd's Search record: no request options; StartedAt/EndedAt are UTC (Z).
        out: JsonObject = {
            "fileCount": sum(_count(r, "files") for r in self.received),
            "id": self.id,
            "isComplete": self.complete,
            "lockedFileCount": sum(_count(r, "lockedFiles") for r in self.received),
            "responseCount": len(self.received),
            # Responses are only persisted once a search finishes (reference section 4).
            "responses": copy.deepcopy(self.received) if include_responses and self.complete else [],
            "searchText": self.text,
            "startedAt": search_time(self.started_wall),
            "state": self.state,
            "token": self.token,
        }
        if self.ended_wall is not None:
            out["endedAt"] = search_time(self.ended_wall)
        return out

    def end(self, state: str, when: float) -> None:
        """The search is over, as `state`, at epoch `when`."""
        self.state, self.complete, self.ended_wall = state, True, when


# --------------------------------------------------------------------------- what peers answer


def query_terms(text: str) -> tuple[list[str], list[str]]:
    """Soulseek.NET's SearchQuery: space-split; "-x" excludes; one-letter terms are dropped."""
    tokens = text.split(" ")
    exclusions = [t[1:] for t in tokens if t.startswith("-") and len(t) > 1]
    terms = [t for t in tokens if t and not t.startswith("-") and len(t) > 1]
    return terms, exclusions


def _path_words(text: str) -> set[str]:
    """How a Soulseek client indexes a shared path: words split at any non-word character,
    case-insensitive, accents kept ("Björk" is not "bjork")."""
    return {w for w in re.split(r"[\W_]+", text.lower()) if w}


def _peer_files(files: object, terms: list[str], exclusions: list[str]) -> list[JsonObject]:
    """The files a peer answers with: every query word among the path's words, no excluded word."""
    want = {w for t in terms for w in _path_words(t)}
    banned = {w for t in exclusions for w in _path_words(t)}
    out = []
    for f in map(_obj, _listed(files)):
        have = _path_words(str(f.get("filename", "")))
        if want and want <= have and not banned & have:
            out.append(f)
    return out


def _normalise_response(resp: Mapping[str, object], token: int) -> JsonObject:
    """Fill in the fields slskd always sends on a search Response and its Files."""
    out = copy.deepcopy(dict(resp))
    files = [_normalise_file(_obj(f)) for f in _listed(out.get("files", []))]
    locked = [_normalise_file(_obj(f)) for f in _listed(out.get("lockedFiles", []))]
    out["files"], out["lockedFiles"] = files, locked
    out["fileCount"], out["lockedFileCount"] = len(files), len(locked)
    out.setdefault("username", "peer")
    out.setdefault("token", token)
    out.setdefault("hasFreeUploadSlot", True)
    out.setdefault("uploadSpeed", 0)
    out.setdefault("queueLength", 0)
    return out


def _normalise_file(f: Mapping[str, object]) -> JsonObject:
    out = dict(f)
    name = str(out.get("filename", ""))
    dot = name.rfind(".")
    out.setdefault("extension", name[dot + 1:].lower() if dot > max(name.rfind("\\"), name.rfind("/")) else "")
    out.setdefault("size", 0)
    out.setdefault("code", 1)
    out.setdefault("isLocked", False)  # never set by slskd's mapper
    return out


# --------------------------------------------------------------------------- the searches


class SearchBook:
    """Every search slskd knows, and the peers (with their shares) that answer them."""

    def __init__(self) -> None:
        self.searches: dict[str, Search] = {}
        self._rules: list[tuple[Matcher | None, list[JsonObject]]] = []
        self._token = random.randint(10_000, 90_000)

    def add_peers(self, matcher: Matcher | None, responses: Sequence[Mapping[str, object]]) -> None:
        """Peers and their shares; `matcher` narrows which search texts they see (None: all)."""
        self._rules.append((matcher, [dict(r) for r in copy.deepcopy(list(responses))]))

    def next_token(self) -> int:
        self._token += 1
        return self._token

    def responses_for(self, text: str, token: int) -> list[JsonObject]:
        """Every peer's answer to `text`: only peers with a matching file answer at all."""
        terms, exclusions = query_terms(text)
        out: list[JsonObject] = []
        for matcher, responses in self._rules:
            if matcher is not None:
                hit = matcher.lower() in text.lower() if isinstance(matcher, str) else bool(matcher(text))
                if not hit:
                    continue
            for resp in responses:
                files = _peer_files(resp.get("files", []), terms, exclusions)
                locked = _peer_files(resp.get("lockedFiles", []), terms, exclusions)
                if files or locked:
                    out.append(_normalise_response({**resp, "files": files, "lockedFiles": locked}, token))
        return out

    def start(self, sid: str, text: str, options: dict[str, int], duration: float, *, refused: bool) -> Search:
        """Save a new search; its responses arrive spread over `duration` seconds.

        A search Soulseek.NET refused is saved too, ended as `Completed, Errored` at once.
        """
        token = self.next_token()
        limit = max(options["responseLimit"], 1)
        responses = [] if refused else self.responses_for(text, token)[:limit]
        search = Search(
            sid, text, token, time.monotonic(), time.time(), responses,
            arrivals=[duration * (i + 1) / len(responses) for i in range(len(responses))],
            timeout=options["searchTimeout"] / 1000.0,
            response_limit=limit, file_limit=max(options["fileLimit"], 1),
        )
        self.searches[sid] = search
        if refused:
            search.end("Completed, Errored", search.started_wall)
        return search

    def advance(self, now: float) -> None:
        """Responses arrive over `search_duration`; a search ends `searchTimeout` after the last
        one (slskd restarts its timeout on every response), or at the response/file limit."""
        for search in self.searches.values():
            if not search.complete:
                _advance(search, now)

    def time_out_running(self, now: float) -> None:
        """A restart ends every running search as TimedOut, with no responses kept."""
        for search in self.searches.values():
            if not search.complete:
                search.end("Completed, TimedOut", now)
                search.received = []


def _advance(search: Search, now: float) -> None:
    elapsed = now - search.started_mono
    received, files, end, state = 0, 0, None, None
    for i, at in enumerate(search.arrivals):
        if at > elapsed:
            break
        received = i + 1
        files += _count(search.all_responses[i], "files")
        if received >= search.response_limit:
            end, state = at, "Completed, ResponseLimitReached"
            break
        if files >= search.file_limit:
            end, state = at, "Completed, FileLimitReached"
            break
    search.received = search.all_responses[:received]
    if end is None:
        last = search.arrivals[-1] if search.arrivals else 0.0
        if received == len(search.arrivals) and elapsed >= last + search.timeout:
            end, state = last + search.timeout, "Completed, TimedOut"
    if end is not None and state is not None:
        search.complete, search.state = True, state
        search.ended_wall = wall(search.started_mono + end)
