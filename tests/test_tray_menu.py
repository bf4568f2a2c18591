"""Tray menu model, pystray wiring, redraw throttling and actions: a fake agent and icon, no display."""

from __future__ import annotations

import math
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

from trayagent.config import Config, SlskdConfig, SyncConfig, TrayConfig
from trayagent.core.model import AgentState, Finished, Kind, Progress
from trayagent.desktop import menu as T
from trayagent.desktop import openers
from trayagent.desktop.menu import ItemSpec, MenuModel, recent_label
from trayagent.desktop.openers import local_folder
from trayagent.desktop.tray import TrayApp
from trayagent.desktop.traybackend import to_pystray
from trayagent.desktop.trayview import TrayView

UTC = timezone.utc
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def finished(name: str, outcome: Kind = Kind.SUCCEEDED, reason: str | None = None,
             folder: str = "@@abc\\Music\\Artist\\Album") -> Finished:
    return Finished(transfer_id=name, username="bob", filename=f"{folder}\\{name}", size=1, outcome=outcome,
                    reason=reason, state="Completed", error=None, first_seen=NOW, finished_at=NOW)


def st(**kw: Any) -> AgentState:
    kw.setdefault("connected", True)
    kw.setdefault("logged_in", True)
    return AgentState(**kw)


def texts(items: tuple[ItemSpec, ...]) -> list[str]:
    return [i.text for i in items if not i.separator]


# --------------------------------------------------------------------------- model


class TestMenuModel:
    def test_idle_layout(self) -> None:
        m = MenuModel.build(st(), now=NOW)
        assert texts(m.items) == ["Idle", "Open slskd", "Sync now", "Sync playlists", "Clear finished",
                                  "Retry failed", "Recent", "Pause notifications", "Pause for 1 hour", "Quit"]
        assert m.find(T.SYNC_PLAYLISTS).enabled is False, "no playlists configured"  # type: ignore[union-attr]
        status = m.items[0]
        assert status.enabled is False and status.action is None
        assert m.default is not None and m.default.action == T.OPEN_SLSKD
        assert m.find(T.RETRY).enabled is False  # type: ignore[union-attr]
        recent = next(i for i in m.items if i.text == "Recent")
        assert recent.submenu is not None and [i.enabled for i in recent.submenu] == [False]
        assert m.find(T.TOGGLE_PAUSE).checked is False  # type: ignore[union-attr]

    def test_status_line_is_the_tooltip(self) -> None:
        m = MenuModel.build(st(progress=Progress(downloading=3, queued=2, bytes_total=100, bytes_done=42,
                                                 speed=1_200_000)), now=NOW)
        assert m.items[0].text == "3 downloading · 42% · 1.2 MB/s · 2 queued"
        assert MenuModel.build(AgentState(connected=False), now=NOW).items[0].text == "slskd unreachable"

    def test_recent_labels_and_retry(self) -> None:
        recent = (
            finished("01 - Song.flac"),
            finished("02 - Other.flac", Kind.FAILED, "timedout"),
            finished("03 - Gone.flac", Kind.CANCELLED),
        )
        m = MenuModel.build(st(recent=recent), now=NOW)
        sub = next(i for i in m.items if i.text == "Recent").submenu
        assert sub is not None
        assert [i.text for i in sub] == ["✓ Song — Artist", "✗ Other (timed out)", "✗ Gone (cancelled)"]
        assert m.find(T.RETRY).enabled is True  # type: ignore[union-attr]
        assert all(i.enabled is False for i in sub)  # no download_dir: nothing to open

    def test_recent_capped_at_ten(self) -> None:
        recent = tuple(finished(f"{i:02d}.flac") for i in range(25))
        sub = next(i for i in MenuModel.build(st(recent=recent), now=NOW).items if i.text == "Recent").submenu
        assert sub is not None and len(sub) == 10

    def test_recent_opens_local_folder_when_download_dir_set(self, tmp_path: Any) -> None:
        m = MenuModel.build(st(recent=(finished("01.flac"),)), download_dir=str(tmp_path), now=NOW)
        item = m.find(T.OPEN_FOLDER)
        assert item is not None and item.enabled
        assert item.arg == os.path.join(str(tmp_path), "Album")

    def test_download_dir_from_state_when_config_has_none(self, tmp_path: Any) -> None:
        m = MenuModel.build(st(recent=(finished("01.flac"),), download_dir=str(tmp_path)), now=NOW)
        assert m.find(T.OPEN_FOLDER).arg == os.path.join(str(tmp_path), "Album")  # type: ignore[union-attr]

    def test_hostile_recent_names(self, tmp_path: Any) -> None:
        recent = (
            finished("-\u202e" + "x" * 5000 + "\n.flac", folder="@@a\\.."),
            finished("<b>&<i>.flac", Kind.FAILED, "rejected", folder="@@a\\ok"),
        )
        m = MenuModel.build(st(recent=recent), download_dir=str(tmp_path), now=NOW)
        sub = next(i for i in m.items if i.text == "Recent").submenu
        assert sub is not None
        first, second = sub
        assert len(first.text) <= 62 and "\u202e" not in first.text and "\n" not in first.text
        assert first.enabled is False and first.arg is None  # '..' is never joined to download_dir
        assert second.text == "✗ <b>&<i> (rejected)"  # plain-text labels: shown as is

    def test_pause_flags(self) -> None:
        paused = MenuModel.build(st(), paused=True, now=NOW)
        assert paused.find(T.TOGGLE_PAUSE).checked is True  # type: ignore[union-attr]
        assert paused.items[0].text == "Idle · notifications paused"
        until = MenuModel.build(st(), paused_until=NOW + timedelta(hours=1), now=NOW)
        item = until.find(T.TOGGLE_PAUSE)
        assert item is not None and item.checked is True and item.text.startswith("Notifications paused until ")
        expired = MenuModel.build(st(), paused_until=NOW - timedelta(seconds=1), now=NOW)
        assert expired.find(T.TOGGLE_PAUSE).checked is False  # type: ignore[union-attr]

    def test_models_compare_by_content(self) -> None:
        assert MenuModel.build(st(), now=NOW) == MenuModel.build(st(), now=NOW)
        assert MenuModel.build(st(), now=NOW) != MenuModel.build(st(failed_unseen=1), now=NOW)


