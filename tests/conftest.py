from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agentproc import AgentProcess, write_config  # noqa: E402

API_KEY = "test-key-0123456789abcdef"


@pytest.fixture
def sim() -> Iterator[Any]:
    from trayagent.slskd.simulator import Simulator

    s = Simulator(api_key=API_KEY)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def sim_fast(sim: Any) -> Any:
    """The simulator with responses arriving within 0.1 s (sync tests)."""
    sim.search_duration = 0.1
    return sim


@pytest.fixture
def real_client(sim_fast: Any) -> Any:
    """A real SlskdClient for `sim_fast`."""
    from trayagent.config import SlskdConfig
    from trayagent.slskd.client import SlskdClient

    return SlskdClient(SlskdConfig(url=sim_fast.url, api_key=API_KEY, timeout=5.0))


@pytest.fixture
def make_agent(tmp_path: Path, sim: Any) -> Iterator[Callable[..., AgentProcess]]:
    """Start agents against the simulator; all share one state dir (so restarts resume)."""
    started: list[AgentProcess] = []
    state = tmp_path / "state"
    home = tmp_path / "home"
    home.mkdir()

    def make(start: bool = True, api_key: str | None = API_KEY, url: str | None = None,
             **sections: dict[str, Any]) -> AgentProcess:
        cfg = write_config(tmp_path / f"config{len(started)}.toml", url or sim.url, api_key, **sections)
        a = AgentProcess(cfg, state, home)
        started.append(a)
        return a.start() if start else a

    yield make
    for a in started:
        if a.proc is not None and a.proc.poll() is None:
            a.kill()
