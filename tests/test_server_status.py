"""server_status.ServerStatus: one connection event per change of slskd's reachability, and the back-off."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from trayagent.actions import IssuedLedger
from trayagent.config import PollConfig
from trayagent.core.model import EventType
from trayagent.server_status import ServerStatus
from trayagent.slskd.errors import SlskdUnreachable
from trayagent.store import CANCEL, RETRY, Store, note_issued_elsewhere

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_reachability_changes_are_one_event_each() -> None:
    status = ServerStatus(download_dir_known=True)
    assert status.poll_succeeded(NOW) is None  # the first poll finds it: nothing was lost
    down = SlskdUnreachable("connection refused")
    lost = status.poll_failed(down, NOW)
    assert lost is not None and lost.event is EventType.CONNECTION and lost.status == "lost"
    assert status.poll_failed(down, NOW) is None and status.failures == 2
    restored = status.poll_succeeded(NOW)
    assert restored is not None and restored.status == "restored" and status.failures == 0
    assert status.poll_succeeded(NOW) is None and status.connected is True


def test_backoff_doubles_per_failure_up_to_the_cap() -> None:
    poll = PollConfig(active_interval=1.0, idle_interval=30.0, max_backoff=5.0)
    status = ServerStatus(download_dir_known=True)
    assert status.next_interval(poll, ok=True, busy=True) == 1.0
    assert status.next_interval(poll, ok=True, busy=False) == 30.0
    waits = []
    for _ in range(4):
        status.poll_failed(SlskdUnreachable("refused"), NOW)
        waits.append(status.next_interval(poll, ok=False, busy=False))
    assert waits == [2.0, 4.0, 5.0, 5.0]


def test_issued_ledger_sees_what_another_process_noted(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = Store(path)
    try:
        ledger = IssuedLedger(store)
        ledger.note(RETRY, ["a"], NOW)
        note_issued_elsewhere(path, CANCEL, ["b"], NOW)  # e.g. `trayagent sync`
        assert ledger.ids(RETRY) == {"a"} and ledger.ids(CANCEL) == {"b"}
        assert IssuedLedger(store).ids(RETRY) == {"a"}  # persisted: the next run knows too
    finally:
        store.close()