def test_local_folder_rules(tmp_path: Any) -> None:
    assert local_folder(None, "@@a\\Album\\x.flac") is None
    assert local_folder(str(tmp_path), "x.flac") is None  # no remote folder
    assert local_folder(str(tmp_path), "@@a\\..\\x.flac") is None
    assert local_folder(str(tmp_path), "@@a\\bad\x07name\\x.flac") is None
    assert local_folder(str(tmp_path), "@@a/b/Album/x.flac") == os.path.join(str(tmp_path), "Album")


def test_recent_label_success_without_artist() -> None:
    assert recent_label(finished("song.mp3", folder="")) == "✓ song"


# --------------------------------------------------------------------------- pystray wiring


@pytest.fixture
def ps(monkeypatch: pytest.MonkeyPatch) -> Any:
    """pystray with its dummy backend (no display); Menu/MenuItem are the real classes."""
    monkeypatch.setenv("PYSTRAY_BACKEND", "dummy")
    try:
        import pystray
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"pystray unavailable: {exc}")
    return pystray


def test_to_pystray_builds_real_items(ps: Any) -> None:
    fired: list[tuple[str, str | None]] = []
    model = MenuModel.build(st(recent=(finished("01.flac", Kind.FAILED, "rejected"),)),
                            paused=True, download_dir="/music", now=NOW)
    menu = ps.Menu(*to_pystray(model.items, lambda a, arg: fired.append((a, arg)), ps))
    items = list(menu)
    by_text = {i.text: i for i in items}
    assert by_text["Retry failed"].enabled is True
    assert items[0].enabled is False
    assert by_text["Pause notifications"].checked is True
    assert by_text["Sync now"].checked is None
    assert by_text["Open slskd"].default is True
    menu(None)  # what a left-click does on backends with a default action
    assert fired == [(T.OPEN_SLSKD, None)]
    recent = by_text["Recent"].submenu
    [entry] = list(recent)
    entry(None)
    assert fired[-1] == (T.OPEN_FOLDER, os.path.join(os.path.abspath("/music"), "Album"))


