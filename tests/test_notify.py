"""Notification rules (pure composer with an injected clock), sanitising, and the desktop sink."""

from __future__ import annotations

import io
import json
import logging
import os
import stat
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from trayagent.config import Config, NotificationsConfig, SlskdConfig
from trayagent.core.model import Event, EventType
from trayagent.desktop.composer import NotificationComposer, NotificationRules
from trayagent.desktop.desktop_notifier import DesktopNotifier
from trayagent.desktop.labels import BODY_LIMIT, TITLE_LIMIT, escape_markup, failure_text, sanitize, track_label
from trayagent.desktop.notification import Notification, NotificationError
from trayagent.desktop.notify_backends import MissingBackend, NotifySendBackend, choose_backend
from trayagent.notify import ConsoleNotifier, JsonLinesNotifier, NullNotifier, make_notifier

T0 = datetime(2024, 3, 1, 12, 0, 0)  # naive: local wall-clock time
ALBUM = "@@abc\\Music\\Artist\\Album"


def ev(kind: EventType, name: str = "01 - Song.flac", *, user: str = "bob", folder: str = ALBUM,
       reason: str | None = None, done: int = 0, error: str | None = None, status: str | None = None) -> Event:
    return Event(kind, T0, id=name, username=user, filename=f"{folder}\\{name}" if folder else name,
                 state="Completed, Succeeded", reason=reason, bytes_transferred=done, error=error, status=status)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def composer(**rules: object) -> NotificationComposer:
    return NotificationComposer(NotificationRules(**rules))  # type: ignore[arg-type]


def run(c: NotificationComposer, until: float, step: float = 0.5, start: float = 0.0) -> list[tuple[float, Notification]]:
    """Advance the fake clock, collecting what comes due and when."""
    out = []
    k = 0
    while (t := round(start + k * step, 6)) <= until:
        out += [(t, n) for n in c.due(at(t))]
        k += 1
    return out


# --------------------------------------------------------------------------- sanitising


