"""Soak: the agent and a 200-track playlist sync against an slskd that keeps flapping.

Not part of the test run (it takes --minutes, default 10). The simulator runs in this process;
`trayagent run --headless --json` and `trayagent sync PLAYLIST --json` run as real processes
against it, the way a user runs them. While they run:

- a stream of downloads is added to slskd (one every few seconds; most succeed, some are
  rejected, time out through slskd's own retries, or are cancelled), and the sync enqueues its
  own from a few kinds of peers (good, rejecting, erroring then retrying, never leaving the
  queue, offline);
- slskd flaps: restarts, bursts of 500s and 401s, slow enqueues (the answer comes only after
  12-25 s), and periods logged out of the Soulseek network;
- the agent is killed (SIGKILL) once and started again; a sync that stops (e.g. after a 401) is
  started again, as a user would.

Then slskd calms down, the sync is stopped and every download is left to end. It checks:
- every download that ended is reported exactly once (across the agent's two lives; `seq`
  drops the one duplicate a kill may cause), as what slskd shows, and none is reported that
  did not end;
- no endless loop: searches per minute and per track text stay bounded, and the sync gets
  through tracks (the first line, `X - Y`, is a search slskd refuses);
- no orphaned searches: no finished search stays in slskd's list for more than 2 minutes;
- the agent's RSS and open file descriptors are flat (median of the first vs the last quarter
  of its second life, after a minute of warm-up).

    .venv/bin/python benchmarks/soak_flapping.py [--minutes 10] [--tracks 200] [--seed 7]

Prints the figures and PASS/FAIL per check; exit code 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import _common  # noqa: F401  (sys.path)
from _common import BENCH_KEY, ROOT, agent_env, header, rss_mb, write_config

import requests

from trayagent.core.model import Kind, classify, parse_time
from trayagent.slskd.simulator import Simulator

ORPHAN_AGE = 120.0  # seconds a finished search may stay in slskd's list
SEARCHES_PER_MINUTE = 30.0
MB = 1_000_000
PEERS_GOOD = [f"goodpeer{i}" for i in range(8)]
FLAKY, REJECTING, STUCK, OFFLINE = "flakypeer", "rejectpeer", "stuckpeer", "offlinepeer"


# --------------------------------------------------------------------------- the world


def playlist_lines(tracks: int) -> list[str]:
    """`X - Y` first (one-letter words: slskd refuses that search), then findable tracks."""
    words = ["amber", "basalt", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo", "jasper"]
    lines = ["X - Y"]
    for i in range(1, tracks):
        lines.append(f"{words[i % len(words)].title()} Collective - Tide Song n{i:03d}")
    return lines


def script_searches(sim: Simulator, lines: list[str], rng: random.Random) -> None:
    """Results per track: most from good peers, some only from awkward ones, a tenth from none."""
    for i, line in enumerate(lines[1:], start=1):
        artist, title = line.split(" - ", 1)
        kind = i % 10
        if kind == 9:
            continue  # nobody shares it
        if kind == 8:
            peers = [REJECTING, OFFLINE]
        elif kind == 7:
            peers = [FLAKY]
        elif kind == 6:
            peers = [STUCK, rng.choice(PEERS_GOOD)]
        else:
            peers = rng.sample(PEERS_GOOD, 2)
        responses = []
        for rank, peer in enumerate(peers):
            path = f"@@{peer}\\Music\\{artist}\\Tides\\{i:03d} - {title}.flac"
            responses.append({
                "username": peer, "hasFreeUploadSlot": rank == 0, "queueLength": rank * 3,
                "uploadSpeed": 4 * MB // (rank + 1),
                "files": [{"filename": path, "size": rng.randint(3, 8) * MB, "length": 200 + i}],
            })
        sim.add_search_results(f"n{i:03d}", responses)


def plan_for(user: str, rng: random.Random) -> list[tuple[Any, ...]]:
    """A transfer's life by peer; durations in seconds."""
    if user == REJECTING:
        return [("state", "Requested", 0.5), ("end", "Completed, Rejected", "File not shared.")]
    if user == STUCK:
        return [("state", "Queued, Remotely", 3600.0)]  # the sync's queue_timeout cancels it
    if user == FLAKY:  # slskd's own retry: Errored, Queued Locally again, then success
        return [("state", "Requested", 0.5), ("end", "Completed, Errored", "Remote connection closed"),
                ("wait", 3.0), ("attempt",), ("state", "Queued, Locally", 1.0), ("state", "Requested", 0.5),
                ("transfer", 3 * MB), ("end", "Completed, Succeeded")]
    if user.startswith("streamer"):
        roll = rng.random()
        if roll < 0.70:
            return [("state", "Queued, Remotely", rng.uniform(0.5, 4)), ("transfer", rng.uniform(1, 4) * MB),
                    ("end", "Completed, Succeeded")]
        if roll < 0.80:
            return [("state", "Requested", 1.0), ("end", "Completed, Rejected", "File not shared.")]
        if roll < 0.90:
            steps: list[tuple[Any, ...]] = []
            for attempt in range(3):
                steps += [("state", "Requested", 0.5), ("state", "Queued, Remotely", 3.0),
                          ("end", "Completed, TimedOut", "Operation timed out")]
                if attempt < 2:
                    steps += [("wait", 2.0), ("attempt",)]
            return steps
        return [("state", "Queued, Remotely", 1.0), ("transfer", 1 * MB, 2 * MB), ("end", "Completed, Cancelled")]
    return [("state", "Queued, Remotely", rng.uniform(0.5, 3)), ("transfer", rng.uniform(2, 6) * MB),
            ("end", "Completed, Succeeded")]


