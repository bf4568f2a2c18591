"""Run a benchmark (or the agent) with the code paths as they were before the performance work.

Restores the original `Transfer.from_json` (keyword construction, a helper call per field),
parse_downloads without its pause of the cyclic GC, and skips the glibc mmap-threshold pin in
trayagent.slskd.memory, so "before" figures can be measured on the same machine in the same session
as "after" ones:

    .venv/bin/python benchmarks/_before.py benchmarks/poll_cost.py --sizes 1000,10000
    TRAYAGENT_BENCH_BEFORE=1 .venv/bin/python benchmarks/idle.py   # the agent subprocess too
    .venv/bin/python benchmarks/_before.py -m trayagent run --headless ...
"""

from __future__ import annotations

import os
import sys
from typing import Mapping

os.environ["TRAYAGENT_BENCH_BEFORE"] = "1"  # benchmarks spawn their agents through this file too


def install() -> None:
    import trayagent.agent as agent
    import trayagent.slskd.client as client
    import trayagent.slskd.memory as memory
    import trayagent.slskd.parsing as parsing
    from trayagent.core.model import Kind, Transfer

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import naive_from_json

    def dynamic_threshold() -> None:
        """The allocator left as glibc has it: the mmap threshold stays dynamic."""

    def parse_without_pause(body: bytes | str, *, listing: bool = False, group: bool = False,
                            known: Mapping[str, Kind] | None = None) -> parsing.Downloads:
        """parse_downloads without its pause of the cyclic collector."""
        return parsing._parse_downloads(body, listing, group, known or None)

    memory.tune_allocator = dynamic_threshold
    agent.tune_allocator = dynamic_threshold  # the agent calls the name it imported
    Transfer.from_json = staticmethod(naive_from_json)  # type: ignore[method-assign,assignment]
    parsing.parse_downloads = parse_without_pause
    client.parse_downloads = parse_without_pause  # the client calls the name it imported


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import run_patched

    run_patched(install, __doc__)


if __name__ == "__main__":
    main()
