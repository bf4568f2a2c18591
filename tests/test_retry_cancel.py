"""Retry and cancel against the strict simulator, with the agent's real client over HTTP.

slskd refuses an enqueue listing one (filename, size) twice (500 for the whole peer), answers
an enqueue only after reaching the peer, and ends a download cancelled between its own retries
as `Completed, Errored`. The agent must retry each failed file once, across restarts, and never
call the user's (or the sync's) cancel a failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from agentproc import EventSink, quiet_for, write_config
from conftest import API_KEY

from trayagent.agent import Agent
from trayagent.config import load_config
from trayagent.core.model import EventType, Kind, utcnow
from trayagent.slskd.simulator import Simulator
from trayagent.store import CANCEL, note_issued_elsewhere

ONE = "@@x\\Album\\01 - One.flac"
TWO = "@@x\\Album\\02 - Two.flac"


@pytest.fixture
def make(sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """In-process agents (the tray's Retry calls Agent.retry) sharing one state directory."""
    monkeypatch.setenv("TRAYAGENT_STATE_DIR", str(tmp_path / "state"))
    made: list[Agent] = []

    def build(**slskd: Any) -> Agent:
        path = write_config(tmp_path / f"c{len(made)}.toml", sim.url, API_KEY, slskd=slskd,
                            tracking={"failure_settle": 0.0, "grace_polls": 3, "restart_window": 4.0})
        agent = Agent(load_config(path, env={}))
        made.append(agent)
        return agent

    yield build
    for agent in made:
        agent.stop()


def enqueue_posts(sim: Simulator) -> list[Any]:
    return [r for r in sim.requests if r.method == "POST" and "/transfers/downloads/" in r.path]


def fail(sim: Simulator, agent: Agent, user: str, name: str, size: int = 100) -> str:
    tid = sim.add_download(user, name, size, state="InProgress")
    assert agent.poll_once()
    sim.set_state(tid, "Completed, Rejected", exception="File not shared.")
    assert agent.poll_once()
    return tid


def test_a_file_that_failed_twice_is_retried_once_with_its_peer(make: Any, sim: Simulator) -> None:
    agent = make()
    first = fail(sim, agent, "carol", ONE)
    second = fail(sim, agent, "carol", ONE)  # the same file failed again (a new download)
    other = fail(sim, agent, "carol", TWO)
    assert {f.transfer_id for f in agent.state().recent if f.outcome is Kind.FAILED} == {first, second, other}
    sim.clear_requests()
    assert agent.retry_failed() == 2
    (post,) = enqueue_posts(sim)
    assert post.status == 201, "listing one file twice makes slskd refuse the whole peer (500)"
    live = [t for t in sim.transfers() if t["state"] == "Queued, Locally"]
    assert sorted(t["filename"] for t in live) == [ONE, TWO]
    assert agent.retry_failed() == 0 and len(enqueue_posts(sim)) == 1


def test_a_failure_whose_file_completed_since_is_not_retried(make: Any, sim: Simulator) -> None:
    agent = make()
    fail(sim, agent, "carol", ONE)
    done = sim.add_download("carol", ONE, 100, state="InProgress")
    assert agent.poll_once()
    sim.set_state(done, "Completed, Succeeded")
    assert agent.poll_once()
    sim.clear_requests()
    assert agent.retry_failed() == 0
    assert enqueue_posts(sim) == []


def test_retried_failures_are_remembered_across_an_agent_restart(make: Any, sim: Simulator) -> None:
    agent = make()
    tid = fail(sim, agent, "carol", ONE)
    assert agent.retry() == 1
    agent.stop()
    sim.clear_requests()
    again = make()
    assert again.poll_once()
    assert again.retry_failed() == 0 and again.retry([tid]) == 0
    assert enqueue_posts(sim) == [], "a failure is retried once, not once per agent run"
    # The retried download fails too: that new failure may be retried, and only that one file.
    (new,) = [t["id"] for t in sim.transfers() if t["state"] == "Queued, Locally"]
    sim.set_state(new, "Completed, Rejected")
    assert again.poll_once()
    assert again.retry_failed() == 1 and len(enqueue_posts(sim)) == 1


def test_retry_by_id_takes_only_those_failures(make: Any, sim: Simulator) -> None:
    agent = make()
    one = fail(sim, agent, "carol", ONE)
    fail(sim, agent, "dave", TWO)
    sim.clear_requests()
    assert agent.retry([one]) == 1
    (post,) = enqueue_posts(sim)
    assert post.path.endswith("/carol")
    assert agent.retry_failed() == 1  # dave's is still there for Retry failed


def test_a_slow_enqueue_gets_its_own_longer_timeout(make: Any, sim: Simulator) -> None:
    agent = make(timeout=0.5, enqueue_timeout=5.0)
    fail(sim, agent, "carol", ONE)
    sim.set_enqueue_delay("carol", 1.5)  # slskd looks carol up and connects before answering
    assert agent.retry_failed() == 1
    assert enqueue_posts(sim)[-1].status == 201


def test_an_enqueue_that_times_out_is_judged_by_the_download_list(make: Any, sim: Simulator) -> None:
    agent = make(timeout=0.3, enqueue_timeout=0.5)
    fail(sim, agent, "carol", ONE)
    sim.set_enqueue_delay("carol", 1.5)  # the answer comes after the client gave up
    assert agent.retry_failed() == 1, "the files appeared in slskd's list: that is success"
    assert [t["state"] for t in sim.transfers() if t["filename"] == ONE][-1] == "Queued, Locally"
    sim.set_enqueue_delay("carol", 0)
    assert agent.retry_failed() == 0 and len(enqueue_posts(sim)) == 1


def test_an_enqueue_that_never_took_effect_stays_retryable(make: Any, sim: Simulator) -> None:
    agent = make()
    fail(sim, agent, "carol", ONE)
    sim.set_user_offline("carol")  # slskd answers 500 "appears to be offline"
    assert agent.retry_failed() == 0
    sim.set_user_offline("carol", False)
    assert agent.retry_failed() == 1


def test_cancel_between_slskd_retries_is_reported_as_cancelled(make: Any, sim: Simulator) -> None:
    sim.cancel_delay = 0.0
    agent = make()
    sink = EventSink()
    agent.add_notifier(sink)
    tid = sim.add_download("carol", ONE, 100, state="InProgress")
    assert agent.poll_once()
    sim.set_state(tid, "Completed, Errored", exception="Remote connection closed")
    sim.set_state(tid, "Queued, Locally")  # slskd waits to retry
    assert agent.poll_once()
    assert agent.cancel([tid]) == 1
    assert sim.get(tid)["state"] == "Completed, Errored"
    assert agent.poll_once()
    ends = [e for e in sink.events if e.event in (EventType.FAILED, EventType.CANCELLED, EventType.COMPLETED)]
    assert [(e.event, e.id) for e in ends] == [(EventType.CANCELLED, tid)]
    assert agent.state().failed_unseen == 0 and agent.retry_failed() == 0


def test_a_cancel_made_by_another_process_is_reported_as_cancelled(make_agent: Any, sim: Simulator,
                                                                    tmp_path: Path) -> None:
    """`trayagent sync` notes its cancels in the agent's state file; the running agent reads them."""
    sim.cancel_delay = 0.0
    agent = make_agent(tracking={"failure_settle": 0.3})
    tid = sim.add_download("carol", ONE, 100, state="InProgress")
    agent.wait_event("started", id=tid)
    sim.set_state(tid, "Completed, Errored", exception="Remote connection closed")
    sim.set_state(tid, "Queued, Locally")
    state = next(agent.state_dir.glob("slskd-*.sqlite3"))  # the agent's, keyed by the slskd instance
    note_issued_elsewhere(state, CANCEL, [tid], utcnow())
    sim.set_state(tid, "Completed, Errored")  # what slskd shows after that cancel
    agent.wait_event("cancelled", id=tid)
    quiet_for(agent, 1.0)
    assert not agent.of("failed", id=tid) and len(agent.of("cancelled", id=tid)) == 1
    assert agent.stop() == 0


def test_the_sync_in_the_agent_notes_its_cancels(make: Any, sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The tray's sync gets a client whose cancels the agent's tracker knows about."""
    import trayagent.sync_cli as sync

    agent = make()
    sink = EventSink()
    agent.add_notifier(sink)
    tid = sim.add_download("carol", ONE, 100, state="InProgress")
    assert agent.poll_once()

    def sync_that_gives_up_on_carol(config: Any, *args: Any, client: Any = None, **kw: Any) -> Any:
        client.cancel_download("carol", tid)  # as the sync does after a queue timeout or a settled failure
        raise ValueError("no playlists configured in [sync] playlists")

    monkeypatch.setattr(sync, "run_configured_sync", sync_that_gives_up_on_carol)
    sim.cancel_delay = 5.0  # the cancel lands later: meanwhile slskd shows what a retry wait ends with
    agent.sync_playlists()
    sim.set_state(tid, "Completed, Errored", exception="Remote connection closed")
    assert agent.poll_once()
    ends = [(e.event, e.id) for e in sink.events if e.event in (EventType.FAILED, EventType.CANCELLED)]
    assert ends == [(EventType.CANCELLED, tid)]


def test_trayagent_sync_notes_its_cancels_for_the_agent(sim: Simulator, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`trayagent sync` runs beside the agent: its cancels go into the agent's state file."""
    import trayagent.sync_cli as sync
    from trayagent.cli import main
    from trayagent.paths import instance_state_path
    from trayagent.store import Store

    monkeypatch.setenv("TRAYAGENT_STATE_DIR", str(tmp_path / "state"))
    state = instance_state_path(sim.url)
    Store(state).close()  # an agent has run
    tid = sim.add_download("carol", ONE, 100, state="Queued, Remotely")

    def sync_command(config: Any, paths: Any, json_out: bool, out: Any, err: Any, *, client: Any = None,
                     **kw: Any) -> int:
        client.cancel_download("carol", tid)
        return 0

    monkeypatch.setattr(sync, "run_sync_command", sync_command)
    cfg = write_config(tmp_path / "c.toml", sim.url, API_KEY)
    assert main(["sync", "--config", str(cfg), str(tmp_path / "any.m3u")]) == 0
    store = Store(state)
    assert store.issued()[0] == [(CANCEL, tid)]
    store.close()
    assert any(r.method == "DELETE" and r.path.endswith(tid) for r in sim.requests)
