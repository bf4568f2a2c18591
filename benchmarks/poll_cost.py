"""Poll cost: parse + reconcile + persist of 1k/10k/50k transfers against a bare json.loads.

Every figure is process CPU time (time.process_time), the best of the measured polls; the
polls are consecutive polls of one evolving session (gen.Session: progress moves on every
poll, a couple of downloads start and end on every poll), i.e. the realistic steady state: the
second and later polls of a running agent, with the whole history already recorded. The first
poll of a brand-new agent (every finished transfer recorded silently) is shown separately.

"naive" is the straightforward version, written here: json.loads and Transfer.from_json as
first written, and a reconcile that, for each tracked download, scans every transfer for its
record (and, for each transfer, scans the tracked downloads for an owner); it commits to the
same Store. Its events are checked to be identical to ours. "parse (stdlib json)" is our
parse_downloads on the stdlib fallback (no orjson installed). "agent poll (HTTP, all)" is
Agent.poll_once end to end against a loopback HTTP server serving the same bodies (thread
CPU time of the polling thread: requests' receive, parse, reconcile, commit, publish).

    .venv/bin/python benchmarks/poll_cost.py [--sizes 1000,10000,50000] [--polls 9]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import _common  # noqa: F401  (sys.path)
from _common import BENCH_KEY, header, naive_from_json
from gen import Session

import trayagent.slskd.parsing as parsing
from trayagent.core.model import Transfer
from trayagent.slskd.parsing import parse_downloads
from trayagent.store import Store
from trayagent.core.tracker import Changes, Rules, Tracked, Tracker

try:
    import orjson
except ImportError:  # pragma: no cover
    orjson = None  # type: ignore[assignment]

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- the naive version


class NaiveTracker(Tracker):
    """Tracker whose matching scans: O(tracked x transfers) per poll. Same rules otherwise.

    Only the matching step is replaced; the rules, the absence count and the sweep are the
    tracker's own, so both versions give the same events (checked poll by poll).
    """

    def _match(self, transfers: Sequence[Transfer], now: datetime, ch: Changes) -> dict[str, Transfer]:
        matched: dict[str, Transfer] = {}
        tracked = self._tracked
        # For each tracked download, find its current record in the list.
        for key, d in tracked.items():
            for t in transfers:
                if t.id == d.transfer_id:
                    matched[key] = t
                    break
        # For each transfer not recorded as ended, find whether a tracked download owns its id.
        unmatched: list[Transfer] = []
        for t in transfers:
            if t.id in self._ended:
                continue
            if not any(t.id == d.transfer_id or t.id in d.aliases for d in tracked.values()):
                unmatched.append(t)
        if unmatched:
            self._match_unknown(unmatched, matched, now, ch)
        return matched

    def _match_by_name(self, t: Transfer, matched: Mapping[str, Transfer]) -> str | None:
        live = not t.status.terminal
        for key, d in self._tracked.items():
            if d.username == t.username and d.filename == t.filename:
                current = matched.get(key)
                if current is None or (live and current.status.terminal):
                    return key
        return None


def naive_parse(body: bytes) -> list[Transfer]:
    """The straightforward parse: stdlib json, then one Transfer per file object."""
    out = []
    for group in json.loads(body):
        user = group.get("username")
        for directory in group.get("directories") or ():
            for obj in directory.get("files") or ():
                t = naive_from_json(obj, user)
                if t is not None:
                    out.append(t)
    return out


def stdlib_parse(body: bytes) -> list[Transfer]:
    """Our parse_downloads with the stdlib json module (the fallback without orjson)."""
    saved = parsing._loads
    parsing._loads = json.loads
    try:
        return parse_downloads(body)
    finally:
        parsing._loads = saved


# --------------------------------------------------------------------------- end to end


class BodyServer:
    """A loopback HTTP server that answers every GET with the current body (no slskd logic).

    With `route`, the body is route(path) instead, and None answers 404 with no body.
    """

    def __init__(self, route: Callable[[str], bytes | None] | None = None) -> None:
        import http.server
        import threading

        outer = self
        self.body = b"[]"

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                body = outer.body if route is None else route(self.path.partition("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                if body:
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def agent_polls(bodies: list[bytes], workdir: Path) -> list[float]:
    """Thread CPU time of Agent.poll_once (HTTP GET, parse, reconcile, commit, publish) per poll."""
    from trayagent.agent import Agent
    from trayagent.config import Config, SlskdConfig

    server = BodyServer()
    clock = [T0]
    config = Config(slskd=SlskdConfig(url=server.url, api_key=BENCH_KEY))
    agent = Agent(config, store=Store(workdir / f"agent-{len(bodies[0])}.db"), clock=lambda: clock[0])
    out = []
    try:
        for i, body in enumerate(bodies):
            server.body = body
            clock[0] = T0 + timedelta(seconds=i)
            gc.collect()
            start = time.thread_time()
            assert agent.poll_once()
            if i:  # the first poll is the silent baseline
                out.append(time.thread_time() - start)
    finally:
        agent.stop()
        server.close()
    return out


# --------------------------------------------------------------------------- timing


def cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def event_key(ev: Any) -> tuple:
    return (ev.event.value, ev.id, ev.filename, ev.state, ev.reason)


def measure(n: int, polls: int, workdir: Path, peers: int = 200) -> dict[str, Any]:
    session = Session(n, peers=peers)
    bodies = [session.body()]
    for _ in range(polls):
        session.advance()
        bodies.append(session.body())

    ours_store = Store(workdir / f"ours-{n}.db")
    naive_store = Store(workdir / f"naive-{n}.db")
    ours = ours_store.load_tracker(Rules())
    naive = NaiveTracker(Rules())
    now = T0

    # First start: every finished transfer recorded silently, one row each.
    first: dict[str, float] = {}
    first["json.loads"], _ = cpu(lambda: json.loads(bodies[0]))
    first["parse"], transfers = cpu(lambda: parse_downloads(bodies[0]))
    first["reconcile"], ch = cpu(lambda: ours.reconcile(transfers, now))
    first["commit"], _ = cpu(lambda: ours_store.commit(ch))
    first["total"] = first["parse"] + first["reconcile"] + first["commit"]
    naive_transfers = naive_parse(bodies[0])
    naive_store.commit(naive.reconcile(naive_transfers, now))
    tracked = len(ours.active)

    rows: dict[str, list[float]] = {k: [] for k in (
        "json.loads", "orjson.loads", "parse", "parse (stdlib json)", "reconcile", "commit", "total",
        "naive parse", "naive reconcile", "naive total")}
    same_events = True
    for body in bodies[1:]:
        now += timedelta(seconds=1)
        gc.collect()
        rows["json.loads"].append(cpu(lambda: json.loads(body))[0])
        if orjson is not None:
            rows["orjson.loads"].append(cpu(lambda: orjson.loads(body))[0])
        t_parse, transfers = cpu(lambda: parse_downloads(body))
        t_rec, ch = cpu(lambda: ours.reconcile(transfers, now))
        t_commit, events = cpu(lambda: ours_store.commit(ch))
        ours_store.ack(events)
        rows["parse"].append(t_parse)
        rows["reconcile"].append(t_rec)
        rows["commit"].append(t_commit)
        rows["total"].append(t_parse + t_rec + t_commit)

        rows["parse (stdlib json)"].append(cpu(lambda: stdlib_parse(body))[0])
        t_nparse, ntransfers = cpu(lambda: naive_parse(body))
        t_nrec, nch = cpu(lambda: naive.reconcile(ntransfers, now))
        t_ncommit, nevents = cpu(lambda: naive_store.commit(nch))
        naive_store.ack(nevents)
        rows["naive parse"].append(t_nparse)
        rows["naive reconcile"].append(t_nrec)
        rows["naive total"].append(t_nparse + t_nrec + t_ncommit)
        # The naive loop visits tracked downloads in another order: compare as multisets.
        same_events &= sorted(map(event_key, ch.events)) == sorted(map(event_key, nch.events))
        # Like the agent, keep no more than the trackers do (d.last) between polls.
        del transfers, ntransfers, ch, nch, events, nevents
    ours_store.close()
    naive_store.close()
    rows["agent poll (HTTP, all)"] = agent_polls(bodies, workdir)
    return {
        "n": n, "bytes": len(bodies[-1]), "tracked": tracked, "first": first,
        "best": {k: min(v) for k, v in rows.items() if v},
        "median": {k: statistics.median(v) for k, v in rows.items() if v},
        "same_events": same_events,
    }


def report(results: list[dict[str, Any]]) -> None:
    order = ["json.loads", "orjson.loads", "parse (stdlib json)", "parse", "reconcile", "commit", "total",
             "agent poll (HTTP, all)", "naive parse", "naive reconcile", "naive total"]
    for r in results:
        base = r["best"]["json.loads"]
        print(f"\n{r['n']:,} transfers, {r['bytes'] / 1e6:.1f} MB body, {r['tracked']} tracked (live) downloads;"
              f" best of the polls, CPU ms (x = ratio to stdlib json.loads)")
        for k in order:
            if k in r["best"]:
                best, med = r["best"][k], r["median"][k]
                print(f"  {k:<22} {best * 1e3:9.2f} ms  {best / base:6.2f}x   (median {med * 1e3:8.2f} ms)")
        f = r["first"]
        print(f"  first start (silent baseline): parse {f['parse'] * 1e3:.1f} + reconcile {f['reconcile'] * 1e3:.1f}"
              f" + commit {f['commit'] * 1e3:.1f} = {f['total'] * 1e3:.1f} ms ({f['total'] / f['json.loads']:.2f}x)")
        print(f"  naive events identical to ours (as a multiset): {r['same_events']}")
    print("\nsummary (best CPU ms per poll; ratio to stdlib json.loads of the same body)")
    print(f"  {'N':>7} {'json.loads':>11} {'total':>9} {'ratio':>6} {'reconcile':>10} {'ratio':>6}"
          f" {'naive total':>12} {'ratio':>6} {'naive rec':>10} {'ratio':>7}  {'us/transfer':>11}")
    for r in results:
        b = r["best"]
        base = b["json.loads"]
        print(f"  {r['n']:>7,} {base * 1e3:>11.2f} {b['total'] * 1e3:>9.2f} {b['total'] / base:>5.2f}x"
              f" {b['reconcile'] * 1e3:>10.2f} {b['reconcile'] / base:>5.2f}x"
              f" {b['naive total'] * 1e3:>12.2f} {b['naive total'] / base:>5.2f}x"
              f" {b['naive reconcile'] * 1e3:>10.2f} {b['naive reconcile'] / base:>6.2f}x"
              f"  {b['total'] / r['n'] * 1e6:>11.2f}")
    if len(results) >= 2:
        lo, hi = results[0], results[-1]
        print(f"\nlinearity: CPU us per transfer (best), and its growth from {lo['n']:,} to {hi['n']:,}"
              " (1.00 = linear; json.loads itself is the floor's own growth)")
        stages = ["json.loads", "orjson.loads", "parse", "reconcile", "commit", "total", "naive reconcile", "naive total"]
        print("  " + f"{'':<16}" + "".join(f"{r['n']:>10,}" for r in results) + f"{'growth':>10}")
        for k in stages:
            if all(k in r["best"] for r in results):
                per = [r["best"][k] / r["n"] * 1e6 for r in results]
                print(f"  {k:<16}" + "".join(f"{p:>10.3f}" for p in per) + f"{per[-1] / per[0]:>9.2f}x")
    mid = next((r for r in results if r["n"] == 10_000), None)
    if mid is not None:
        b = mid["best"]
        ok_total = b["total"] <= 2 * b["json.loads"]
        ok_rec = b["reconcile"] <= 0.5 * b["json.loads"]
        print(f"targets at 10k: total <= 2x json.loads: {'MET' if ok_total else 'MISSED'}"
              f" ({b['total'] / b['json.loads']:.2f}x); reconcile <= 0.5x: {'MET' if ok_rec else 'MISSED'}"
              f" ({b['reconcile'] / b['json.loads']:.2f}x)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,50000", help="comma-separated transfer counts")
    ap.add_argument("--polls", type=int, default=9, help="steady-state polls measured per size")
    ap.add_argument("--peers", type=int, default=200)
    args = ap.parse_args(argv)
    header("poll cost: parse + reconcile + persist vs json.loads")
    results = []
    with tempfile.TemporaryDirectory(prefix="trayagent-bench-") as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            polls = args.polls if n <= 10_000 else max(3, args.polls // 2)
            results.append(measure(n, polls, Path(tmp), args.peers))
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
