"""The tray icon as a user meets it: docked in a real system tray, right-clicked, clicked.

The agent runs as `trayagent run` (tray mode) with pystray's gtk backend, a Gtk.StatusIcon
that docks into trayer over XEmbed. Input is real X pointer events; AT-SPI is used only to
find where a menu item is drawn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pytest
from PIL import Image

from .conftest import AgentRun
from .desktop import (
    MENU_ITEM_ROLES,
    TRAY_TINT,
    Desktop,
    Geometry,
    ProcessDied,
    WindowInfo,
    wait_for,
)

SIZE = 9_000_000
DONE = "@@alice\\Music\\Some Artist\\Some Album\\01 - First Song.flac"
BUSY = "@@alice\\Music\\Some Artist\\Some Album\\02 - Second Song.flac"
MENU_LABELS = ("Open slskd", "Sync now", "Clear finished", "Retry failed", "Recent", "Quit")
GTK_TRAY = {"PYSTRAY_BACKEND": "gtk"}
QUIET = {"notifications": {"enabled": False}, "cleanup": {"enabled": False}}


def _agent_icon(desktop: Desktop, agent: AgentRun, timeout: float = 20.0) -> WindowInfo:
    """Wait for a window of the agent's process to be docked in trayer."""

    def docked() -> WindowInfo | None:
        if agent.proc.poll() is not None:
            raise ProcessDied(f"agent exited:\n{desktop.log_text('agent')[-3000:]}")
        for child in desktop.tray_children():
            if desktop.window_pid(child.id) == agent.pid:
                return child
        return None

    return wait_for(docked, timeout, "the agent's icon in the tray")


def _pixels_unlike(img: Image.Image, box: Geometry, ref: tuple[int, int, int], tol: int = 40) -> int:
    """How many pixels inside ``box`` differ from colour ``ref`` by more than ``tol``."""
    raw = img.convert("RGB").crop(box.box).tobytes()
    pixels = (raw[i : i + 3] for i in range(0, len(raw), 3))
    return sum(1 for px in pixels if max(abs(px[0] - ref[0]), abs(px[1] - ref[1]), abs(px[2] - ref[2])) > tol)


def _save_zoomed(img: Image.Image, box: tuple[int, int, int, int], out: Path, scale: int) -> None:
    crop = img.convert("RGB").crop(box)
    crop.resize((crop.width * scale, crop.height * scale), Image.Resampling.NEAREST).save(out, optimize=True)


def _open_menu(desktop: Desktop, icon: WindowInfo, timeout: float = 10.0) -> WindowInfo:
    """Right-click the tray icon and wait for the GTK menu window to be mapped."""
    before = {w.id for w in desktop.popup_windows()}
    desktop.right_click_window(icon)

    def menu_window() -> WindowInfo | None:
        new = [w for w in desktop.popup_windows() if w.id not in before]
        return max(new, key=lambda w: w.geometry.width * w.geometry.height) if new else None

    return wait_for(menu_window, timeout, "the tray menu to open")


def _close_menu(desktop: Desktop, menu: WindowInfo) -> None:
    desktop.key("Escape")
    wait_for(lambda: all(w.id != menu.id for w in desktop.popup_windows()), 5, "the menu to close")


def _open_menu_showing(
    desktop: Desktop, icon: WindowInfo, pid: int, ready: Callable[[list[str], list[str]], bool],
    timeout: float = 15.0,
) -> tuple[WindowInfo, list[str]]:
    """Open the menu until ``ready(shown_labels, all_labels)``; an open GTK menu is not
    refreshed in place, so a stale one is closed and opened again."""
    deadline = time.monotonic() + timeout
    while True:
        menu = _open_menu(desktop, icon)
        shown = wait_for(lambda: desktop.open_menu_items(pid), 10, "the menu's items on screen")
        everything = [n["name"] for n in desktop.accessibles(pid) if n["role"] in MENU_ITEM_ROLES]
        if ready(shown, everything):
            return menu, shown
        if time.monotonic() > deadline:
            raise AssertionError(f"menu never showed the expected state: {shown} / {everything}")
        _close_menu(desktop, menu)
        time.sleep(0.5)


