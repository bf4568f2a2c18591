"""The e2e harness itself: if these fail, the other e2e tests cannot mean anything."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PIL import Image

from .conftest import unavailable
from .desktop import (
    ROOT_COLOUR,
    TRAY_HEIGHT,
    Desktop,
    ProcessDied,
    missing_binaries,
    visible_text,
    wait_for,
)


def test_notify_send_on_the_private_bus_reaches_dunst(desktop: Desktop) -> None:
    desktop.notify_send("--", "-hello <b>x</b>", "body & <i>it</i>")

    assert desktop.wait_for_displayed(1) == 1
    assert desktop.dunst_windows(), "dunst shows no window for a displayed notification"
    history = desktop.all_notifications()

    assert len(history) == 1
    note = history[0]
    assert note["summary"] == "-hello <b>x</b>"
    # Summaries are never markup: dunst shows the tags literally, bodies it renders.
    assert visible_text(note["message"]) == "-hello <b>x</b>\nbody & it"


def test_the_private_bus_is_not_the_host_bus(desktop: Desktop) -> None:
    assert desktop.env["DBUS_SESSION_BUS_ADDRESS"] != os.environ.get("DBUS_SESSION_BUS_ADDRESS")
    assert desktop.env["DISPLAY"] != os.environ.get("DISPLAY")
    assert desktop.env["XDG_CONFIG_HOME"].startswith(str(desktop.workdir))


def test_screenshot_shows_the_desktop_and_the_tray(desktop: Desktop, tmp_path: Path) -> None:
    shot = desktop.screenshot(tmp_path / "root.png")

    assert shot.stat().st_size > 100  # a mostly flat screen compresses very well
    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1024, 768)
        assert rgb.getpixel((300, 400)) == ROOT_COLOUR
    tray = desktop.tray_geometry()
    assert tray.y == 0 and tray.height == TRAY_HEIGHT
    assert tray.x + tray.width == 1024  # --edge top --align right
    assert desktop.tray_selection_owner() is not None
    assert desktop.tray_children() == []


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    with Desktop(tmp_path / "d") as d:
        pids = [p.pid for _, p in d._procs]
        assert len(pids) == 4  # Xvfb, dbus-daemon, dunst, trayer
        display = d.display_name
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        # Popen.wait has reaped every child it stopped, so a live pid is a leak.
        raise AssertionError(f"process {pid} outlived the desktop")
    assert not Path(f"/tmp/.X11-unix/X{display.lstrip(':')}").exists()


def test_missing_prerequisites_skip_or_fail_by_require_e2e(monkeypatch: pytest.MonkeyPatch) -> None:
    assert missing_binaries(["sh", "no-such-binary-for-trayagent"]) == ["no-such-binary-for-trayagent"]

    monkeypatch.delenv("TRAYAGENT_REQUIRE_E2E", raising=False)
    with pytest.raises(pytest.skip.Exception, match="Xvfb"):
        unavailable("missing e2e binaries: Xvfb")

    monkeypatch.setenv("TRAYAGENT_REQUIRE_E2E", "1")
    with pytest.raises(pytest.fail.Exception, match="TRAYAGENT_REQUIRE_E2E=1 but missing e2e binaries: Xvfb"):
        unavailable("missing e2e binaries: Xvfb")


def test_a_component_that_dies_fails_fast_with_its_log(tmp_path: Path) -> None:
    with Desktop(tmp_path / "d", with_tray=False, with_notifications=False) as d:
        proc = d.spawn("doomed", ["sh", "-c", "echo boom >&2; exit 3"])
        started = time.monotonic()
        with pytest.raises(ProcessDied, match=r"(?s)doomed exited with 3.*boom"):
            wait_for(lambda: d._check_alive("doomed", proc), 30, "doomed to become ready")
        assert time.monotonic() - started < 5
