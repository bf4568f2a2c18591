"""The public ranking test set (ranking_cases.json) as slskd responses, and how a pick is judged.

Shared by tests/test_ranking_cases.py (every case must pick right) and
benchmarks/ranking_accuracy.py (the accuracy figure, against the code on main).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from trayagent.sync.playlist import WantedTrack

CASES_FILE = Path(__file__).resolve().parent / "ranking_cases.json"
DEFAULT_PREFS: dict[str, Any] = {"preferred_formats": ["flac", "mp3"], "min_bitrate": 192, "long_queue": 20}

#: (wanted, responses, prefs as a plain dict) -> the (username, filename) picked, or None.
Ranker = Callable[[WantedTrack, list[dict[str, Any]], dict[str, Any]], "tuple[str, str] | None"]


def load_cases(path: Path = CASES_FILE) -> list[dict[str, Any]]:
    return json.loads(path.read_text(encoding="utf-8"))["cases"]


def wanted_of(case: dict[str, Any]) -> WantedTrack:
    w = case["wanted"]
    return WantedTrack(w["artist"], w["title"], w.get("album"), w.get("duration"), "cases",
                       tuple(w.get("featured", ())))


def _file(spec: dict[str, Any]) -> dict[str, Any]:
    """A slskd File object, as a real search response carries it."""
    path = spec["path"]
    out: dict[str, Any] = {"filename": path, "size": spec["size"], "extension": path.rsplit(".", 1)[-1].lower(),
                           "code": 1, "isLocked": False}
    if "length" in spec:
        out["length"] = spec["length"]
    if "bitrate" in spec:
        out["bitRate"] = spec["bitrate"]
    return out


def responses_of(case: dict[str, Any]) -> list[dict[str, Any]]:
    """slskd Response objects for the case's peers."""
    out = []
    for token, peer in enumerate(case["peers"], 1):
        files = [_file(f) for f in peer["files"]]
        locked = [_file(f) for f in peer.get("locked", [])]
        out.append({"username": peer["user"], "token": token, "fileCount": len(files), "files": files,
                    "lockedFileCount": len(locked), "lockedFiles": locked, "hasFreeUploadSlot": peer["free"],
                    "uploadSpeed": peer["speed"], "queueLength": peer["queue"]})
    return out


def prefs_of(case: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULT_PREFS, **case.get("prefs", {})}


def wrong_versions(case: dict[str, Any]) -> set[tuple[str, str]]:
    """The files that are another recording, song or artist: never to be picked."""
    return {(p["user"], f["path"]) for p in case["peers"] for f in p["files"] + p.get("locked", [])
            if f.get("wrong_version")}


@dataclass(frozen=True, slots=True)
class Outcome:
    case: str
    expected: tuple[str, str] | None
    picked: tuple[str, str] | None

    @property
    def right(self) -> bool:
        return self.picked == self.expected


def run_cases(ranker: Ranker, cases: Sequence[dict[str, Any]]) -> tuple[list[Outcome], int]:
    """Every case's outcome, and how many picks were a wrong version (the error that matters)."""
    outcomes, wrong = [], 0
    for case in cases:
        picked = ranker(wanted_of(case), responses_of(case), prefs_of(case))
        expected = tuple(case["expect"]) if case["expect"] else None
        outcomes.append(Outcome(case["id"], expected, picked))  # type: ignore[arg-type]
        if picked in wrong_versions(case):
            wrong += 1
    return outcomes, wrong