def test_to_pystray_escapes_ampersand_for_win32(ps: Any) -> None:
    items = to_pystray((ItemSpec("Rock & Roll", "x"),), lambda a, b: None, ps, escape_ampersand=True)
    assert items[0].text == "Rock && Roll"


# --------------------------------------------------------------------------- TrayApp with fakes


class FakeAgent:
    def __init__(self, state: AgentState | None = None) -> None:
        self._state = state or st()
        self.subs: list[Callable[[AgentState], None]] = []
        self.submitted: list[Callable[[], object]] = []
        self.calls: list[str] = []
        self.log: list[str] = []

    def state(self) -> AgentState:
        return self._state

    def subscribe(self, cb: Callable[[AgentState], None]) -> None:
        self.subs.append(cb)

    def publish(self, state: AgentState) -> None:
        self._state = state
        for cb in self.subs:
            cb(state)

    def submit(self, fn: Callable[[], object]) -> None:
        self.submitted.append(fn)

    def drain(self) -> None:
        while self.submitted:
            self.submitted.pop(0)()

    def poll_now(self) -> None:
        self.calls.append("poll_now")

    def clear_finished(self) -> int:
        self.calls.append("clear_finished")
        return 2

    def retry_failed(self) -> int:
        self.calls.append("retry_failed")
        return 1

    def mark_failures_seen(self) -> None:
        self.calls.append("seen")

    def start(self) -> None:
        self.log.append("agent.start")

    def stop(self) -> None:
        self.log.append("agent.stop")


class FakeBackend:
    """A TrayBackend that records what it was asked to show; ``fail`` makes a step raise."""

    has_menu = True

    def __init__(self, name: str = "fake", log: list[str] | None = None, fail: str = "") -> None:
        self.name = name
        self.fail = fail
        self.log = log if log is not None else []
        self.views: list[TrayView] = []
        self.updates_with_views: list[tuple[TrayView, tuple[bool, bool, bool]]] = []
        self.on_action: Callable[[str, str | None], None] | None = None
        self.stopped = threading.Event()

    @property
    def updates(self) -> list[tuple[bool, bool, bool]]:
        return [u for _, u in self.updates_with_views]

    @property
    def icon_sets(self) -> int:
        return sum(1 for u in self.updates if u[0])

    @property
    def titles(self) -> list[str]:
        return [v.title for v, u in self.updates_with_views if u[1]]

    @property
    def menu_updates(self) -> int:
        return sum(1 for u in self.updates if u[2])

    def start(self, view: TrayView, on_action: Callable[[str, str | None], None]) -> None:
        if self.fail == "start":
            raise RuntimeError(f"{self.name} cannot start")
        self.views.append(view)
        self.on_action = on_action
        self.stopped.clear()  # the ladder may start the same kind again
        self.log.append(f"{self.name}.start")

    def run(self, ready: Callable[[], None]) -> None:
        if self.fail == "run":
            raise UnicodeEncodeError("latin-1", "…", 0, 1, "ordinal not in range(256)")
        if self.fail != "never_shown":  # pystray's XEmbed icon that never docks never calls back
            ready()
        self.stopped.wait(10)

    def update(self, view: TrayView, *, icon: bool, title: bool, menu: bool) -> None:
        if self.fail == "update":
            raise RuntimeError(f"{self.name} cannot update")
        self.views.append(view)
        self.updates_with_views.append((view, (icon, title, menu)))

    def stop(self) -> None:
        self.log.append(f"{self.name}.stop")
        self.stopped.set()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class PauseRecorder:
    def __init__(self) -> None:
        self.calls: list[tuple[bool, datetime | None]] = []

    def set_paused(self, paused: bool, until: datetime | None = None) -> None:
        self.calls.append((paused, until))


def make_app(agent: FakeAgent, *backends: FakeBackend, problems: dict[str, str] | None = None,
             **kw: Any) -> tuple[TrayApp, dict[str, FakeBackend]]:
    made = {b.name: b for b in backends} or {"fake": FakeBackend(log=agent.log)}
    config = Config(SlskdConfig(url="http://localhost:5030"))
    app = TrayApp(agent, config, backends=list(made), factory=made.__getitem__,
                  probe=lambda name: (problems or {}).get(name), **kw)
    return app, made


