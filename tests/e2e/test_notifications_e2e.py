"""The headless agent's desktop notifications, as a user's notification daemon shows them.

Real processes throughout: the agent (`trayagent run --headless`) polls the simulator over
HTTP and talks to the notification daemon over D-Bus on a private session bus; dunst receives
and renders the text, and its context menu (dmenu) is where the buttons are pressed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from PIL import Image

from .conftest import AgentRun, started_desktop, unavailable
from .desktop import Desktop, visible_text, wait_for

SIZE = 4_000_000
#: A peer controls file names. This one tries bidi reordering (U+202E), a terminal escape,
#: a bell, Pango markup and an entity, and a leading '-' (an option, were it ever an argument).
#: No '/' in it: no OS allows one in a file name, and the agent rightly splits paths there.
HOSTILE = "@@mallory\\Music\\Evil Artist\\-rf <b>bold<i> &amp; \u202eevil\x07\x1b[31m tune.mp3"
FAILING = "@@bob\\Shared\\Rejected Album\\Song & Dance (Live).flac"


def _mentions(notes: list[dict[str, Any]], needle: str) -> list[dict[str, Any]]:
    return [n for n in notes if needle in visible_text(n["message"])]


def _assert_clean(seen: str) -> None:
    """No control, format (bidi, zero-width) characters and no option-looking line starts."""
    bad = [
        f"U+{ord(ch):04X}"
        for ch in seen
        if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf")
    ]
    assert not bad, f"unsafe characters shown to the user: {bad} in {seen!r}"
    assert not any(line.startswith("-") for line in seen.splitlines()), seen


def _crop_notifications(desktop: Desktop, shot: Path, out: Path) -> None:
    """Save the part of the screen with dunst's notification window(s), with a margin."""
    windows = desktop.dunst_windows()
    assert windows, "no dunst window on screen to photograph"
    left = min(w.geometry.x for w in windows) - 12
    top = min(w.geometry.y for w in windows) - 12
    right = max(w.geometry.x + w.geometry.width for w in windows) + 12
    bottom = max(w.geometry.y + w.geometry.height for w in windows) + 12
    with Image.open(shot) as img:
        img.convert("RGB").crop((max(left, 0), max(top, 0), right, bottom)).save(out, optimize=True)