class TestSanitize:
    def test_leading_dash_cannot_be_an_option(self) -> None:
        assert sanitize("-u critical", 50) == "\u2010u critical"
        assert not sanitize("--help", 50).startswith("-")
        assert not sanitize("  \n-rf", 50).startswith("-")  # after whitespace is stripped

    def test_markup_is_kept_as_text_and_escaped_separately(self) -> None:
        assert sanitize("<b>&</b>", 50) == "<b>&</b>"
        assert escape_markup("<b>&</b>") == "&lt;b&gt;&amp;&lt;/b&gt;"
        assert escape_markup("a &amp; b") == "a &amp;amp; b"  # no double-unescape tricks

    def test_control_and_c1_characters_removed(self) -> None:
        out = sanitize("a\x00b\x07c\x1bd\x9be\x7ff", 50)
        assert out == "abcdef"
        assert sanitize("line1\nline2\r\n\tline3", 50) == "line1 line2 line3"

    def test_bidi_overrides_and_isolates_removed(self) -> None:
        hostile = "song\u202egalf.exe\u2066x\u2069\u200e\u200f\u061c"
        out = sanitize(hostile, 100)
        assert out == "songgalf.exex"
        assert not any(ch in out for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")

    def test_long_text_capped_with_ellipsis(self) -> None:
        out = sanitize("x" * 5000, 100)
        assert len(out) == 100 and out.endswith("…")
        assert sanitize("short", 100) == "short"

    def test_whitespace_collapsed(self) -> None:
        assert sanitize("  a   \u2028 b  ", 10) == "a b"

    def test_track_label_from_hostile_name(self) -> None:
        name = "@@x\\-\u202eArtist\\Alb\x00um\\-01 <b>&</b>\n" + "y" * 5000 + ".flac"
        label = track_label(name, 80)
        assert len(label) <= 80
        assert "\n" not in label and "\x00" not in label and "\u202e" not in label
        assert not label.startswith("-")

    def test_track_label_layouts(self) -> None:
        assert track_label("@@abc\\Music\\Artist\\Album\\01 - Song.flac") == "Song — Artist"
        assert track_label("@@abc\\Artist - Album\\02. Other.mp3") == "Other — Artist"
        assert track_label("C:/share/Music/Album/03 Thing.ogg") == "Thing — Album"
        assert track_label("lonely.mp3") == "lonely"


class TestFailureWording:
    @pytest.mark.parametrize(
        "reason,done,error,text",
        [
            ("rejected", 0, None, "peer rejected the request"),
            ("timedout", 0, None, "timed out waiting in the peer's queue"),
            ("timedout", 1234, None, "timed out"),
            ("errored", 10, "Remote connection closed", "transfer error: Remote connection closed"),
            ("errored", 0, None, "transfer error"),
            ("aborted", 0, None, "aborted"),
            ("missing", 0, None, "disappeared from slskd"),
            ("unknown", 0, None, "failed"),
            (None, 0, None, "failed"),
        ],
    )
    def test_reason_in_words(self, reason: str | None, done: int, error: str | None, text: str) -> None:
        assert failure_text(reason, done, error) == text

    def test_error_text_is_sanitised(self) -> None:
        assert failure_text("errored", 0, "boom\n\u202eevil") == "transfer error: boom evil"


# --------------------------------------------------------------------------- composer


class TestComposer:
    def test_single_download_waits_for_batch_window(self) -> None:
        c = composer(batch_window=3)
        c.feed(ev(EventType.COMPLETED), at(0))
        assert c.due(at(2.9)) == []
        assert c.next_deadline(at(0)) == at(3)
        [n] = c.due(at(3))
        assert n.title == "Download finished"
        assert n.body == "Song — Artist"

    def test_added_and_started_never_notify(self) -> None:
        c = composer(batch_window=0)
        c.feed(ev(EventType.ADDED), at(0))
        c.feed(ev(EventType.STARTED), at(0))
        assert c.due(at(10)) == [] and c.next_deadline(at(10)) is None

    def test_same_peer_same_folder_merged(self) -> None:
        c = composer(batch_window=3, max_per_minute=6)
        for i in range(12):
            c.feed(ev(EventType.COMPLETED, f"{i:02d} - T.flac"), at(i * 0.5))  # trickle, each within 3 s
        got = run(c, 20)
        assert len(got) == 1
        t, n = got[0]
        assert n.title == "Album — 12 tracks downloaded"
        assert n.body == "from bob"
        assert t == pytest.approx(5.5 + 3)

    def test_mixed_outcomes_merged_with_reasons(self) -> None:
        c = composer(batch_window=3)
        for i in range(10):
            c.feed(ev(EventType.COMPLETED, f"{i:02d}.flac"), at(0))
        c.feed(ev(EventType.FAILED, "11.flac", reason="timedout"), at(1))
        c.feed(ev(EventType.FAILED, "12.flac", reason="timedout"), at(1))
        [(_, n)] = run(c, 10)
        assert n.title == "Album — 10 downloaded, 2 failed"
        assert "timed out waiting in the peer's queue" in n.body

    def test_different_peers_or_folders_are_separate(self) -> None:
        c = composer(batch_window=3)
        c.feed(ev(EventType.COMPLETED, "a.flac"), at(0))
        c.feed(ev(EventType.COMPLETED, "b.flac", user="alice"), at(0))
        c.feed(ev(EventType.COMPLETED, "c.flac", folder="@@abc\\Music\\Artist\\Other"), at(0))
        assert len(run(c, 10)) == 3

    def test_outside_window_not_merged(self) -> None:
        c = composer(batch_window=3)
        c.feed(ev(EventType.COMPLETED, "a.flac"), at(0))
        got = run(c, 9.5)
        c.feed(ev(EventType.COMPLETED, "b.flac"), at(10))
        got += run(c, 20, start=10)
        assert [n.title for _, n in got] == ["Download finished", "Download finished"]

    def test_steady_trickle_is_not_held_forever(self) -> None:
        c = composer(batch_window=2)
        for i in range(40):
            c.feed(ev(EventType.COMPLETED, f"{i}.flac"), at(i * 1.0))
        got = run(c, 60)
        assert got[0][0] <= 10.5  # capped at 5 x batch_window after the first
        assert sum(int(n.title.split("— ")[1].split()[0]) if "—" in n.title else 1 for _, n in got) == 40

    def test_burst_of_50_respects_rate_cap(self) -> None:
        c = composer(batch_window=2, max_per_minute=5)
        for i in range(50):  # 50 different folders at once: nothing merges by folder
            c.feed(ev(EventType.COMPLETED, "t.flac", folder=f"@@abc\\Music\\A\\Album{i}"), at(0))
        got = run(c, 300)
        summaries = [n for _, n in got if n.kind == "summary"]
        singles = [n for _, n in got if n.kind == "downloads"]
        assert len(got) == 5 and len(singles) == 4 and len(summaries) == 1
        assert summaries[0].title == "46 more downloads finished"

    def test_staggered_burst_never_exceeds_cap_and_loses_nothing(self) -> None:
        c = composer(batch_window=2, max_per_minute=5)
        for i in range(50):
            c.feed(ev(EventType.COMPLETED, "t.flac", folder=f"@@abc\\Music\\A\\Album{i}"), at(i * 0.05))
        got = run(c, 300, step=0.05)
        times = [t for t, _ in got]
        for t in times:  # no 60 s window holds more than the cap
            assert sum(1 for u in times if t <= u < t + 60) <= 5
        reported = sum(int(n.title.split()[0]) if n.kind == "summary" else 1 for _, n in got)
        assert reported == 50

    def test_overflow_after_cap_becomes_one_later_summary(self) -> None:
        c = composer(batch_window=1, max_per_minute=3)
        for i in range(3):
            c.feed(ev(EventType.COMPLETED, "t.flac", folder=f"F{i}"), at(0))
        first = run(c, 5)
        assert len(first) == 3
        for i in range(14):
            c.feed(ev(EventType.COMPLETED, "t.flac", folder=f"G{i}"), at(10))
        c.feed(ev(EventType.FAILED, "t.flac", folder="G99", reason="rejected"), at(10))
        got = run(c, 200, start=5.5)
        assert len(got) == 1
        t, n = got[0]
        assert t >= 60  # waited for the first slot to free
        assert n.title == "15 more downloads finished"
        assert n.body == "14 downloaded, 1 failed"

    def test_connection_blip_is_silent(self) -> None:
        c = composer()
        c.feed(ev(EventType.CONNECTION, status="lost"), at(0))
        c.feed(ev(EventType.CONNECTION, status="restored"), at(5))
        assert run(c, 60) == []

    def test_connection_lost_once_then_reconnected_once(self) -> None:
        c = composer()
        c.feed(Event(EventType.CONNECTION, T0, status="lost", error="Connection refused"), at(0))
        assert c.due(at(9.5)) == []
        [lost] = c.due(at(10))
        assert lost.title == "Connection lost" and "Connection refused" in lost.body
        c.feed(ev(EventType.CONNECTION, status="lost"), at(20))  # repeats while down: nothing
        assert run(c, 100, start=10.5) == []
        c.feed(ev(EventType.CONNECTION, status="restored"), at(101))
        [back] = c.due(at(101))
        assert back.title == "Reconnected to slskd"
        c.feed(ev(EventType.CONNECTION, status="restored"), at(102))
        assert c.due(at(103)) == []

    def test_no_reconnected_without_notified_loss(self) -> None:
        c = composer(quiet_hours="11:00-13:00")
        c.feed(ev(EventType.CONNECTION, status="lost"), at(0))
        assert run(c, 30) == []  # loss fell in quiet hours
        c.feed(ev(EventType.CONNECTION, status="restored"), at(40))
        assert c.due(at(40)) == []

    def test_quiet_hours_across_midnight(self) -> None:
        c = composer(batch_window=0, quiet_hours="22:00-07:00")
        night = datetime(2024, 3, 1, 23, 30)
        early = datetime(2024, 3, 2, 6, 59)
        morning = datetime(2024, 3, 2, 7, 0)
        evening = datetime(2024, 3, 1, 21, 59)
        for moment, shown in ((night, False), (early, False), (morning, True), (evening, True)):
            c.feed(ev(EventType.COMPLETED, f"{moment.hour}.flac"), moment)
            assert bool(c.due(moment)) is shown, moment

    def test_quiet_hours_same_day_range(self) -> None:
        c = composer(batch_window=0, quiet_hours="13:00-14:00")
        c.feed(ev(EventType.COMPLETED), datetime(2024, 3, 1, 13, 30))
        assert c.due(datetime(2024, 3, 1, 13, 30)) == []
        c.feed(ev(EventType.COMPLETED), datetime(2024, 3, 1, 23, 30))
        assert len(c.due(datetime(2024, 3, 1, 23, 30))) == 1

    def test_quiet_hours_with_aware_clock(self) -> None:
        c = composer(batch_window=0, quiet_hours="22:00-07:00")
        local_night = datetime(2024, 3, 1, 23, 30).astimezone()  # aware, local zone
        c.feed(ev(EventType.COMPLETED), local_night)
        assert c.due(local_night) == []

    def test_invalid_quiet_hours_ignored_with_warning(self, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.WARNING):
            c = composer(batch_window=0, quiet_hours="late")
        assert "quiet hours" in caplog.text
        c.feed(ev(EventType.COMPLETED), at(0))
        assert len(c.due(at(0))) == 1

    @pytest.mark.parametrize(
        "toggle,kind",
        [("on_completed", EventType.COMPLETED), ("on_failed", EventType.FAILED),
         ("on_cancelled", EventType.CANCELLED)],
    )
    def test_toggles(self, toggle: str, kind: EventType) -> None:
        on = composer(batch_window=0, **{toggle: True})
        off = composer(batch_window=0, **{toggle: False})
        for c in (on, off):
            c.feed(ev(kind, reason="rejected"), at(0))
        assert len(on.due(at(0))) == 1
        assert off.due(at(0)) == []

    def test_cancelled_off_by_default_and_toggle_filters_merge_counts(self) -> None:
        c = composer(batch_window=1)  # on_cancelled defaults to False
        c.feed(ev(EventType.COMPLETED, "a.flac"), at(0))
        c.feed(ev(EventType.COMPLETED, "b.flac"), at(0))
        c.feed(ev(EventType.CANCELLED, "c.flac"), at(0))
        [(_, n)] = run(c, 5)
        assert n.title == "Album — 2 tracks downloaded"

    def test_connection_toggle(self) -> None:
        c = composer(on_connection=False)
        c.feed(ev(EventType.CONNECTION, status="lost"), at(0))
        assert run(c, 60) == []

    def test_disabled(self) -> None:
        c = composer(enabled=False, batch_window=0)
        c.feed(ev(EventType.COMPLETED), at(0))
        assert c.due(at(0)) == []

    def test_pause_and_pause_until(self) -> None:
        c = composer(batch_window=0)
        c.set_paused(True)
        c.feed(ev(EventType.COMPLETED), at(0))
        assert c.due(at(0)) == []
        c.set_paused(False, at(3600))
        c.feed(ev(EventType.COMPLETED), at(10))
        assert c.due(at(10)) == []
        c.feed(ev(EventType.COMPLETED), at(3601))
        assert len(c.due(at(3601))) == 1
        c.set_paused(False, None)
        c.feed(ev(EventType.COMPLETED), at(3700))
        assert len(c.due(at(3700))) == 1

    def test_failure_single_wording(self) -> None:
        c = composer(batch_window=0)
        c.feed(ev(EventType.FAILED, "01 - Song.flac", reason="errored", error="Remote closed"), at(0))
        [n] = c.due(at(0))
        assert n.title == "Download failed"
        assert n.body == "Song — Artist: transfer error: Remote closed"

    def test_hostile_names_in_notifications(self) -> None:
        c = composer(batch_window=0)
        name = "-<b>&</b>\u202e\x1b[31m" + "z" * 5000 + ".flac"
        c.feed(ev(EventType.COMPLETED, name, user="-evil\u202e", folder="@@a\\-x\\<i>Al&bum</i>"), at(0))
        c.feed(ev(EventType.COMPLETED, "2.flac", user="-evil\u202e", folder="@@a\\-x\\<i>Al&bum</i>"), at(0))
        notes = c.due(at(0))  # the '/' inside "</b>" is a path separator too: maybe two folders
        assert notes
        for n in notes:
            for text in (n.title, n.body):
                assert not text.startswith("-")
                assert "\u202e" not in text and "\x1b" not in text and "\n" not in text
            assert len(n.title) <= TITLE_LIMIT and len(n.body) <= BODY_LIMIT

    def test_reads_real_config_section(self) -> None:
        cfg = NotificationsConfig(on_cancelled=True, batch_window=0, max_per_minute=2, quiet_hours="")
        c = NotificationComposer(cfg)
        c.feed(ev(EventType.CANCELLED), at(0))
        [n] = c.due(at(0))
        assert n.title == "Download cancelled"


# --------------------------------------------------------------------------- backends and sinks


class RaisingBackend:
    name = "broken"
    markup = False

    def __init__(self) -> None:
        self.calls = 0

    def send(self, note: Notification, replaces_id: int = 0, actions: object = ()) -> int:
        self.calls += 1
        raise RuntimeError("no D-Bus session")


class RecordingBackend:
    name = "recording"
    markup = False

    def __init__(self) -> None:
        self.notes: list[Notification] = []
        self.seen = threading.Event()

    def send(self, note: Notification, replaces_id: int = 0, actions: object = ()) -> int:
        self.notes.append(note)
        self.seen.set()
        return len(self.notes)


def wait_for(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


class TestDesktopNotifier:
    def test_broken_backend_logged_once_then_falls_to_none(self, caplog: pytest.LogCaptureFixture) -> None:
        backend = RaisingBackend()
        n = DesktopNotifier(NotificationRules(batch_window=0, max_per_minute=100), backend=backend)
        with caplog.at_level(logging.DEBUG, logger="trayagent"):
            for i in range(5):
                n.notify([ev(EventType.COMPLETED, f"{i}.flac", folder=f"F{i}")])
            assert wait_for(lambda: n.backend_name() == "none")
            n.close()
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1
        assert "no D-Bus session" in warnings[0].getMessage()
        assert backend.calls == 1  # not asked again once it failed

    def test_flusher_sends_after_window_without_new_events(self) -> None:
        backend = RecordingBackend()
        n = DesktopNotifier(NotificationRules(batch_window=0.2), backend=backend)
        try:
            n.notify([ev(EventType.COMPLETED, "a.flac"), ev(EventType.COMPLETED, "b.flac")])
            assert backend.seen.wait(3)
            assert [x.title for x in backend.notes] == ["Album — 2 tracks downloaded"]
        finally:
            n.close()

    def test_close_flushes_open_batches(self) -> None:
        backend = RecordingBackend()
        n = DesktopNotifier(NotificationRules(batch_window=60), backend=backend)
        n.notify([ev(EventType.COMPLETED)])
        assert backend.notes == []
        n.close()
        assert [x.title for x in backend.notes] == ["Download finished"]
        with pytest.raises(NotificationError):  # after close: not taken, so the agent keeps them
            n.notify([ev(EventType.COMPLETED)])
        n.close()

    def test_set_paused(self) -> None:
        backend = RecordingBackend()
        n = DesktopNotifier(NotificationRules(batch_window=0), backend=backend)
        n.set_paused(True)
        n.notify([ev(EventType.COMPLETED)])
        n.close()
        assert backend.notes == []

    def test_backend_name(self) -> None:
        assert DesktopNotifier(backend=RecordingBackend()).backend_name() == "recording"
        assert isinstance(DesktopNotifier().backend_name(), str)

    def test_send_test_raises_for_doctor(self) -> None:
        n = DesktopNotifier(backend=MissingBackend("nothing here"))
        with pytest.raises(NotificationError, match="nothing here"):
            n.send_test()


class TestNotifySend:
    def test_options_end_before_positional_text(self) -> None:
        b = NotifySendBackend("/usr/bin/notify-send", "trayagent", "/tmp/i.png")
        argv = b.command(Notification("-u critical", "<b>&</b> -t 0", "low"))
        sep = argv.index("--")
        assert all(a.startswith("--") for a in argv[1:sep])
        assert argv[sep + 1] == "\u2010u critical"
        assert argv[sep + 2] == "&lt;b&gt;&amp;&lt;/b&gt; -t 0"
        assert "--urgency=low" in argv and "--icon=/tmp/i.png" in argv

    def test_real_argv_reaches_the_program_intact(self, tmp_path: Path) -> None:
        """A stand-in notify-send records its argv: a hostile title stays a positional arg."""
        out = tmp_path / "argv.json"
        fake = tmp_path / "notify-send"
        fake.write_text(f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(out)!r}, 'w'))\n")
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
        NotifySendBackend(str(fake)).send(Notification("--help", "body"))
        argv = json.loads(out.read_text())
        assert argv[-3:] == ["--", "\u2010-help", "body"]

    def test_failure_becomes_notification_error(self, tmp_path: Path) -> None:
        fake = tmp_path / "notify-send"
        fake.write_text("#!/bin/sh\necho 'Cannot autolaunch D-Bus' >&2\nexit 1\n")
        fake.chmod(0o755)
        with pytest.raises(NotificationError, match="Cannot autolaunch D-Bus"):
            NotifySendBackend(str(fake)).send(Notification("t", "b"))
        with pytest.raises(NotificationError):
            NotifySendBackend(str(tmp_path / "missing")).send(Notification("t", "b"))

    def test_missing_notify_send_without_dbus_gives_missing_backend(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from trayagent.desktop import notify_backends as B

        monkeypatch.setattr(B.sys, "platform", "linux")
        monkeypatch.setattr(B.shutil, "which", lambda name: None)
        monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        monkeypatch.setitem(__import__("sys").modules, "dbus", None)  # import dbus -> ImportError
        b = choose_backend()
        assert b.name == "none"
        with pytest.raises(NotificationError):
            b.send(Notification("t"))


class TestMakeNotifier:
    def test_kinds(self) -> None:
        def cfg() -> Config:
            return Config(SlskdConfig(url="http://localhost:5030"), notifications=NotificationsConfig())

        stream = io.StringIO()
        assert isinstance(make_notifier("json", cfg(), stream), JsonLinesNotifier)
        assert isinstance(make_notifier("none", cfg()), NullNotifier)
        d = make_notifier("desktop", cfg())
        assert isinstance(d, DesktopNotifier)
        d.close()
        with pytest.raises(ValueError):
            make_notifier("carrier-pigeon", cfg())

    def test_desktop_disabled_is_null(self) -> None:
        cfg = Config(SlskdConfig(url="http://localhost:5030"), notifications=NotificationsConfig(enabled=False))
        assert isinstance(make_notifier("desktop", cfg), NullNotifier)


def test_json_lines_notifier_unchanged() -> None:
    stream = io.StringIO()
    JsonLinesNotifier(stream).notify([Event(EventType.COMPLETED, datetime(2024, 1, 1, tzinfo=timezone.utc),
                                            id="1", username="u", filename="f")])
    obj = json.loads(stream.getvalue())
    assert obj["event"] == "completed" and obj["at"] == "2024-01-01T00:00:00.000Z"


def test_console_notifier_one_clean_line_per_event() -> None:
    stream = io.StringIO()
    ConsoleNotifier(stream).notify([
        ev(EventType.FAILED, "x\n\u202e.flac", reason="rejected"),
        Event(EventType.CONNECTION, T0, status="lost", error="refused"),
    ])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "failed" in lines[0] and "peer rejected the request" in lines[0] and "\u202e" not in lines[0]
    assert lines[1].endswith("connection lost: refused")


def test_sanitize_drops_terminal_escape_sequences_whole() -> None:
    from trayagent.desktop.labels import sanitize as clean

    assert clean("ctrl\x01\x07\x1b[31mred\x1b[0m\x7f.flac", 100) == "ctrlred.flac"
    assert clean("a\x1b]0;window title\x07b", 100) == "ab"
    assert clean("[31m is just text without ESC", 100) == "[31m is just text without ESC"


def test_sync_summary_is_one_notification() -> None:
    from datetime import datetime, timezone

    from trayagent.core.model import Event as E, EventType as ET
    from trayagent.desktop.composer import NotificationComposer as C, NotificationRules as R

    now = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
    c = C(R())
    c.feed(E(ET.SYNC, now, status="incomplete", summary="<8> found, 7 completed, 1 not found"), now)
    notes = c.due(now)
    assert [(n.title, n.body) for n in notes] == [("Playlist sync finished", "<8> found, 7 completed, 1 not found")]
    assert c.due(now) == []


def test_json_lines_notifier_writes_each_line_whole_to_the_descriptor() -> None:
    """Issue 14.4: one write(2) per line, so a kill never leaves half a line in a pipe."""
    r, w = os.pipe()
    with os.fdopen(w, "w", encoding="utf-8") as stream:
        evs = [ev(EventType.COMPLETED, f"{i:02d} Café.flac") for i in range(3)]
        JsonLinesNotifier(stream).notify(evs)
    with os.fdopen(r, "rb") as reader:
        data = reader.read()
    lines = data.decode("utf-8").splitlines()
    assert [json.loads(line)["filename"] for line in lines] == [e.filename for e in evs]


@pytest.mark.parametrize("encoding,name", [("ascii", "Café.flac"), ("utf-8", "bad \ud800 name.flac")])
def test_json_lines_notifier_takes_what_the_encoding_cannot(encoding: str, name: str) -> None:
    """Issue 14.3/14.6: a JSON escape instead of an encode error (which left the event unreported)."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding=encoding, write_through=True)
    JsonLinesNotifier(stream).notify([ev(EventType.COMPLETED, name)])
    stream.flush()
    line = raw.getvalue().decode(encoding)
    assert line.endswith("\n") and json.loads(line)["filename"].endswith(name)


def test_json_lines_notifier_raises_when_the_reader_is_gone() -> None:
    r, w = os.pipe()
    os.close(r)
    with os.fdopen(w, "w", encoding="utf-8") as stream:
        with pytest.raises(BrokenPipeError):
            JsonLinesNotifier(stream).notify([ev(EventType.COMPLETED, "x.flac")])


def test_lone_surrogate_is_shown_as_a_replacement_character() -> None:
    assert sanitize("bad \ud800 name", 40) == "bad \ufffd name"


def test_notify_keeps_only_the_sinks_and_no_aliases_for_moved_names() -> None:
    """Moved names are imported from where they live; the app-layer module does not forward them."""
    import trayagent.notify as notify_module

    assert not hasattr(notify_module, "__getattr__")
    for moved in ("DesktopNotifier", "NotificationComposer", "Notification", "MissingBackend", "choose_backend"):
        assert not hasattr(notify_module, moved), moved


@pytest.mark.parametrize("naive_first", [True, False])
def test_clock_compares_a_naive_local_time_with_an_aware_one(naive_first: bool) -> None:
    from trayagent.desktop.clock import before, local_now, seconds_between

    aware = local_now()
    naive = (aware + timedelta(seconds=90)).replace(tzinfo=None)  # the same wall clock, 90 s later
    if naive_first:
        assert not before(naive, aware) and seconds_between(naive, aware) == pytest.approx(-90, abs=1)
    else:
        assert before(aware, naive) and seconds_between(aware, naive) == pytest.approx(90, abs=1)