def test_icon_docks_menu_opens_and_clear_finished_deletes_the_download(
    a11y_desktop: Desktop,
    simulator: Any,
    start_agent: Callable[..., AgentRun],
    screenshot_dir: Path,
    tmp_path: Path,
) -> None:
    desktop = a11y_desktop
    done = simulator.add_download("alice", DONE, SIZE, state="InProgress", bytes_transferred=SIZE // 3)
    busy = simulator.add_download("alice", BUSY, SIZE, state="Queued, Remotely")
    assert desktop.tray_children() == []

    agent = start_agent(desktop, headless=False, env=GTK_TRAY, **QUIET)
    icon = _agent_icon(desktop, agent)
    tray = desktop.tray_geometry()
    assert tray.x <= icon.geometry.x and icon.geometry.x + icon.geometry.width <= tray.x + tray.width
    agent.wait_event("added", id=done)
    simulator.set_state(done, "Completed, Succeeded")
    agent.wait_event("completed", id=done)

    # Right-click: the GTK menu opens by the icon, with the agent's items and its current
    # state: the status line (connected, one queued) and the finished song under Recent.
    def current(shown: list[str], everything: list[str]) -> bool:
        return bool(shown) and "queued" in shown[0] and any("First Song" in n for n in everything)

    menu, shown = _open_menu_showing(desktop, icon, agent.pid, current)
    assert desktop.window_pid(menu.id) == agent.pid
    for label in MENU_LABELS:
        assert label in shown, shown
    shot = desktop.screenshot(tmp_path / "menu.png")
    with Image.open(shot) as img:
        left = max(min(menu.geometry.x, tray.x) - 16, 0)
        bottom = min(menu.geometry.y + menu.geometry.height + 16, 768)
        img.convert("RGB").crop((left, 0, 1024, bottom)).save(
            screenshot_dir / "tray-menu.png", optimize=True
        )

    # Click "Clear finished": the agent removes the recorded completed download, by id.
    simulator.clear_requests()
    desktop.click_menu_item("Clear finished", pid=agent.pid)
    wait_for(lambda: all(w.id != menu.id for w in desktop.popup_windows()), 5, "the menu to close")

    def deletes() -> list[Any]:
        return [r for r in simulator.requests if r.method == "DELETE"]

    removed = wait_for(deletes, 15, "a DELETE request after Clear finished")
    time.sleep(0.5)  # anything else it would delete arrives now
    removed = deletes()
    assert [(r.path, r.query.get("remove")) for r in removed] == [
        (f"/api/v0/transfers/downloads/alice/{done}", "true")
    ], removed
    assert all(r.status in (200, 204) for r in removed), removed
    assert simulator.get(done)["removed"] is True
    assert [t["id"] for t in simulator.transfers()] == [busy]
    # The queued download has not finished, so it stays.
    assert not any(busy in r.path for r in removed)

    # The icon is drawn: inside the docked window there are pixels that are not the tray's.
    shot = desktop.screenshot(tmp_path / "tray.png")
    with Image.open(shot) as img:
        drawn = _pixels_unlike(img, icon.geometry, TRAY_TINT)
        area = icon.geometry.width * icon.geometry.height
        assert drawn >= area // 10, f"icon looks empty: {drawn}/{area} pixels differ from the tray"
        _save_zoomed(
            img, (max(tray.x - 96, 0), 0, 1024, tray.y + tray.height + 12),
            screenshot_dir / "tray.png", scale=3,
        )
    assert agent.proc.poll() is None, "the agent died"


# pystray's default on Linux is appindicator; with no StatusNotifierWatcher (trayer has none)
# libayatana-appindicator falls back to an XEmbed status icon, so it must work here too.
@pytest.mark.parametrize("backend_env", [GTK_TRAY, {}], ids=["gtk", "default-backend"])
def test_quit_in_the_menu_stops_the_agent(
    a11y_desktop: Desktop, simulator: Any, start_agent: Callable[..., AgentRun],
    backend_env: dict[str, str],
) -> None:
    desktop = a11y_desktop
    agent = start_agent(desktop, headless=False, env=backend_env, **QUIET)
    icon = _agent_icon(desktop, agent)

    _open_menu(desktop, icon)
    desktop.click_menu_item("Quit", pid=agent.pid)

    code = wait_for(lambda: (agent.proc.poll(),) if agent.proc.poll() is not None else None,
                    15, "the agent to exit after Quit")[0]
    assert code == 0, desktop.log_text("agent")[-3000:]
    wait_for(lambda: not any(desktop.window_pid(c.id) == agent.pid for c in desktop.tray_children())
             or None, 5, "the icon to leave the tray")