class Driver(threading.Thread):
    """Gives every new download in slskd its life, and adds the stream of other downloads."""

    def __init__(self, sim: Simulator, rng: random.Random, stream_every: float) -> None:
        super().__init__(name="soak-driver", daemon=True)
        self.sim, self.rng, self.stream_every = sim, rng, stream_every
        self.stop = threading.Event()
        self.streaming = threading.Event()
        self.streaming.set()
        self.planned: set[str] = set()
        self.streamed = 0

    def run(self) -> None:
        next_stream = time.monotonic()
        while not self.stop.wait(0.5):
            for t in self.sim.transfers(include_removed=True):
                if t["id"] in self.planned:
                    continue
                self.planned.add(t["id"])
                if t["state"] == "Queued, Locally" and "exception" not in t:
                    try:
                        self.sim.plan(t["id"], plan_for(t["username"], self.rng))
                    except KeyError:
                        pass
            if self.streaming.is_set() and time.monotonic() >= next_stream:
                next_stream = time.monotonic() + self.rng.uniform(0.5, 1.5) * self.stream_every
                self.streamed += 1
                n = self.streamed
                self.sim.add_download(f"streamer{n % 12}", f"@@stream\\Mixes {n // 20:03d}\\Set {n:05d}.mp3",
                                      self.rng.randint(2, 9) * MB, state="Queued, Locally", attempts=0)


class Chaos(threading.Thread):
    """slskd flapping: one disturbance every 15-35 s, each logged."""

    def __init__(self, sim: Simulator, rng: random.Random) -> None:
        super().__init__(name="soak-chaos", daemon=True)
        self.sim, self.rng = sim, rng
        self.stop = threading.Event()
        self.log: Counter[str] = Counter()

    def run(self) -> None:
        actions: list[tuple[str, Callable[[], None]]] = [
            ("restart", self._restart), ("500s", self._errors("500")), ("401s", self._errors("401")),
            ("slow enqueues", self._slow), ("logged out", self._logged_out), ("calm", lambda: None),
        ]
        while not self.stop.wait(self.rng.uniform(15, 35)):
            name, act = self.rng.choice(actions)
            self.log[name] += 1
            try:
                act()
            except Exception as exc:  # noqa: BLE001 - chaos must go on
                print(f"  chaos {name} failed: {exc}", file=sys.stderr)
        self.sim.clear_faults()
        self.sim.set_logged_in(True)
        for peer in list(self.sim.enqueue_delays):
            self.sim.set_enqueue_delay(peer, 0)

    def _restart(self) -> None:
        self.sim.restart(downtime=self.rng.uniform(1, 6), relogin_delay=self.rng.uniform(0.5, 3)).wait(30)

    def _errors(self, kind: str) -> Callable[[], None]:
        return lambda: self.sim.fault(kind, self.rng.randint(3, 15))

    def _slow(self) -> None:
        peers = self.rng.sample(PEERS_GOOD, 3)
        for peer in peers:
            self.sim.set_enqueue_delay(peer, self.rng.uniform(12, 25))
        if not self.stop.wait(self.rng.uniform(20, 60)):
            for peer in peers:
                self.sim.set_enqueue_delay(peer, 0)

    def _logged_out(self) -> None:
        self.sim.set_logged_in(False)
        self.stop.wait(self.rng.uniform(15, 45))
        self.sim.set_logged_in(True)


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """A trayagent subprocess whose stdout lines are collected as they come."""

    cmd: list[str]
    env: dict[str, str]
    stderr_path: Path
    lines: list[str] = field(default_factory=list)
    proc: subprocess.Popen[str] | None = None
    started: float = 0.0

    def start(self) -> Proc:
        err = self.stderr_path.open("a", encoding="utf-8")
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=err, text=True, encoding="utf-8", bufsize=1)
        err.close()
        self.started = time.monotonic()
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        return self

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


