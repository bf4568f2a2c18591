"""Notifications with buttons, albums in place and the away summary: composer, D-Bus backend, notifier.

The D-Bus backend is driven through a stand-in router that serialises every message jeepney
builds (so a wrong signature or hint type fails here) and answers like a notification daemon.
The real daemon (dunst) and a real bus are in tests/e2e/test_notifications_e2e.py.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Collection

import pytest
from jeepney import HeaderFields, Message, new_method_return

from trayagent.desktop.composer import (
    NotificationComposer,
    NotificationRules,
    away_gap,
    failed_names,
    is_away,
)
from trayagent.desktop.dbus_notify import DBusNotifyBackend, session_bus_address
from trayagent.desktop.desktop_notifier import DesktopNotifier, NoteActions, note_actions
from trayagent.core.model import AgentState, Event, EventType, Transfer
from trayagent.desktop.notification import Notification, NotificationError

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
ALBUM = "@@abc\\Music\\Artist\\Tray Album"


def ev(kind: EventType, name: str, *, folder: str = ALBUM, user: str = "bob", reason: str | None = None,
       tid: str | None = None) -> Event:
    return Event(kind, T0, id=tid or f"id-{name}", username=user, filename=f"{folder}\\{name}",
                 state="Completed", reason=reason)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def composer(**rules: Any) -> NotificationComposer:
    rules.setdefault("batch_window", 0)
    rules.setdefault("max_per_minute", 100)
    return NotificationComposer(NotificationRules(**rules))


# --------------------------------------------------------------------------- composer: albums


class TestAlbumInPlace:
    def test_album_arriving_track_by_track_is_one_key_then_its_final_state(self) -> None:
        c = composer()
        tracks = [f"{i:02d} - Song {i}.flac" for i in range(1, 13)]
        for t in tracks:
            c.feed(ev(EventType.ADDED, t), at(0))
        notes = []
        for i, t in enumerate(tracks[:11], start=1):
            c.feed(ev(EventType.COMPLETED, t), at(i))
            notes += c.due(at(i))
        assert [n.title for n in notes[:2]] == ["Tray Album — 1 of 12", "Tray Album — 2 of 12"]
        assert notes[6].title == "Tray Album — 7 of 12"
        assert len({n.key for n in notes}) == 1 and notes[0].key
        assert not any(n.final for n in notes)
        c.feed(ev(EventType.FAILED, tracks[11], reason="rejected"), at(20))
        [final] = c.due(at(20))
        assert final.key == notes[0].key and final.final
        assert final.title == "Tray Album — 11 downloaded, 1 failed"
        assert "failed: Song 12 (peer rejected the request)" in final.body and final.category == "transfer.error"
        assert final.retry_ids == (f"id-{tracks[11]}",)

    def test_in_place_updates_do_not_use_up_the_rate_cap(self) -> None:
        c = composer(max_per_minute=2)
        for i in range(12):
            c.feed(ev(EventType.ADDED, f"{i}.flac"), at(0))
        shown = []
        for i in range(12):
            c.feed(ev(EventType.COMPLETED, f"{i}.flac"), at(i + 1))
            shown += c.due(at(i + 1))
        assert len(shown) == 12 and shown[-1].title == "Tray Album — 12 tracks downloaded"

    def test_next_album_in_the_same_folder_gets_a_new_key(self) -> None:
        c = composer()
        c.feed(ev(EventType.ADDED, "a.flac"), at(0))
        c.feed(ev(EventType.ADDED, "b.flac"), at(0))
        c.feed(ev(EventType.COMPLETED, "a.flac"), at(1))
        [first] = c.due(at(1))
        c.feed(ev(EventType.COMPLETED, "b.flac"), at(2))
        [final] = c.due(at(2))
        c.feed(ev(EventType.ADDED, "c.flac"), at(3))
        c.feed(ev(EventType.ADDED, "d.flac"), at(3))
        c.feed(ev(EventType.COMPLETED, "c.flac"), at(4))
        [again] = c.due(at(4))
        assert first.key == final.key and again.key != first.key

    def test_lone_file_is_a_plain_note_with_its_folder_for_open_folder(self) -> None:
        c = composer()
        c.feed(ev(EventType.ADDED, "01 - Song.flac"), at(0))
        c.feed(ev(EventType.COMPLETED, "01 - Song.flac"), at(1))
        [n] = c.due(at(1))
        assert n.title == "Download finished" and not n.key
        assert n.folder_of == f"{ALBUM}\\01 - Song.flac" and n.category == "transfer.complete"


class TestFailedNaming:
    def test_up_to_three_names_then_more(self) -> None:
        failed = [ev(EventType.FAILED, f"{i:02d} - Track {i}.flac", reason="rejected") for i in range(1, 6)]
        assert failed_names(failed) == "Track 1, Track 2, Track 3 +2 more"
        assert failed_names(failed[:2]) == "Track 1, Track 2"

    def test_batch_failure_names_files_and_reason(self) -> None:
        c = composer()
        for i in range(1, 6):
            c.feed(ev(EventType.FAILED, f"{i:02d} - Track {i}.flac", reason="timedout"), at(0))
        [n] = c.due(at(0))
        assert n.title == "Tray Album — 5 failed"
        assert n.body == ("from bob · failed: Track 1, Track 2, Track 3 +2 more "
                          "(timed out waiting in the peer's queue)")
        assert len(n.retry_ids) == 5 and n.category == "transfer.error"

    def test_single_failure_names_the_file(self) -> None:
        c = composer()
        c.feed(ev(EventType.FAILED, "07 - Lost Song.flac", reason="rejected"), at(0))
        [n] = c.due(at(0))
        assert n.title == "Download failed" and n.body.startswith("Lost Song — Artist: peer rejected")
        assert n.retry_ids == ("id-07 - Lost Song.flac",) and not n.folder_of


# --------------------------------------------------------------------------- composer: away


class TestAway:
    def test_is_away_before_first_poll_and_after_a_long_gap(self) -> None:
        gap = away_gap(1.0, 10.0)
        assert gap == 120.0 and away_gap(1.0, 60.0) == 300.0
        assert is_away(None, at(0), gap)
        assert not is_away(at(0), at(15), gap)
        assert is_away(at(0), at(3600), gap)

    def test_what_ended_while_away_is_one_summary_naming_failures(self) -> None:
        c = composer(max_per_minute=2)
        for i in range(6):
            c.feed(ev(EventType.COMPLETED, f"{i}.flac", folder=f"@@x\\A\\Album {i}"), at(0), away=True)
        for i in range(4):
            c.feed(ev(EventType.FAILED, f"Bad {i}.flac", folder="@@x\\A\\Broken", reason="rejected"), at(0),
                   away=True)
        notes = c.due(at(0))
        assert [n.title for n in notes] == ["While you were away: 6 downloaded, 4 failed"]
        [n] = notes
        assert n.body == "failed: Bad 0, Bad 1, Bad 2 +1 more"
        assert n.kind == "away" and len(n.retry_ids) == 4 and n.category == "transfer.error"

    def test_away_within_one_album_is_that_albums_note(self) -> None:
        c = composer()
        for i in range(3):
            c.feed(ev(EventType.COMPLETED, f"{i}.flac"), at(0), away=True)
        [n] = c.due(at(0))
        assert n.title == "Tray Album — 3 tracks downloaded"

    def test_away_summary_closes_a_stale_album_progress_note(self) -> None:
        c = composer()
        for name in ("a.flac", "b.flac"):
            c.feed(ev(EventType.ADDED, name), at(0))
        c.feed(ev(EventType.COMPLETED, "a.flac"), at(1))
        [progress] = c.due(at(1))
        c.feed(ev(EventType.COMPLETED, "b.flac"), at(500), away=True)
        c.feed(ev(EventType.COMPLETED, "x.flac", folder="@@x\\Other"), at(500), away=True)
        notes = c.due(at(500))
        assert [(n.kind, n.key) for n in notes] == [("close", progress.key), ("away", "")]
        assert notes[1].title == "While you were away: 2 downloaded"


# --------------------------------------------------------------------------- D-Bus backend


class FakeRouter:
    """Serialises each call as jeepney would send it, and answers like a notification daemon."""

    def __init__(self) -> None:
        self.calls: list[Message] = []

    def send_and_get_reply(self, msg: Message, timeout: float | None = None) -> Message:
        msg.serialise(serial=len(self.calls) + 1)  # a bad signature or hint type fails here
        self.calls.append(msg)
        return new_method_return(msg, "u", (41,))


def dbus_backend(caps: set[str]) -> tuple[DBusNotifyBackend, FakeRouter]:
    router = FakeRouter()
    backend = DBusNotifyBackend(None, router, frozenset(caps), ("dunst", "knopwob", "1.9.0", "1.2"),  # type: ignore[arg-type]
                                "trayagent", "/icons/trayagent.png", None, None)
    return backend, router


BUTTONS = [("default", "Open slskd"), ("retry", "Retry"), ("show-slskd", "Show in slskd")]
HOSTILE = Notification("Download failed", "<b>Rock & Roll</b> \udcff", category="transfer.error")


class TestCapabilities:
    def test_markup_escaped_and_buttons_sent_where_offered(self) -> None:
        backend, router = dbus_backend({"body", "body-markup", "actions"})
        assert backend.send(HOSTILE, replaces_id=7, actions=BUTTONS) == 41
        app, replaces, icon, title, body, actions, hints, timeout = router.calls[0].body
        assert (app, replaces, title, timeout) == ("trayagent", 7, "Download failed", -1)
        assert body == "&lt;b&gt;Rock &amp; Roll&lt;/b&gt; ?"
        assert actions == ["default", "Open slskd", "retry", "Retry", "show-slskd", "Show in slskd"]
        assert hints["desktop-entry"] == ("s", "trayagent")
        assert hints["category"] == ("s", "transfer.error") and hints["urgency"] == ("y", 1)

    def test_plain_text_and_no_buttons_where_not_offered(self) -> None:
        backend, router = dbus_backend({"body"})
        backend.send(HOSTILE, actions=BUTTONS)
        body, actions = router.calls[0].body[4], router.calls[0].body[5]
        assert body == "<b>Rock & Roll</b> ?"  # shown as text: escaping would show "&amp;"
        assert actions == []

    def test_close_notification(self) -> None:
        backend, router = dbus_backend({"body"})
        backend.close(41)
        assert router.calls[0].header.fields[HeaderFields.member] == "CloseNotification"
        assert router.calls[0].body == (41,)

    def test_no_session_bus_is_a_notification_error(self) -> None:
        with pytest.raises(NotificationError, match="no D-Bus session bus"):
            session_bus_address({})
        with pytest.raises(NotificationError, match="cannot reach"):
            DBusNotifyBackend.connect(address="unix:path=/nonexistent/bus")


def test_buttons_follow_the_note() -> None:
    done = Notification("Download finished", category="transfer.complete", folder_of="@@x\\Album\\a.flac")
    assert note_actions(done, "http://slskd:5030", "/music").buttons() == [
        ("default", "Open slskd"), ("open-folder", "Open folder"), ("show-slskd", "Show in slskd")]
    assert note_actions(done, "http://slskd:5030", "/music").folder == "/music/Album"
    assert [k for k, _ in note_actions(done, "http://slskd:5030", None).buttons()] == ["default", "show-slskd"]
    failed = Notification("Download failed", category="transfer.error", retry_ids=("1",))
    assert [k for k, _ in note_actions(failed, "http://s", "/m").buttons()] == ["default", "retry", "show-slskd"]
    assert [k for k, _ in note_actions(Notification("Connection lost"), "http://s", "/m").buttons()] == ["default"]


# --------------------------------------------------------------------------- the desktop notifier


class Daemon:
    """A backend that numbers notes like a daemon and records replaces_id and buttons."""

    name = "daemon"
    markup = False

    def __init__(self, replaces: bool = True) -> None:
        self.replaces = replaces
        self.sent: list[tuple[Notification, int, list[tuple[str, str]]]] = []
        self.closed: list[int] = []
        self.next_id = 100

    def send(self, note: Notification, replaces_id: int = 0, actions: Any = ()) -> int:
        self.sent.append((note, replaces_id, list(actions)))
        if replaces_id:
            return replaces_id
        self.next_id += 1
        return self.next_id

    def close(self, nid: int) -> None:
        self.closed.append(nid)


class Host:
    """The agent as the notifier sees it: a pool that only queues, retry, state, poll time."""

    def __init__(self, polled_at: datetime | None, active: tuple[Transfer, ...] = ()) -> None:
        self.polled_at = polled_at
        self.queued: list[Callable[[], object]] = []
        self.retried: list[tuple[str, ...]] = []
        self._state = AgentState(web_url="http://slskd.local:5030", download_dir="/music", active=active)

    def submit(self, fn: Callable[[], object]) -> None:
        self.queued.append(fn)

    def retry(self, ids: Collection[str] | None = None) -> int:
        self.retried.append(tuple(ids or ()))
        return len(ids or ())

    def state(self) -> AgentState:
        return self._state


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def notifier(backend: Any, host: Host | None, now: datetime = at(0)) -> DesktopNotifier:
    return DesktopNotifier(NotificationRules(batch_window=0, max_per_minute=100), backend=backend,
                           host=host, clock=lambda: now)


class TestDesktopNotifier:
    def test_album_updates_replace_the_shown_note_then_forget_it(self) -> None:
        daemon, host = Daemon(), Host(polled_at=at(-1))
        n = notifier(daemon, host)
        try:
            n.notify([ev(EventType.ADDED, f"{i}.flac") for i in range(3)])
            for i in range(3):
                n.notify([ev(EventType.COMPLETED, f"{i}.flac")])
                assert wait_for(lambda: len(daemon.sent) == i + 1)
            n.notify([ev(EventType.ADDED, "x.flac"), ev(EventType.ADDED, "y.flac")])
            n.notify([ev(EventType.COMPLETED, "x.flac")])
            assert wait_for(lambda: len(daemon.sent) == 4)
        finally:
            n.close()
        assert [(s[0].title, s[1]) for s in daemon.sent] == [
            ("Tray Album — 1 of 3", 0), ("Tray Album — 2 of 3", 101), ("Tray Album — 3 tracks downloaded", 101),
            ("Tray Album — 1 of 2", 0)]

    def test_without_in_place_updates_an_album_is_shown_once_finished(self) -> None:
        daemon = Daemon(replaces=False)
        n = notifier(daemon, Host(polled_at=at(-1)))
        n.notify([ev(EventType.ADDED, f"{i}.flac") for i in range(3)])
        for i in range(3):
            n.notify([ev(EventType.COMPLETED, f"{i}.flac")])
            time.sleep(0.05)
        n.close()
        assert [s[0].title for s in daemon.sent] == ["Tray Album — 3 tracks downloaded"]

    def test_retry_button_runs_on_the_pool_with_the_failed_ids(self) -> None:
        daemon, host = Daemon(), Host(polled_at=at(-1))
        n = notifier(daemon, host)
        n.notify([ev(EventType.FAILED, "a.flac", reason="rejected", tid="t-1")])
        assert wait_for(lambda: daemon.sent)
        note, _, buttons = daemon.sent[0]
        assert [k for k, _ in buttons] == ["default", "retry", "show-slskd"]
        n._on_action(101, "retry")  # what the D-Bus listener thread calls
        assert host.retried == [] and len(host.queued) == 1  # queued, not run on the listener thread
        host.queued[0]()
        assert host.retried == [("t-1",)]
        n._on_action(999, "retry")  # not one of ours
        assert len(host.queued) == 1
        n.close()

    def test_open_folder_button_opens_the_local_album_folder(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import trayagent.desktop.openers as openers

        opened: list[tuple[str, str | None]] = []
        monkeypatch.setattr(openers, "open_folder", lambda path, fallback=None: opened.append((path, fallback)))
        daemon, host = Daemon(), Host(polled_at=at(-1))
        n = notifier(daemon, host)
        n.notify([ev(EventType.COMPLETED, "a.flac")])
        assert wait_for(lambda: daemon.sent)
        n._on_action(101, "open-folder")
        host.queued[0]()
        assert opened == [("/music/Tray Album", "/music")]
        n.close()

    def test_events_before_the_first_poll_become_one_away_summary(self) -> None:
        daemon, host = Daemon(), Host(polled_at=None)
        n = notifier(daemon, host)
        n.notify([ev(EventType.COMPLETED, "a.flac", folder=f"@@x\\F{i}") for i in range(5)])
        n.close()
        assert [s[0].title for s in daemon.sent] == ["While you were away: 5 downloaded"]

    def test_after_a_long_gap_between_polls_events_are_away_too(self) -> None:
        slept, awake = Daemon(), Daemon()
        for daemon, last_poll in ((slept, at(-3600)), (awake, at(-2))):
            n = notifier(daemon, Host(polled_at=last_poll))
            n.notify([ev(EventType.COMPLETED, "a.flac", folder=f"@@x\\F{i}") for i in range(3)])
            n.close()
        assert [s[0].kind for s in slept.sent] == ["away"]
        assert [s[0].title for s in awake.sent] == ["Download finished"] * 3

    def test_running_downloads_from_before_a_restart_count_in_the_album(self) -> None:
        active = tuple(Transfer(f"id-{i}.flac", "bob", f"{ALBUM}\\{i}.flac", "InProgress") for i in range(4))
        daemon = Daemon()
        n = notifier(daemon, Host(polled_at=at(-1), active=active))
        n.notify([ev(EventType.COMPLETED, "0.flac")])
        n.close()
        assert daemon.sent[0][0].title == "Tray Album — 1 of 4"

    def test_a_failing_backend_falls_to_the_next_which_shows_the_same_note(
            self, caplog: pytest.LogCaptureFixture) -> None:
        class Broken(Daemon):
            name = "D-Bus (gone)"

            def send(self, note: Notification, replaces_id: int = 0, actions: Any = ()) -> int:
                raise NotificationError("org.freedesktop.DBus.Error.ServiceUnknown")

        def unstartable() -> Any:
            raise NotificationError("cannot reach the D-Bus session bus")

        second = Daemon()
        for first in (Broken, unstartable):
            second.sent.clear()
            n = DesktopNotifier(NotificationRules(batch_window=0), backends=[first, lambda: second],
                                clock=lambda: at(0))
            with caplog.at_level(logging.WARNING):
                n.notify([ev(EventType.COMPLETED, "a.flac")])
                assert wait_for(lambda: second.sent)
            n.close()
            assert [s[0].title for s in second.sent] == ["Download finished"]
        assert any("falling back" in r.getMessage() for r in caplog.records)

    def test_host_failures_never_refuse_events(self) -> None:
        class BadHost(Host):
            @property  # type: ignore[override]
            def polled_at(self) -> datetime:
                raise RuntimeError("boom")

            @polled_at.setter
            def polled_at(self, value: Any) -> None:
                pass

            def state(self) -> AgentState:
                raise RuntimeError("boom")

        daemon = Daemon()
        n = notifier(daemon, BadHost(None))
        n.notify([ev(EventType.COMPLETED, "a.flac")])
        n.close()
        assert [s[0].title for s in daemon.sent] == ["Download finished"]


def test_agent_retry_reenqueues_only_the_given_ids(sim: Any, tmp_path: Path, monkeypatch: Any) -> None:
    from conftest import API_KEY
    from agentproc import write_config

    from trayagent.agent import Agent
    from trayagent.config import load_config

    monkeypatch.setenv("TRAYAGENT_STATE_DIR", str(tmp_path / "state"))
    agent = Agent(load_config(write_config(tmp_path / "c.toml", sim.url, API_KEY), env={}))
    try:
        a = sim.add_download("carol", "@@x\\Album\\01.flac", 100, state="InProgress")
        b = sim.add_download("carol", "@@x\\Album\\02.flac", 200, state="InProgress")
        assert agent.poll_once() and agent.polled_at is not None
        sim.set_state(a, "Completed, Rejected")
        sim.set_state(b, "Completed, Rejected")
        assert agent.poll_once()
        assert agent.retry([b]) == 1
        names = [t["filename"] for t in sim.transfers() if t["id"] not in (a, b)]
        assert names == ["@@x\\Album\\02.flac"]
        assert agent.retry([b]) == 0  # once, not on every click
    finally:
        agent.stop()


def test_after_every_backend_failed_the_ladder_is_tried_again() -> None:
    daemon, attempts = Daemon(), []

    def flaky() -> Any:  # the daemon is not up at first, then it is
        attempts.append(1)
        if len(attempts) == 1:
            raise NotificationError("org.freedesktop.DBus.Error.ServiceUnknown")
        return daemon

    n = DesktopNotifier(NotificationRules(batch_window=0), backends=[flaky], clock=lambda: at(0))
    n.notify([ev(EventType.COMPLETED, "a.flac")])
    assert wait_for(lambda: n.backend_name() == "none") and daemon.sent == []
    n.notify([ev(EventType.COMPLETED, "b.flac", folder="@@x\\Other")])
    time.sleep(0.1)
    assert daemon.sent == []  # not before the retry interval
    n.retry_ladder_after = 0
    n.notify([ev(EventType.COMPLETED, "c.flac", folder="@@x\\Third")])
    assert wait_for(lambda: daemon.sent)
    n.close()
    assert [s[0].body for s in daemon.sent] == ["c — Third"]


def test_notify_send_gets_text_its_locale_can_encode(monkeypatch: pytest.MonkeyPatch) -> None:
    from trayagent.desktop import notify_backends as B

    monkeypatch.setattr(B.sys, "getfilesystemencoding", lambda: "latin-1")
    argv = B.NotifySendBackend("notify-send").command(Notification("坂本龍一 — Ça", "\udcff café"))
    assert argv[-2:] == ["???? ? Ça", "? café"]
    for arg in argv:
        arg.encode("latin-1")
