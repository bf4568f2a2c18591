"""Run a benchmark (or the agent) with the code paths as they were before the performance work.

Restores the original `Transfer.from_json` (keyword construction, a helper call per field),
parse_downloads without its pause of the cyclic GC, and skips the glibc mmap-threshold pin in
trayagent.slskd.client, so "before" figures can be measured on the same machine in the same session
as "after" ones:

    .venv/bin/python benchmarks/_before.py benchmarks/poll_cost.py --sizes 1000,10000
    TRAYAGENT_BENCH_BEFORE=1 .venv/bin/python benchmarks/idle.py   # the agent subprocess too
    .venv/bin/python benchmarks/_before.py -m trayagent run --headless ...
"""

from __future__ import annotations

import os
import sys

os.environ["TRAYAGENT_BENCH_BEFORE"] = "1"  # benchmarks spawn their agents through this file too


def install() -> None:
    import trayagent.agent as agent
    import trayagent.slskd.client as slskd
    from trayagent.core.model import Transfer

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import naive_from_json

    def dynamic_threshold() -> None:
        """The allocator left as glibc has it: the mmap threshold stays dynamic."""

    slskd.tune_allocator = dynamic_threshold
    agent.tune_allocator = dynamic_threshold  # the agent calls the name it imported
    Transfer.from_json = staticmethod(naive_from_json)  # type: ignore[method-assign,assignment]
    slskd.parse_downloads = slskd._parse_downloads  # without the collector pause


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import run_patched

    run_patched(install, __doc__)


if __name__ == "__main__":
    main()