@dataclass
class Samples:
    agent: list[tuple[float, float, int]] = field(default_factory=list)  # (t, rss MB, fds) of the 2nd life
    sync_rss: list[float] = field(default_factory=list)
    searches_listed: list[int] = field(default_factory=list)
    orphans_max: int = 0
    orphan_examples: list[str] = field(default_factory=list)


def sample_searches(sim: Simulator, samples: Samples) -> None:
    try:
        listed = requests.get(f"{sim.url}/api/v0/searches", headers={"X-API-Key": BENCH_KEY}, timeout=5).json()
    except (requests.RequestException, ValueError):
        return  # slskd is restarting
    samples.searches_listed.append(len(listed))
    now = time.time()
    old = []
    for s in listed:
        ended = parse_time(s.get("endedAt"))
        if s.get("isComplete") and ended is not None and now - ended.timestamp() > ORPHAN_AGE:
            old.append(f"{s.get('searchText')!r} {s.get('state')}")
    if len(old) > samples.orphans_max:
        samples.orphans_max, samples.orphan_examples = len(old), old[:5]


# --------------------------------------------------------------------------- checks


def agent_events(agents: list[Proc]) -> list[dict[str, Any]]:
    """Every event of every agent life; an event re-delivered after a kill has the same seq."""
    seen: set[int] = set()
    out = []
    for a in agents:
        for line in a.lines:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            seq = ev.get("seq")
            if seq is not None:
                if seq in seen:
                    continue
                seen.add(seq)
            out.append(ev)
    return out


def check_ends(sim: Simulator, events: list[dict[str, Any]]) -> tuple[bool, list[str]]:
    """Each download in slskd, once ended, reported exactly once and as what it became."""
    finals: dict[tuple[str, str], dict[str, Any]] = {}
    for t in sim.transfers(include_removed=True):
        finals[(t["username"], t["filename"])] = t  # insertion order: the last record wins
    ends: Counter[tuple[str, str]] = Counter()
    outcome: dict[tuple[str, str], str] = {}
    for ev in events:
        if ev.get("event") in ("completed", "failed", "cancelled"):
            key = (ev["username"], ev["filename"])
            ends[key] += 1
            outcome[key] = ev["event"]
    unfinished = [k for k, t in finals.items() if not classify(t["state"]).terminal]
    missed = [k for k, t in finals.items() if classify(t["state"]).terminal and ends[k] == 0]
    repeated = {k: n for k, n in ends.items() if n > 1}
    phantom = [k for k in ends if k not in finals or not classify(finals[k]["state"]).terminal]
    wrong = []
    for key, ev in outcome.items():
        t = finals.get(key)
        if t is None:
            continue
        kind = classify(t["state"]).kind
        if (ev == "completed") != (kind is Kind.SUCCEEDED):
            wrong.append(f"{key[1][-40:]}: reported {ev}, slskd shows {t['state']}")
    lines = [
        f"downloads in slskd: {len(finals)}, ended: {len(finals) - len(unfinished)}, still going: {len(unfinished)}",
        f"ends reported: {sum(ends.values())} ({Counter(outcome.values()).most_common()})",
        f"missed: {len(missed)}, reported more than once: {len(repeated)}, reported but not ended: {len(phantom)},"
        f" success/failure disagreeing with slskd: {len(wrong)}",
    ]
    lines += [f"  missed {k}" for k in missed[:5]] + [f"  repeated {k}: {n}" for k, n in list(repeated.items())[:5]]
    lines += [f"  {w}" for w in wrong[:5]]
    return not (missed or repeated or phantom or wrong or unfinished), lines