def test_completed_and_failed_downloads_notify_once_with_safe_text(
    desktop: Desktop,
    simulator: Any,
    start_agent: Callable[..., AgentRun],
    screenshot_dir: Path,
    tmp_path: Path,
) -> None:
    good = simulator.add_download("mallory", HOSTILE, SIZE, state="InProgress", bytes_transferred=SIZE // 4)
    bad = simulator.add_download("bob", FAILING, SIZE, state="Queued, Remotely")
    agent = start_agent(
        desktop,
        headless=True,
        notifications={"enabled": True, "on_completed": True, "on_failed": True},
        cleanup={"enabled": False},
    )
    agent.wait_event("added", id=good)
    agent.wait_event("added", id=bad)

    simulator.set_state(good, "Completed, Succeeded")
    agent.wait_event("completed", id=good)
    desktop.wait_for_displayed(1)

    simulator.set_state(bad, "Completed, Rejected", bytes_transferred=0)
    agent.wait_event("failed", id=bad)
    desktop.wait_for_displayed(2)

    shot = desktop.screenshot(tmp_path / "notifications.png")
    _crop_notifications(desktop, shot, screenshot_dir / "notification.png")

    time.sleep(1.5)  # several poll and batch periods: nothing may be reported twice
    notes = desktop.all_notifications()
    assert all(n["appname"] == "trayagent" for n in notes), notes

    finished = _mentions(notes, "tune")
    assert len(finished) == 1, notes
    done = finished[0]
    seen = visible_text(done["message"])
    assert done["summary"] == "Download finished"
    assert "evil" in seen and "Evil Artist" in seen
    _assert_clean(seen)
    # Markup and entities from the file name are shown as the text they are (escaped) or
    # removed, never rendered: rendered, "<b>" would vanish and "&amp;" would read "&".
    assert "<b>bold<i> &amp;" in seen or ("<" not in done["body"] and "amp" not in seen), done

    failed = _mentions(notes, "Song & Dance (Live)")
    assert len(failed) == 1, notes
    fail = failed[0]
    seen = visible_text(fail["message"])
    assert fail["summary"] == "Download failed"
    assert re.search(r"reject", seen, re.IGNORECASE), seen
    _assert_clean(seen)

    assert len(notes) == 2, notes
    assert agent.proc.poll() is None, "the agent died"


# --------------------------------------------------------------------------- buttons, albums, away
#
# dunst shows a notification's actions in its context menu (`dunstctl context`), which it hands
# to dmenu: that list is what a dunst user picks buttons from. Here dmenu is real too, wrapped
# only to keep a copy of the lines dunst gave it; the test types the button's label into it.

RECORDER = """#!/bin/sh
# A stand-in xdg-open (first on the agent's PATH): records what it was asked to open.
printf '%s\\n' "$*" >> {log}
"""
DMENU = """#!/bin/sh
# dunst's context menu: the real dmenu, with a copy of the menu lines dunst sends it.
tee -a {log} | exec dmenu "$@"
"""


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def menu_desktop(tmp_path: Path) -> Iterator[Desktop]:
    """The test desktop with dmenu as dunst's context menu, and notifications below its list."""
    if shutil.which("dmenu") is None:
        unavailable("missing dmenu (apt-get install suckless-tools): dunst's context menu lists the buttons")
    dmenu = _script(tmp_path / "dmenu-rec", DMENU.format(log=tmp_path / "dmenu.log"))
    settings = {"dmenu": f"{dmenu} -l 5 -p buttons: -fn DejaVuSans-11", "offset": "16x140",
                "show_indicators": "yes"}
    with started_desktop(tmp_path / "desktop", with_tray=False, dunst_settings=settings) as d:
        yield d


def _opener(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """PATH with a recording xdg-open first, and the file it writes to."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / "opened.log"
    _script(bindir / "xdg-open", RECORDER.format(log=log))
    return {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}, log


def _album_agent(desktop: Desktop, simulator: Any, start_agent: Callable[..., AgentRun], tmp_path: Path,
                 folder: str, names: list[str]) -> tuple[AgentRun, list[str], Path, Path]:
    """Downloads in progress from bob's `folder`, a local download_dir holding that folder, and
    the agent (with the recording opener) once it has seen them all: (agent, ids, downloads, opened)."""
    ids = [simulator.add_download("bob", f"{folder}\\{name}", SIZE, state="InProgress") for name in names]
    downloads = tmp_path / "downloads"
    (downloads / folder.rsplit("\\", 1)[-1]).mkdir(parents=True)
    env, opened = _opener(tmp_path)
    agent = start_agent(desktop, headless=True, env=env, cleanup={"enabled": False},
                        slskd={"download_dir": str(downloads)})
    for tid in ids:
        agent.wait_event("added", id=tid)
    return agent, ids, downloads, opened


def _menu_lines(tmp_path: Path) -> list[str]:
    log = tmp_path / "dmenu.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def _open_context_menu(desktop: Desktop) -> subprocess.Popen[bytes]:
    """`dunstctl context`: dunst opens dmenu with the buttons of what it shows."""
    proc = subprocess.Popen(["dunstctl", "context"], env=desktop.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: [w for w in desktop.top_level_windows() if w.mapped and "dmenu" in w.wm_class],
             10, "dunst's context menu (dmenu) on screen")
    return proc


def _choose(desktop: Desktop, proc: subprocess.Popen[bytes], label: str) -> None:
    """Type a button's label into the open menu and press Return, as a user would."""
    desktop.xdotool("type", "--delay", "15", label)
    desktop.key("Return")
    proc.wait(timeout=10)


def _wait_file(path: Path, needle: str, timeout: float = 15.0) -> str:
    def found() -> str | None:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        return text if needle in text else None

    return wait_for(found, timeout, f"{needle!r} in {path.name}")


def test_retry_button_in_dunst_reenqueues_the_failed_file(
    menu_desktop: Desktop, simulator: Any, start_agent: Callable[..., AgentRun], screenshot_dir: Path,
    tmp_path: Path,
) -> None:
    desktop = menu_desktop
    agent, ids, _, _ = _album_agent(desktop, simulator, start_agent, tmp_path, "@@bob\\Music\\Rejected Album",
                                    [f"0{i} - Song {i}.flac" for i in (1, 2, 3)])
    simulator.set_state(ids[0], "Completed, Succeeded")
    simulator.set_state(ids[1], "Completed, Succeeded")
    simulator.set_state(ids[2], "Completed, Rejected", bytes_transferred=0)
    agent.wait_event("failed", id=ids[2])
    desktop.wait_for_displayed(1)

    menu = _open_context_menu(desktop)
    shot = desktop.screenshot(tmp_path / "buttons.png")
    lines = _menu_lines(tmp_path)
    buttons = sorted(re.sub(r"^#(.*?) \(.*$", r"\1", line) for line in lines if line.startswith("#"))
    assert buttons == ["Open folder", "Open slskd", "Retry", "Show in slskd"], lines
    dunst = desktop.dunst_windows()
    right = max(max(w.geometry.x + w.geometry.width for w in dunst) + 12, 720)  # the menu's lines too
    bottom = max(w.geometry.y + w.geometry.height for w in dunst) + 12
    with Image.open(shot) as img:
        img.convert("RGB").crop((0, 0, right, bottom)).save(screenshot_dir / "notification-buttons.png",
                                                           optimize=True)
    simulator.clear_requests()
    _choose(desktop, menu, "Retry")

    def reenqueued() -> list[dict[str, Any]]:
        return [t for t in simulator.transfers() if t["filename"].endswith("03 - Song 3.flac") and t["id"] != ids[2]]

    wait_for(reenqueued, 15, "the failed file to be enqueued again")
    posts = [r for r in simulator.requests if r.method == "POST" and r.path.endswith("/transfers/downloads/bob")]
    assert len(posts) == 1, simulator.requests
    notes = desktop.all_notifications()
    [note] = [n for n in notes if "Rejected Album" in n["summary"]]
    assert note["summary"] == "Rejected Album — 2 downloaded, 1 failed"
    assert "failed: Song 3 (peer rejected the request)" in visible_text(note["message"])
    assert note["category"] == "transfer.error"
    assert agent.proc.poll() is None, "the agent died"


def test_album_of_twelve_is_one_notification_and_open_folder_runs_the_opener(
    menu_desktop: Desktop, simulator: Any, start_agent: Callable[..., AgentRun], tmp_path: Path,
) -> None:
    desktop = menu_desktop
    monitor_log = desktop.logs_dir / "notify-calls.txt"
    with open(monitor_log, "wb") as out:  # every Notify call on the bus, as the daemon receives it
        desktop.spawn("dbus-monitor", ["dbus-monitor", "--session",
                                       "type='method_call',interface='org.freedesktop.Notifications',member='Notify'"],
                      stdout=out)
    agent, ids, downloads, opened = _album_agent(desktop, simulator, start_agent, tmp_path,
                                                 "@@bob\\Music\\Artist\\Tray Album",
                                                 [f"{i:02d} - Track {i}.flac" for i in range(1, 13)])
    for chunk in range(4):  # the album arrives in four parts, each its own poll and batch
        for tid in ids[chunk * 3:chunk * 3 + 3]:
            simulator.set_state(tid, "Completed, Succeeded")
        for tid in ids[chunk * 3:chunk * 3 + 3]:
            agent.wait_event("completed", id=tid)
        if chunk < 3:
            _wait_file(monitor_log, f"Tray Album — {chunk * 3 + 3} of 12")
            assert desktop.notification_count("displayed") + desktop.notification_count("waiting") == 1
    _wait_file(monitor_log, "Tray Album — 12 tracks downloaded")
    time.sleep(1.0)  # several batch windows: nothing more may come
    assert desktop.notification_count("displayed") + desktop.notification_count("waiting") == 1
    calls = monitor_log.read_text(encoding="utf-8")
    replaced = re.findall(r'string "trayagent"\s+uint32 (\d+)', calls)
    assert len(replaced) == 4 and replaced[0] == "0" and len(set(replaced[1:])) == 1 and replaced[1] != "0", calls

    _choose(desktop, _open_context_menu(desktop), "Open folder")
    _wait_file(opened, "Tray Album")
    assert opened.read_text(encoding="utf-8").splitlines() == [str(downloads / "Tray Album")]

    notes = [n for n in desktop.all_notifications() if "Tray Album" in n["summary"]]
    assert [n["summary"] for n in notes] == ["Tray Album — 12 tracks downloaded"]
    assert agent.proc.poll() is None, "the agent died"


def test_what_ended_while_the_agent_was_stopped_is_one_summary(
    desktop: Desktop, simulator: Any, start_agent: Callable[..., AgentRun], tmp_path: Path,
) -> None:
    files = [("alice", "@@alice\\Jazz\\Blue Train\\01 - Blue Train.flac"),
             ("alice", "@@alice\\Jazz\\Blue Train\\02 - Moment's Notice.flac"),
             ("carol", "@@carol\\Rock\\Live Album\\01 - Intro.mp3"),
             ("carol", "@@carol\\Rock\\Live Album\\02 - Encore.mp3"),
             ("dave", "@@dave\\Misc\\Broken Tape.flac")]
    ids = [simulator.add_download(user, name, SIZE, state="InProgress") for user, name in files]
    env, opened = _opener(tmp_path)
    first = start_agent(desktop, headless=True, env=env, cleanup={"enabled": False})
    for tid in ids:
        first.wait_event("added", id=tid)
    first.stop()
    for tid in ids[:4]:
        simulator.set_state(tid, "Completed, Succeeded")
    simulator.set_state(ids[4], "Completed, Rejected", bytes_transferred=0)

    second = start_agent(desktop, headless=True, env=env, cleanup={"enabled": False})
    second.wait_event("failed", id=ids[4])
    desktop.wait_for_displayed(1)
    time.sleep(1.5)  # several polls and batch windows: still one
    assert desktop.notification_count("displayed") + desktop.notification_count("waiting") == 1

    desktop.dunstctl("action", "0")  # a click: the default action opens slskd's web UI
    _wait_file(opened, simulator.url)
    [note] = desktop.all_notifications()
    assert note["summary"] == "While you were away: 4 downloaded, 1 failed"
    assert visible_text(note["message"]).endswith("failed: Broken Tape")
    assert second.proc.poll() is None, "the agent died"


def test_no_buttons_for_a_daemon_without_actions(
    tmp_path: Path, simulator: Any, start_agent: Callable[..., AgentRun],
) -> None:
    record = tmp_path / "notify-calls.jsonl"
    with started_desktop(tmp_path / "plain", with_tray=False, with_notifications=False) as desktop:
        fake = Path(__file__).with_name("fake_notifyd.py")
        desktop.spawn("fake-notifyd", [sys.executable, str(fake), str(record), "body,body-hyperlinks"])
        wait_for(lambda: "ready" in desktop.log_text("fake-notifyd"), 10, "the plain notification daemon")
        good = simulator.add_download("bob", "@@bob\\Music\\Rock & Roll\\01 - <Intro>.flac", SIZE, state="InProgress")
        bad = simulator.add_download("eve", "@@eve\\Shared\\Gone.flac", SIZE, state="InProgress")
        agent = start_agent(desktop, headless=True, cleanup={"enabled": False},
                            slskd={"download_dir": str(tmp_path)})
        agent.wait_event("added", id=good)
        agent.wait_event("added", id=bad)
        simulator.set_state(good, "Completed, Succeeded")
        simulator.set_state(bad, "Completed, Rejected", bytes_transferred=0)
        agent.wait_event("failed", id=bad)
        _wait_file(record, "Gone")
        _wait_file(record, "Intro")
        calls = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
        assert len(calls) == 2, calls
        assert all(c["actions"] == [] for c in calls), calls
        assert {c["hints"]["category"] for c in calls} == {"transfer.complete", "transfer.error"}
        assert all(c["hints"]["desktop-entry"] == "trayagent" for c in calls)
        [done] = [c for c in calls if "Intro" in c["body"]]
        assert done["body"] == "<Intro> — Rock & Roll"  # plain text: no body-markup, so not escaped
        assert agent.proc.poll() is None, "the agent died"


def test_the_notification_daemon_going_away_never_stops_the_agent(
    desktop: Desktop, simulator: Any, start_agent: Callable[..., AgentRun],
) -> None:
    ids = [simulator.add_download("bob", f"@@bob\\Music\\F{i}\\song.flac", SIZE, state="InProgress") for i in range(3)]
    agent = start_agent(desktop, headless=True, cleanup={"enabled": False})
    for tid in ids:
        agent.wait_event("added", id=tid)
    simulator.set_state(ids[0], "Completed, Succeeded")
    agent.wait_event("completed", id=ids[0])
    desktop.wait_for_displayed(1)

    dunst = next(proc for name, proc in desktop._procs if name == "dunst")
    desktop.terminate(dunst)  # the daemon crashes: D-Bus, then notify-send, fail
    simulator.set_state(ids[1], "Completed, Succeeded")
    agent.wait_event("completed", id=ids[1])
    wait_for(lambda: "falling back to none" in desktop.log_text("agent"), 15, "the fall to no notifications")
    simulator.set_state(ids[2], "Completed, Rejected", bytes_transferred=0)
    agent.wait_event("failed", id=ids[2])  # still polling, still streaming
    log = desktop.log_text("agent")
    assert "via D-Bus (dunst" in log and "Traceback" not in log, log[-3000:]
    assert agent.proc.poll() is None, "the agent died"
