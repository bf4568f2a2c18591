"""Persist cost: rows the store writes per poll (sqlite3 total_changes), and commit CPU time.

Only what changed is written: a poll where nothing changed (or only progress bytes moved,
which are cosmetic) writes no row and does not even open a transaction; a poll where k
downloads started or ended writes O(k) rows (tracked upsert/delete, ended ids, history,
outbox insert, and the outbox delete once the events are delivered).

    .venv/bin/python benchmarks/persist.py [--transfers 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import _common  # noqa: F401  (sys.path)
from _common import header
from gen import Session

from trayagent.slskd.parsing import parse_downloads
from trayagent.store import Store
from trayagent.core.tracker import Rules

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


class Poller:
    def __init__(self, session: Session, path: Path) -> None:
        self.session = session
        self.path = path
        self.store = Store(path)
        self.tracker = self.store.load_tracker(Rules(failure_settle=0.0))
        self.now = T0

    def poll(self) -> tuple[int, int, float, int, int]:
        """One poll like Agent.poll_once: (rows in commit, rows in ack, commit CPU s, events, bytes)."""
        self.now += timedelta(seconds=1)
        transfers = parse_downloads(self.session.body())
        changes = self.tracker.reconcile(transfers, self.now)
        db = self.store._db
        size0 = disk_bytes(self.path)
        c0 = db.total_changes
        t0 = time.process_time()
        events = self.store.commit(changes)
        cpu = time.process_time() - t0
        c1 = db.total_changes
        self.store.ack(events)
        c2 = db.total_changes
        return c1 - c0, c2 - c1, cpu, len(events), disk_bytes(self.path) - size0


def live(session: Session, prefix: str) -> list:
    return [r for r in session.records if r.ended is None and r.state.startswith(prefix)]


def end_k(k: int) -> Callable[[Session], None]:
    def change(s: Session) -> None:
        for r in (live(s, "InProgress") + live(s, "Queued"))[:k]:
            r.state, r.ended, r.done = "Completed, Succeeded", s.now, r.size
    return change


def start_k(k: int) -> Callable[[Session], None]:
    def change(s: Session) -> None:
        for r in live(s, "Queued")[:k]:
            r.state, r.started, r.place = "InProgress", s.now, None
    return change


def add_k(k: int) -> Callable[[Session], None]:
    def change(s: Session) -> None:
        for _ in range(k):
            i = len(s.records)
            rec = s._new(i, i, s._album(i), 0)
            rec.state, rec.started, rec.ended, rec.done, rec.speed, rec.exception = (
                "Queued, Remotely", None, None, 0, 0.0, None)
            s.records.append(rec)
    return change


def progress_only(s: Session) -> None:
    for r in live(s, "InProgress"):
        r.done = min(r.size - 1, r.done + 100_000)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--transfers", type=int, default=10_000)
    args = ap.parse_args(argv)
    header(f"persist cost: rows written per poll ({args.transfers:,} transfers listed)")
    ok = True
    with tempfile.TemporaryDirectory(prefix="trayagent-bench-") as tmp:
        session = Session(args.transfers)
        p = Poller(session, Path(tmp) / "state.db")
        rows, acked, cpu, nev, grown = p.poll()
        print(f"  {'poll':<44} {'rows':>6} {'+ack':>5} {'events':>6} {'rows/k':>7} {'commit ms':>9} {'disk +B':>8}")
        print(f"  {'first start (history recorded silently)':<44} {rows:>6} {acked:>5} {nev:>6} {'':>7}"
              f" {cpu * 1e3:>9.2f} {grown:>8}")
        cases: list[tuple[str, int, Callable[[Session], None]]] = [
            ("second poll, nothing changed", 0, lambda s: None),
            ("nothing changed", 0, lambda s: None),
            ("only progress bytes moved", 0, progress_only),
        ]
        for k in (1, 10, 100):
            cases.append((f"{k} queued -> in progress", k, start_k(k)))
        for k in (1, 10, 100):
            cases.append((f"{k} ended (succeeded)", k, end_k(k)))
        for k in (1, 10, 100):
            cases.append((f"{k} new downloads queued", k, add_k(k)))
        cases.append(("nothing changed (after all that)", 0, lambda s: None))
        for label, k, change in cases:
            change(session)
            rows, acked, cpu, nev, grown = p.poll()
            per = f"{(rows + acked) / k:.1f}" if k else ""
            print(f"  {label:<44} {rows:>6} {acked:>5} {nev:>6} {per:>7} {cpu * 1e3:>9.2f} {grown:>8}")
            if k == 0 and (rows or acked or grown):
                ok = False
        p.store.close()
    print(f"  target: a poll where nothing changed writes nothing: {'MET' if ok else 'MISSED'};"
          " rows per change are constant (O(k))")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