def check_loops(sim: Simulator, minutes: float, reports: list[dict[str, Any]], tracks: int) -> tuple[bool, list[str]]:
    posts = [r for r in sim.requests if r.method == "POST" and r.path.rstrip("/").endswith("/api/v0/searches")]
    per_text = Counter(getattr(sim, "searches_made", ()))
    worst = per_text.most_common(1)[0] if per_text else ("", 0)
    rate = len(posts) / max(minutes, 1e-9)
    last = reports[-1] if reports else {}
    settled = sum(last.get(k, 0) for k in ("completed", "skipped", "failed", "not_found"))
    ok = rate <= SEARCHES_PER_MINUTE * 1.5 and worst[1] <= 12 and len(per_text) >= min(tracks, 5)
    lines = [
        f"search POSTs: {len(posts)} ({rate:.1f}/min; limit {SEARCHES_PER_MINUTE:g}/min),"
        f" distinct texts: {len(per_text)}, most for one text: {worst[1]} ({worst[0]!r})",
        f"sync: {len(reports)} run(s); last report: {settled} of {last.get('total', tracks)} tracks settled"
        f" ({', '.join(f'{k} {last[k]}' for k in ('completed', 'failed', 'not_found', 'queued', 'pending') if k in last)})",
    ]
    return ok, lines


def check_flat(samples: Samples) -> tuple[bool, list[str]]:
    pts = samples.agent
    if len(pts) < 8:
        return False, [f"too few samples of the agent ({len(pts)})"]
    quarter = max(len(pts) // 4, 2)
    first, last = pts[:quarter], pts[-quarter:]
    rss0, rss1 = statistics.median(p[1] for p in first), statistics.median(p[1] for p in last)
    fd0, fd1 = statistics.median(p[2] for p in first), max(p[2] for p in last)
    ok = rss1 <= rss0 * 1.15 + 2.0 and fd1 <= fd0 + 4
    span = pts[-1][0] - pts[0][0]
    lines = [
        f"agent RSS over {span / 60:.1f} min: {rss0:.1f} MB -> {rss1:.1f} MB (median of first/last quarter,"
        f" {len(pts)} samples; max {max(p[1] for p in pts):.1f} MB)",
        f"agent open fds: {fd0:.0f} -> {fd1:.0f} (median of first quarter, max of last)",
    ]
    if samples.sync_rss:
        lines.append(f"sync RSS (across its runs): {samples.sync_rss[0]:.1f} MB -> {samples.sync_rss[-1]:.1f} MB")
    return ok, lines


# --------------------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of flapping (default 10)")
    ap.add_argument("--tracks", type=int, default=200, help="tracks in the playlist")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--stream-every", type=float, default=4.0, help="seconds between streamed downloads")
    ap.add_argument("--drain", type=float, default=240.0, help="most seconds to let everything end afterwards")
    args = ap.parse_args(argv)
    header(f"soak: {args.minutes:g} min of a flapping slskd under a {args.tracks}-track sync and a download stream")
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="trayagent-soak-") as tmp, Simulator(api_key=BENCH_KEY) as sim:
        return run(Path(tmp), sim, rng, args)


