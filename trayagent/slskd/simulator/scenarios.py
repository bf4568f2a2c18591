"""The simulator's scripted sessions: "demo" (what `trayagent demo` plays) and "idle" (nothing).

Why data apart from logic: a scenario is a list of peers, files and timetables; reading or
changing one should not mean reading the simulator.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from trayagent.slskd.simulator.plans import INIT_SECONDS, Step

if TYPE_CHECKING:
    from trayagent.slskd.simulator.server import Simulator

SCENARIOS = ("demo", "idle")

_ALBUM_DIR = "@@music\\Halcyon Drift\\Tidal Architecture (2019)"
_ALBUM_TRACKS = (
    "Low Tide Protocol", "Salt Lines", "Harbour Lights at 4am", "Breakwater", "Undertow (Reprise)",
    "Glass Ocean", "The Long Fetch", "Moored", "Signal Flags", "Estuary", "Slack Water",
)


def load(sim: Simulator, name: str) -> None:
    """"demo": a realistic ~85 s session (scaled by `speedup`); "idle": nothing."""
    if name == "idle":
        return
    if name != "demo":
        raise ValueError(f"unknown scenario {name!r}; expected 'demo' or 'idle'")
    _load_demo(sim)


def _load_demo(sim: Simulator) -> None:
    """A realistic ~85 s session; every duration is divided by `sim.speedup` at run time."""
    rng = random.Random(2019)
    mb = 1_000_000
    # Already finished before the agent started, so the list is not empty.
    sim.add_download("oldfriend", "@@share\\Podcasts\\Field Recordings Ep. 41.mp3", 48_211_337,
                     "Completed, Succeeded", 48_211_337, speed=2_400_000.0, ended_ago=3 * 3600)
    sim.add_download("oldfriend", "@@share\\Podcasts\\Field Recordings Ep. 42.mp3", 51_902_114,
                     "Completed, Succeeded", 51_902_114, speed=2_100_000.0, ended_ago=3500)
    sim.add_download("nightowl", "@@lossless\\Various\\Compilation 07\\03 - Lumen.flac", 31_440_012,
                     "Completed, Errored", 9_117_200, exception="Remote connection closed",
                     speed=850_000.0, ended_ago=2900, attempts=3)

    def queued(hold: float) -> list[Step]:
        return [("state", "Queued, Locally", 0.4), ("state", "Requested", 0.6), ("state", "Queued, Remotely", hold)]

    # The album: queued all at once, then two at a time at a few MB/s.
    user = "halcyon_archive"
    slots = [3.0, 4.5]
    for i, title in enumerate(_ALBUM_TRACKS, start=1):
        size = rng.randint(20 * mb, 34 * mb)
        bps = rng.uniform(3.2, 4.4) * mb
        tid = sim.add_download(user, f"{_ALBUM_DIR}\\{i:02d} - {title}.flac", size, state="Queued, Locally")
        slot = min(range(len(slots)), key=slots.__getitem__)
        start = slots[slot]
        sim.plan(tid, queued(start - 1.0) + [("transfer", bps), ("end", "Completed, Succeeded")])
        slots[slot] = start + INIT_SECONDS + size / bps + 0.4

    # A slow peer: one long DJ mix at ~50 KB/s.
    tid = sim.add_download("dialup_dan", "@@shared\\Mixes\\Late Night Radio Session 1997 (tape rip).mp3",
                           4_000_000, state="Queued, Locally")
    sim.plan(tid, queued(1.0) + [("transfer", 51_200), ("end", "Completed, Succeeded")])

    # The peer never acknowledges: Queued, Remotely, then TimedOut with 0 bytes. slskd 0.25+ retries
    # it (same id, attempts + 1) and 0.26 shows the failed state briefly in between.
    tid = sim.add_download("ghostpeer", "@@rare\\White Labels\\Untitled B2.flac", 27_500_000,
                           state="Queued, Locally")
    steps: list[Step] = []
    for attempt in range(3):
        steps += [("state", "Requested", 0.6), ("state", "Queued, Remotely", 7.0)]
        steps += [("end", "Completed, TimedOut", "Operation timed out")]
        if attempt < 2:
            steps += [("wait", 0.5), ("attempt",)]
    sim.plan(tid, steps)

    # Rejected by the peer: never retried.
    tid = sim.add_download("privatecollector", "@@vault\\Test Pressings\\Side A.flac", 41_000_000,
                           state="Queued, Locally")
    sim.plan(tid, [("state", "Queued, Locally", 0.5), ("state", "Requested", 2.5),
                   ("end", "Completed, Rejected", "File not shared.")])

    # Cancelled part-way through.
    tid = sim.add_download("netlabel_mirror", "@@netlabels\\Kasuga\\KSG-014 Full Release.zip", 48_000_000,
                           state="Queued, Locally")
    sim.plan(tid, queued(2.0) + [("transfer", 1_200_000, 19_000_000), ("end", "Completed, Cancelled")])
