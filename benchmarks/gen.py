"""Deterministic generator of slskd-shaped `GET /api/v0/transfers/downloads` bodies.

The shape is slskd's: a list of user groups, each with directories, each with files; every
file is a full Transfer object with the field set slskd 0.26 serialises (timestamps with 7
fractional digits, `requestedAt`/`enqueuedAt` without `Z`, `startedAt`/`endedAt` with `Z`,
integral doubles without a fraction, null fields omitted).

A "session" is a sequence of bodies for consecutive polls: mostly finished history that never
changes, a few downloads in progress whose byte counts move on every poll, and, every poll, a
few downloads that change state (queued -> in progress -> succeeded/failed).

    from benchmarks.gen import Session
    s = Session(10_000)          # 200 peers, seed 1
    body0 = s.body()             # bytes
    s.advance()                  # one poll later
    body1 = s.body()

`python benchmarks/gen.py 10000 > body.json` writes one body.
"""

from __future__ import annotations

import json
import random
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import _common  # noqa: F401  (sys.path)
from trayagent.slskd.simulator import dotnet_number, format_time, format_timespan

#: Share of each state in a generated list (the rest is "Completed, Succeeded" history).
MIX = (
    ("Completed, Errored", 0.010),
    ("Completed, Rejected", 0.005),
    ("Completed, TimedOut", 0.005),
    ("Completed, Cancelled", 0.005),
    ("Queued, Remotely", 0.015),
    ("Queued, Locally", 0.002),
    ("InProgress", 0.008),
    ("Initializing", 0.001),
)
EPOCH = 1_714_564_800.0  # 2024-05-01T12:00:00Z: fixed, so bodies are reproducible byte for byte
EXTENSIONS = (".flac", ".mp3", ".flac", ".ogg", ".m4a")
WORDS = (
    "blue", "night", "river", "echo", "glass", "summer", "ghost", "fire", "paper", "north",
    "velvet", "signal", "winter", "garden", "static", "golden", "hollow", "silver", "radio", "stone",
)


@dataclass(slots=True)
class Rec:
    id: str
    username: str
    directory: str
    filename: str
    size: int
    state: str
    requested: float
    started: float | None = None
    ended: float | None = None
    done: int = 0
    speed: float = 0.0
    exception: str | None = None
    place: int | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "username": self.username,
            "direction": "Download",
            "filename": self.filename,
            "size": self.size,
            "state": self.state,
            "requestedAt": format_time(self.requested, False),
            "enqueuedAt": format_time(self.requested + 0.8, False),
        }
        if self.started is not None:
            out["startedAt"] = format_time(self.started, True)
        if self.ended is not None:
            out["endedAt"] = format_time(self.ended, True)
        out["bytesTransferred"] = self.done
        out["averageSpeed"] = dotnet_number(self.speed)
        if self.place is not None:
            out["placeInQueue"] = self.place
        if self.exception is not None:
            out["exception"] = self.exception
        out["attempts"] = 1
        out["removed"] = False
        out["bytesRemaining"] = self.size - self.done
        if self.started is not None:
            out["elapsedTime"] = format_timespan((self.ended or now) - self.started)
        out["percentComplete"] = dotnet_number(round(self.done / self.size * 100, 4)) if self.size else 0
        if self.speed > 0 and self.ended is None:
            out["remainingTime"] = format_timespan((self.size - self.done) / self.speed)
        return out