def attach(app: TrayApp, backend: FakeBackend) -> FakeBackend:
    """Make ``backend`` the running one without run(): for redraw tests on the caller's thread."""
    app._backend = backend
    return backend


def start_app(app: TrayApp) -> threading.Thread:
    th = threading.Thread(target=app.run, daemon=True)
    th.start()
    return th


def settle(app: TrayApp) -> None:
    """Wait until the redraw asked for has run (the timer fired and no refresh is in flight)."""
    assert wait_for(lambda: app._timer is None and not app._refresh_lock.locked())


def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


class TestTrayApp:
    def test_ready_starts_agent_and_quit_stops_agent_then_icon(self) -> None:
        agent = FakeAgent()
        app, made = make_app(agent)
        th = start_app(app)
        assert wait_for(lambda: "agent.start" in agent.log)
        backend = made["fake"]
        assert backend.views[0].title == "Idle" and app.backend_name == "fake"
        app._on_menu(T.QUIT)
        th.join(5)
        assert not th.is_alive()
        assert agent.log == ["fake.start", "agent.start", "agent.stop", "fake.stop"]

    def test_redraw_only_when_appearance_changes_and_at_most_once_a_second(self) -> None:
        agent = FakeAgent()
        clock = Clock()
        app, made = make_app(agent, monotonic=clock)
        icon = attach(app, made["fake"])
        agent.subscribe(app._on_state)

        def active(f: float) -> AgentState:
            return st(progress=Progress(downloading=1, bytes_total=10_000, bytes_done=int(f * 10_000)))

        agent.publish(active(0.50))
        settle(app)
        assert icon.icon_sets == 1 and icon.titles == ["1 downloading · 50%"]
        clock.t += 2
        agent.publish(active(0.501))  # same ring step, same tooltip: nothing to do
        settle(app)
        assert icon.icon_sets == 1 and len(icon.titles) == 1 and icon.menu_updates == 1
        clock.t += 2
        agent.publish(active(0.70))
        settle(app)
        assert icon.icon_sets == 2
        # three changes within the same second: coalesced into one timer-driven redraw
        app.REDRAW_INTERVAL = 0.3
        clock.t += 0.1
        agent.publish(active(0.80))
        agent.publish(active(0.85))
        agent.publish(active(0.95))
        assert icon.icon_sets == 2
        assert wait_for(lambda: icon.icon_sets == 3, 3)
        time.sleep(0.4)
        assert icon.icon_sets == 3
        assert icon.titles[-1] == "1 downloading · 95%"

    def test_menu_updates_when_model_changes(self) -> None:
        agent = FakeAgent()
        clock = Clock()
        app, made = make_app(agent, monotonic=clock)
        icon = attach(app, made["fake"])
        agent.subscribe(app._on_state)
        agent.publish(st())
        settle(app)
        before = icon.menu_updates
        clock.t += 5
        agent.publish(st(recent=(finished("a.flac"),)))  # tooltip/icon unchanged, menu changed
        settle(app)
        assert icon.menu_updates == before + 1
        assert icon.updates[-1] == (False, False, True)

    def test_actions_go_through_submit_and_mark_failures_seen(self, tmp_path: Any) -> None:
        agent = FakeAgent()
        app, _ = make_app(agent)
        for action in (T.SYNC, T.CLEAR, T.RETRY):
            app._on_menu(action)
        assert agent.calls == []  # nothing ran on the UI thread
        agent.drain()
        assert agent.calls == ["seen", "poll_now", "seen", "clear_finished", "seen", "retry_failed"]

    def test_open_slskd_uses_web_url_or_url(self, monkeypatch: pytest.MonkeyPatch) -> None:
        opened: list[str] = []
        monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
        agent = FakeAgent()
        app, _ = make_app(agent)
        app._on_menu(T.OPEN_SLSKD)
        assert opened == []
        agent.drain()
        assert opened == ["http://localhost:5030"]
        assert "seen" in agent.calls

    def test_open_url_refuses_non_http(self, monkeypatch: pytest.MonkeyPatch) -> None:
        opened: list[str] = []
        monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
        assert openers.open_url("file:///etc/passwd") is False
        assert openers.open_url("javascript:alert(1)") is False
        assert openers.open_url("https://slskd.example/") is True
        assert opened == ["https://slskd.example/"]

    def test_pause_toggles_and_reaches_notifier(self) -> None:
        agent = FakeAgent()
        rec = PauseRecorder()
        wall = [datetime(2024, 3, 1, 12, 0).astimezone()]
        app, made = make_app(agent, notifier=rec, wall=lambda: wall[0])
        icon = attach(app, made["fake"])
        app._on_menu(T.TOGGLE_PAUSE)
        assert rec.calls[-1] == (True, None) and app.paused == (True, None)
        assert wait_for(lambda: icon.titles[-1:] == ["Idle · notifications paused"])
        app._on_menu(T.TOGGLE_PAUSE)
        assert rec.calls[-1] == (False, None) and app.paused == (False, None)
        app._on_menu(T.PAUSE_HOUR_ACTION)
        until = wall[0] + timedelta(hours=1)
        assert rec.calls[-1] == (False, until) and app.paused == (True, until)
        wall[0] = until + timedelta(seconds=1)  # the hour is over
        assert app.paused == (False, None)
        assert rec.calls[-1] == (False, None)

    def test_never_reads_the_agents_notifiers(self) -> None:
        agent = FakeAgent()
        rec = PauseRecorder()
        agent._notifiers = [rec]  # type: ignore[attr-defined]
        agent.notifiers = [rec]  # type: ignore[attr-defined]
        app, _ = make_app(agent)
        app.set_pause(True)
        assert rec.calls == [], "only the notifier passed in is paused"

    def test_stop_is_idempotent_and_non_blocking(self) -> None:
        agent = FakeAgent()
        app, made = make_app(agent)
        attach(app, made["fake"])
        app.stop()
        app.stop()
        assert wait_for(lambda: "fake.stop" in agent.log)
        assert agent.log.count("agent.stop") == 1