def run(root: Path, sim: Simulator, rng: random.Random, args: argparse.Namespace) -> int:
    lines = playlist_lines(args.tracks)
    playlist = root / "wanted.txt"
    playlist.write_text("\n".join(lines) + "\n")
    script_searches(sim, lines, rng)
    sim.set_user_offline(OFFLINE)
    cfg = write_config(
        root / "config.toml", sim.url, BENCH_KEY,
        poll={"active_interval": 1.0, "idle_interval": 3.0, "max_backoff": 10.0},
        tracking={"grace_polls": 3, "failure_settle": 30.0, "restart_window": 90.0},
        cleanup={"enabled": True, "interval": 30.0},
        notifications={"enabled": False},
        sync={"playlists": [str(playlist)], "searches_per_minute": SEARCHES_PER_MINUTE, "max_attempts": 3,
              "queue_timeout": 1.0},
    )
    env = agent_env(root / "state", root / "home")
    agent_cmd = [sys.executable, "-m", "trayagent", "run", "--headless", "--json", "--config", str(cfg)]
    sync_cmd = [sys.executable, "-m", "trayagent", "sync", "--json", "--config", str(cfg), str(playlist)]
    agents = [Proc(agent_cmd, env, root / "agent.stderr").start()]
    syncs: list[Proc] = []
    reports: list[dict[str, Any]] = []
    samples = Samples()
    driver, chaos = Driver(sim, rng, args.stream_every), Chaos(sim, rng)
    driver.start()
    time.sleep(2.0)  # the agent's first poll: an empty baseline
    chaos.start()
    began = time.monotonic()
    end_at = began + args.minutes * 60
    kill_at = began + args.minutes * 60 / 6
    sync_done = False
    next_sample = 0.0
    while time.monotonic() < end_at:
        now = time.monotonic()
        if kill_at and now >= kill_at:  # the agent dies hard once, mid-run
            agents[-1].signal(signal.SIGKILL)
            agents.append(Proc(agent_cmd, env, root / "agent.stderr").start())
            kill_at = 0.0
        if not agents[-1].alive:
            print(f"  the agent exited ({agents[-1].proc.returncode if agents[-1].proc else '?'}); restarting",
                  file=sys.stderr)
            agents.append(Proc(agent_cmd, env, root / "agent.stderr").start())
        if not sync_done and (not syncs or not syncs[-1].alive):
            if syncs:
                reports.append(_report(syncs[-1]))
                sync_done = _settled(reports[-1])
            if not sync_done and len(syncs) < 200:
                syncs.append(Proc(sync_cmd, env, root / "sync.stderr").start())
        if now >= next_sample:
            next_sample = now + 5.0
            _sample(sim, agents, syncs, samples, kill_at)
        time.sleep(0.5)

    print(f"  {args.minutes:g} min of flapping done ({dict(chaos.log)}); calming down and draining", flush=True)
    chaos.stop.set()
    chaos.join(90)
    driver.streaming.clear()
    time.sleep(30.0)  # a calm sync gets to delete what it left while slskd was away
    _sample(sim, agents, syncs, samples, 0.0)
    orphans_live = samples.orphans_max
    if syncs and syncs[-1].alive:
        syncs[-1].signal(signal.SIGINT, timeout=60)
    if syncs and syncs[-1].proc is not None:
        reports.append(_report(syncs[-1]))
    drained = _drain(sim, args.drain)
    time.sleep(20.0)  # failure_settle and a few polls
    flat_ok, flat_lines = check_flat(samples)
    agents[-1].signal(signal.SIGTERM)
    driver.stop.set()

    ends_ok, end_lines = check_ends(sim, agent_events(agents))
    loop_ok, loop_lines = check_loops(sim, args.minutes, reports, args.tracks)
    orphan_ok = orphans_live == 0
    print(f"  chaos: {dict(chaos.log)}; agent lives: {len(agents)}; sync runs: {len(syncs)};"
          f" streamed downloads: {driver.streamed}; everything ended within the drain: {drained}")
    results = [
        ("every end reported exactly once", ends_ok, end_lines),
        ("no endless loop", loop_ok, loop_lines),
        ("no orphaned searches", orphan_ok,
         [f"finished searches older than {ORPHAN_AGE:.0f} s in slskd's list: at most {orphans_live}"
          f" (listed searches: max {max(samples.searches_listed, default=0)},"
          f" at the end {samples.searches_listed[-1] if samples.searches_listed else 0})"]
         + [f"  {e}" for e in samples.orphan_examples]),
        ("RSS and open fds flat", flat_ok, flat_lines),
    ]
    for name, ok, detail in results:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
        for line in detail:
            print(f"        {line}")
    return 0 if all(ok for _n, ok, _d in results) else 1


def _sample(sim: Simulator, agents: list[Proc], syncs: list[Proc], samples: Samples, kill_pending: float) -> None:
    agent = agents[-1]
    if agent.alive and agent.proc is not None and not kill_pending and time.monotonic() - agent.started > 60:
        samples.agent.append((time.monotonic(), rss_mb(agent.proc.pid), open_fds(agent.proc.pid)))
    sync = syncs[-1] if syncs else None
    if sync is not None and sync.alive and sync.proc is not None and time.monotonic() - sync.started > 15:
        samples.sync_rss.append(rss_mb(sync.proc.pid))
    sample_searches(sim, samples)


def _report(sync: Proc) -> dict[str, Any]:
    for line in reversed(sync.lines):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "total" in obj:
            return obj
    return {}


def _settled(report: dict[str, Any]) -> bool:
    return bool(report) and not report.get("error") and not report.get("queued") and not report.get("pending")


def _drain(sim: Simulator, seconds: float) -> bool:
    """Wait until every download slskd lists has ended (the stuck peer's are cancelled here)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        live = [t for t in sim.transfers(include_removed=True) if not classify(t["state"]).terminal]
        for t in live:
            if t["username"] == STUCK:
                requests.delete(f"{sim.url}/api/v0/transfers/downloads/{t['username']}/{t['id']}",
                                headers={"X-API-Key": BENCH_KEY}, timeout=5)
        if not live:
            return True
        time.sleep(1.0)
    return False


if __name__ == "__main__":
    raise SystemExit(main())
