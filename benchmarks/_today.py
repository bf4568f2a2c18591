"""Run a benchmark, or the agent, with the poll path as it was before issue 12 ("today").

Restores what `main` did on every poll before per-peer polling:
- every poll reads slskd's whole list and builds it (no per-peer lists, no reading by id:
  Poller.peers_to_poll and Poller.whole_list_by_id answer None),
- the body through requests' `.content` (gathered in 10 KiB chunks),
- every record built into a Transfer, ended and recorded or not (no `known` skip),
- the last poll's list kept until the next poll (Agent._last_transfers), no heap trim.

    .venv/bin/python benchmarks/_today.py -m trayagent run --headless ...
    TRAYAGENT_BENCH_TODAY=1 .venv/bin/python benchmarks/idle.py     # its agent subprocess too
"""

from __future__ import annotations

import os
import sys
from typing import Any

os.environ["TRAYAGENT_BENCH_TODAY"] = "1"  # benchmarks spawn their agents through this file too


def install() -> None:
    import trayagent.agent as agent
    import trayagent.polling as polling
    import trayagent.slskd.client as slskd
    import trayagent.slskd.memory as memory
    import trayagent.slskd.parsing as parsing
    from trayagent.slskd.connection import API

    def list_downloads(self: Any, include_removed: bool = False, known: Any = None, followed: Any = None,
                       trim: bool = True) -> Any:
        params = {"includeRemoved": "true"} if include_removed else None
        resp = self._request("GET", f"{API}/transfers/downloads", params=params)
        return parsing.parse_downloads(resp.content, listing=True)

    poll = agent.Agent._poll

    def keep_last(self: Any, *, build_all: bool = False) -> Any:
        out = poll(self, build_all=build_all)
        if out is not None:
            self._last_transfers = out
        return out

    slskd.SlskdClient.list_downloads = list_downloads  # type: ignore[method-assign]
    memory.trim_heap = lambda body_size: None
    polling.Poller.peers_to_poll = lambda self, tracker: None  # type: ignore[method-assign]
    polling.Poller.whole_list_by_id = lambda self, tracker: None  # type: ignore[method-assign]
    agent.Agent._poll = keep_last  # type: ignore[method-assign]


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import run_patched

    run_patched(install, __doc__)


if __name__ == "__main__":
    main()