class TestLadder:
    """TrayApp walks the backends: whatever fails is logged once and the next one is used."""

    def test_unavailable_backends_are_skipped(self, caplog: pytest.LogCaptureFixture) -> None:
        agent = FakeAgent()
        sni, gtk = FakeBackend("sni", agent.log), FakeBackend("gtk", agent.log)
        app, _ = make_app(agent, sni, gtk, problems={"sni": "no StatusNotifierWatcher"})
        with caplog.at_level("INFO", logger="trayagent.desktop.tray"):
            th = start_app(app)
            assert wait_for(lambda: "agent.start" in agent.log)
        assert app.backend_name == "gtk" and sni.views == []
        assert "tray: sni is not available: no StatusNotifierWatcher" in caplog.text
        app.stop()
        th.join(5)
        assert agent.log == ["gtk.start", "agent.start", "agent.stop", "gtk.stop"]

    def test_a_backend_that_fails_to_start_or_run_falls_to_the_next(self, caplog: pytest.LogCaptureFixture) -> None:
        agent = FakeAgent()
        sni = FakeBackend("sni", agent.log, fail="start")
        xorg = FakeBackend("xorg", agent.log, fail="run")  # what pystray's xorg did with "…"
        gtk = FakeBackend("gtk", agent.log)
        app, _ = make_app(agent, sni, xorg, gtk)
        th = start_app(app)
        assert wait_for(lambda: app.backend_name == "gtk" and "agent.start" in agent.log)
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("the sni tray could not start (sni cannot start)" in w for w in warnings), warnings
        assert any("the xorg tray failed" in w and "latin-1" in w for w in warnings), warnings
        app.stop()
        th.join(5)
        assert not th.is_alive() and agent.log.count("agent.start") == 1

    def test_an_icon_that_never_appears_does_not_hold_up_polling(self, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
        import trayagent.desktop.tray as tray

        monkeypatch.setattr(tray, "READY_GRACE", 0.2)
        agent = FakeAgent()
        xorg = FakeBackend("xorg", agent.log, fail="never_shown")
        app, _ = make_app(agent, xorg)
        th = start_app(app)
        assert wait_for(lambda: "agent.start" in agent.log)
        assert "the xorg icon has not appeared" in caplog.text
        app.stop()
        th.join(5)
        assert agent.log.count("agent.start") == 1 and not th.is_alive()

    def test_a_failed_update_moves_on_and_the_next_backend_shows_the_current_state(self) -> None:
        agent = FakeAgent()
        sni = FakeBackend("sni", agent.log)
        gtk = FakeBackend("gtk", agent.log)
        app, _ = make_app(agent, sni, gtk)
        agent.subscribe(app._on_state)
        th = start_app(app)
        assert wait_for(lambda: app.backend_name == "sni" and "agent.start" in agent.log)
        sni.fail = "update"
        app._last_redraw = -math.inf
        agent.publish(st(failed_unseen=2))
        assert wait_for(lambda: app.backend_name == "gtk")
        assert "sni.stop" in agent.log
        assert gtk.views[0].key[2] is True, "the new tray starts from the current state (the badge)"
        assert agent.log.count("agent.start") == 1, "polling was never interrupted"
        app.stop()
        th.join(5)

    def test_a_hung_backend_never_blocks_the_agent_and_gets_one_fresh_try(self) -> None:
        agent = FakeAgent()
        clock = Clock()
        release = threading.Event()
        sni = FakeBackend("sni", agent.log)
        gtk = FakeBackend("gtk", agent.log)
        app, _ = make_app(agent, sni, gtk, monotonic=clock)
        agent.subscribe(app._on_state)
        th = start_app(app)
        assert wait_for(lambda: app.backend_name == "sni" and "agent.start" in agent.log)
        settle(app)
        sni.update = lambda view, **kw: release.wait(30)  # type: ignore[method-assign]
        clock.t += 5
        publisher = threading.Thread(target=agent.publish, args=(st(failed_unseen=1),))
        publisher.start()
        publisher.join(2)
        assert not publisher.is_alive(), "the agent's thread returned while the tray hangs"
        assert wait_for(lambda: app._updating_since is not None)
        del sni.update  # the fresh icon answers (pystray's XEmbed hang is a one-off race)
        clock.t += app.UPDATE_TIMEOUT + 1
        agent.publish(st(failed_unseen=2))  # the next state notices the hang
        assert wait_for(lambda: agent.log.count("sni.start") == 2 and app.backend_name == "sni")
        assert wait_for(lambda: sni.views and sni.views[-1].title == "Idle · 2 failed")
        assert gtk.views == [] and agent.log.count("agent.start") == 1
        release.set()
        app.stop()
        th.join(5)
        assert not th.is_alive()

    def test_no_backend_at_all_still_runs_the_agent_until_stopped(self, caplog: pytest.LogCaptureFixture) -> None:
        agent = FakeAgent()
        app, _ = make_app(agent, FakeBackend("sni", agent.log, fail="start"), problems={})
        th = start_app(app)
        assert wait_for(lambda: "agent.start" in agent.log)
        assert app.backend_name == "none"
        assert "no tray icon: desktop notifications and the JSON stream go on" in caplog.text
        app.stop()
        th.join(5)
        assert not th.is_alive() and agent.log[-1] == "agent.stop"


def test_sync_playlists_item_follows_config_and_progress() -> None:
    idle = MenuModel.build(st(), now=NOW, playlists=True)
    assert idle.find(T.SYNC_PLAYLISTS).enabled is True  # type: ignore[union-attr]
    running = MenuModel.build(st(sync_status="Sync 3/10"), now=NOW, playlists=True)
    item = running.find(T.SYNC_PLAYLISTS)
    assert item is not None and item.text == "Sync 3/10" and item.enabled is False


def test_tray_reads_its_settings_from_the_typed_config_sections(tmp_path: Any) -> None:
    """[tray] backend picks the ladder, [sync] playlists enable the item, [slskd] gives URL and folder."""
    config = Config(SlskdConfig(url="http://localhost:5030", web_url="https://slskd.example/",
                                download_dir=str(tmp_path)),
                    sync=SyncConfig(playlists=("mix.m3u",)), tray=TrayConfig(backend="none"))
    agent = FakeAgent(st(recent=(finished("01 Song.flac"),)))
    app = TrayApp(agent, config)
    assert app._rungs == ()
    model = app._build_model()
    assert model.find(T.SYNC_PLAYLISTS).enabled is True  # type: ignore[union-attr]
    assert model.find(T.OPEN_FOLDER).arg == str(tmp_path / "Album")  # type: ignore[union-attr]
    assert app._web_url() == "https://slskd.example/"