class Session:
    """A deterministic transfer list that evolves poll by poll."""

    def __init__(self, n: int, peers: int = 200, seed: int = 1, changes_per_poll: int = 2) -> None:
        self.rng = random.Random(seed)
        self.now = EPOCH
        self.changes_per_poll = changes_per_poll
        self.peers = [f"peer{i:03d}_{self._word()}" for i in range(peers)]
        self.records: list[Rec] = []
        while len(self.records) < n:  # album by album: one peer, one folder, 8-14 tracks
            album = self._album(len(self.records))
            for track in range(min(self.rng.randint(8, 14), n - len(self.records))):
                self.records.append(self._new(len(self.records), n, album, track))

    def _word(self) -> str:
        return self.rng.choice(WORDS)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _state(self) -> str:
        x = self.rng.random()
        for state, share in MIX:
            if x < share:
                return state
            x -= share
        return "Completed, Succeeded"

    def _album(self, i: int) -> tuple[str, str, str]:
        user = self.rng.choice(self.peers)
        album = f"{self._word().title()} {self._word().title()} ({1970 + i % 50})"
        ext = self.rng.choice(EXTENSIONS)
        return user, f"@@{user[:7]}\\Music\\{self._word().title()}\\{album}", ext

    def _new(self, i: int, n: int, album: tuple[str, str, str], track: int) -> Rec:
        rng = self.rng
        user, directory, ext = album
        filename = f"{directory}\\{track + 1:02d} - {self._word().title()} {self._word()}{ext}"
        size = rng.randint(2_000_000, 60_000_000)
        state = self._state()
        requested = self.now - (n - i) * 30.0 - rng.random()
        rec = Rec(self._uuid(), user, directory, filename, size, state, requested)
        if state.startswith("Completed"):
            rec.started = requested + 2.0 + rng.random()
            rec.ended = rec.started + size / 1_500_000
            if state.endswith("Succeeded"):
                rec.done = size
                rec.speed = round(size / (rec.ended - rec.started), 3)
            elif "Cancelled" not in state:
                rec.done = rng.randint(0, size // 2)
                rec.exception = {
                    "Completed, Errored": "Transfer failed: Connection reset by peer",
                    "Completed, Rejected": "Transfer rejected: File not shared.",
                    "Completed, TimedOut": "Transfer timed out",
                }[state]
        elif state in ("InProgress", "Initializing"):
            rec.started = self.now - rng.randint(5, 300)
            rec.done = rng.randint(0, size // 2) if state == "InProgress" else 0
            rec.speed = round(rng.uniform(50_000, 2_000_000), 3) if rec.done else 0.0
        else:
            rec.place = rng.randint(1, 400) if state.endswith("Remotely") else None
        return rec

    # ----------------------------------------------------------------- evolution

    def advance(self, seconds: float = 1.0) -> None:
        """One poll later: progress moves; a few downloads change state."""
        self.now += seconds
        live = [r for r in self.records if r.ended is None]
        for r in live:
            if r.state == "InProgress" and r.speed:
                r.done = min(r.size - 1, r.done + int(r.speed * seconds))
        moved = 0
        for r in live:  # finish the most advanced downloads first
            if moved >= self.changes_per_poll:
                break
            if r.state == "InProgress":
                r.state = "Completed, Succeeded" if self.rng.random() < 0.9 else "Completed, Errored"
                r.ended = self.now
                if r.state.endswith("Succeeded"):
                    r.done = r.size
                else:
                    r.exception = "Transfer failed: Connection reset by peer"
                moved += 1
        started = 0
        for r in live:
            if started >= self.changes_per_poll:
                break
            if r.state.startswith("Queued"):
                r.state, r.started, r.place = "InProgress", self.now, None
                r.speed = round(self.rng.uniform(50_000, 2_000_000), 3)
                started += 1
        # Keep the live population roughly constant: the user queues new files.
        for _ in range(moved):
            i = len(self.records)
            rec = self._new(i, i, self._album(i), 0)
            rec.requested = self.now
            rec.state, rec.started, rec.ended, rec.done, rec.speed, rec.exception = (
                "Queued, Remotely", None, None, 0, 0.0, None)
            rec.place = self.rng.randint(1, 400)
            self.records.append(rec)

    # ---------------------------------------------------------------- rendering

    def groups(self) -> list[dict[str, Any]]:
        """slskd's nested shape: users -> directories -> files."""
        users: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for r in self.records:
            users.setdefault(r.username, {}).setdefault(r.directory, []).append(r.to_json(self.now))
        return [
            {
                "username": user,
                "directories": [
                    {"directory": d, "fileCount": len(files), "files": files}
                    for d, files in dirs.items()
                ],
            }
            for user, dirs in users.items()
        ]

    def body(self) -> bytes:
        return json.dumps(self.groups(), separators=(",", ":")).encode()

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            out[r.state] = out.get(r.state, 0) + 1
        return out


def body(n: int, peers: int = 200, seed: int = 1) -> bytes:
    """One body of n transfers from `peers` users."""
    return Session(n, peers, seed).body()


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    sys.stdout.buffer.write(body(count))
