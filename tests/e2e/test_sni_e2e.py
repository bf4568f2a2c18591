"""The StatusNotifierItem tray on a real SNI host: xfce4-panel, installed as a user would, no PyGObject.

The agent runs as `trayagent run` with ``import gi`` failing (the default install has no
compiled parts). xfce4-panel's status tray draws our pixmaps, calls Activate on a left click and
builds its own GTK menu from our com.canonical.dbusmenu object on a right click. Input is real
X pointer events; what the panel shows is read from screenshots, and what the watcher knows
from its RegisteredStatusNotifierItems property.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from trayagent.desktop.icons import DISC

from .conftest import AgentRun
from .desktop import Desktop, Geometry, ProcessDied, WindowInfo, wait_for

SIZE = 9_000_000
DONE = "@@alice\\Music\\Some Artist\\Some Album\\01 - First Song.flac"
BUSY = "@@alice\\Music\\Some Artist\\Some Album\\02 - Second Song.flac"
BAD = "@@alice\\Music\\Some Artist\\Some Album\\03 - Third Song.flac"
QUIET = {"notifications": {"enabled": False}, "cleanup": {"enabled": False}}
#: The menu's rows top to bottom (separators are not rows), as MenuModel builds them.
ROWS = ("status", "Open slskd", "Sync now", "Sync playlists", "Clear finished", "Retry failed", "Recent",
        "Pause notifications", "Pause for 1 hour", "Quit")


def _item_name(agent: AgentRun) -> str:
    return f"org.kde.StatusNotifierItem-{agent.pid}-1/StatusNotifierItem"


def _registered(desktop: Desktop, agent: AgentRun, timeout: float = 20.0) -> None:
    def listed() -> bool:
        if agent.proc.poll() is not None:
            raise ProcessDied(f"agent exited:\n{desktop.log_text('agent')[-3000:]}")
        return _item_name(agent) in desktop.sni_items()

    wait_for(listed, timeout, "the agent's item in the watcher's RegisteredStatusNotifierItems")


def _icon_in_panel(desktop: Desktop, tmp_path: Path, timeout: float = 15.0) -> Geometry:
    """Where the panel draws our icon: the bounding box of the disc's blue inside the panel."""
    panel = wait_for(desktop.panel_geometry, 10, "the panel on screen")

    def drawn() -> Geometry | None:
        with Image.open(desktop.screenshot(tmp_path / "panel.png")) as img:
            strip = img.convert("RGB").crop(panel.box)
            xs, ys = [], []
            for y in range(strip.height):
                for x in range(strip.width):
                    if strip.getpixel((x, y)) == DISC[:3]:
                        xs.append(x)
                        ys.append(y)
        if len(xs) < 20:
            return None
        return Geometry(panel.x + min(xs), panel.y + min(ys), max(xs) - min(xs) + 1, max(ys) - min(ys) + 1)

    return wait_for(drawn, timeout, "our icon's blue disc drawn in the panel", interval=0.3)


def _open_menu(desktop: Desktop, icon: Geometry, timeout: float = 10.0) -> WindowInfo:
    before = {w.id for w in desktop.popup_windows()}
    desktop.click(*icon.center, button=3)

    def menu() -> WindowInfo | None:
        new = [w for w in desktop.popup_windows() if w.id not in before]
        return max(new, key=lambda w: w.geometry.width * w.geometry.height) if new else None

    return wait_for(menu, timeout, "the panel's menu to open")


def _rows(img: Image.Image, menu: Geometry) -> list[tuple[Geometry, float]]:
    """The menu's text rows (label bands) and how dark their text is (disabled text is grey).

    Separators are faint one-pixel lines, so only bands of real text count as rows.
    """
    crop = img.convert("L").crop(menu.box)
    left, right = 26, crop.width - 26  # the check box column and the submenu arrow stay out
    dark_rows = []
    for y in range(crop.height):
        values = [crop.getpixel((x, y)) for x in range(left, right)]
        darkest = min(values)
        dark_rows.append(darkest if darkest < 180 else None)
    bands: list[tuple[int, int, float]] = []
    start = None
    for y, darkest in enumerate([*dark_rows, None]):
        if darkest is not None and start is None:
            start = y
        elif darkest is None and start is not None:
            if y - start >= 5:
                bands.append((start, y, min(d for d in dark_rows[start:y] if d is not None)))
            start = None
    return [(Geometry(menu.x, menu.y + a, menu.width, b - a), float(d)) for a, b, d in bands]


def test_sni_icon_menu_clear_finished_and_panel_restart(
    panel_desktop: Desktop,
    simulator: Any,
    start_agent: Callable[..., AgentRun],
    without_gi: dict[str, str],
    browser: tuple[dict[str, str], Path],
    screenshot_dir: Path,
    tmp_path: Path,
) -> None:
    desktop = panel_desktop
    done = simulator.add_download("alice", DONE, SIZE, state="InProgress", bytes_transferred=SIZE // 3)
    busy = simulator.add_download("alice", BUSY, SIZE, state="Queued, Remotely")
    bad = simulator.add_download("alice", BAD, SIZE, state="InProgress", bytes_transferred=SIZE // 4)
    browser_env, opened = browser

    agent = start_agent(desktop, headless=False, env={**without_gi, **browser_env}, **QUIET)
    _registered(desktop, agent)
    assert "using the sni tray" in desktop.log_text("agent")
    assert "PyGObject is not installed" not in desktop.log_text("agent"), "nothing tried to import gi"
    agent.wait_event("added", id=done)
    simulator.set_state(done, "Completed, Succeeded")
    agent.wait_event("completed", id=done)

    icon = _icon_in_panel(desktop, tmp_path)
    panel = desktop.panel_geometry()
    assert panel is not None and panel.y <= icon.y and icon.y + icon.height <= panel.y + panel.height
    with Image.open(desktop.screenshot(tmp_path / "icon.png")) as img:
        crop = img.convert("RGB").crop((0, 0, 360, panel.y + panel.height + 8))
        crop.resize((crop.width * 2, crop.height * 2), Image.Resampling.NEAREST).save(
            screenshot_dir / "sni-panel.png", optimize=True)

    # Left click: the panel calls Activate, which opens slskd's web UI (BROWSER records it).
    desktop.click(*icon.center, button=1)
    wait_for(lambda: opened.exists() and simulator.url.rstrip("/") in opened.read_text(), 10,
             "Activate to open slskd's web UI")

    # Right click: the panel builds its menu from our dbusmenu: one row per item. The pointer
    # then rests away from the icon, so no tooltip covers the menu and no item is highlighted.
    menu = _open_menu(desktop, icon)
    desktop.xdotool("mousemove", "1000", "740")

    def drawn_rows(name: str) -> list[tuple[Geometry, float]] | None:
        current = next((w for w in desktop.popup_windows() if w.id == menu.id), None)
        if current is None:
            raise AssertionError("the menu closed")
        with Image.open(desktop.screenshot(tmp_path / name)) as img:
            rows = _rows(img, current.geometry)
            if name == "menu.png":
                box = current.geometry
                img.convert("RGB").crop((0, 0, max(box.x + box.width + 40, 360), box.y + box.height + 16)).save(
                    screenshot_dir / "sni-menu.png", optimize=True)
        return rows if len(rows) == len(ROWS) else None

    rows = wait_for(lambda: drawn_rows("menu.png"), 10, f"the menu's {len(ROWS)} rows on screen", interval=0.3)
    retry_before = rows[ROWS.index("Retry failed")][1]

    # An open menu is never stale: a failure enables "Retry failed" while the menu stays open.
    simulator.set_state(bad, "Completed, Errored")
    agent.wait_event("failed", id=bad, timeout=20)

    def retry_enabled() -> list[tuple[Geometry, float]] | None:
        now = drawn_rows("menu2.png")
        return now if now and now[ROWS.index("Retry failed")][1] < retry_before - 40 else None

    rows = wait_for(retry_enabled, 10, "the open menu to show Retry failed enabled (darker text)", interval=0.3)

    # Choosing "Clear finished" makes the agent remove the recorded finished downloads, by id.
    simulator.clear_requests()
    desktop.click(*rows[ROWS.index("Clear finished")][0].center, button=1)

    def deletes() -> list[Any]:
        return [r for r in simulator.requests if r.method == "DELETE"]

    wait_for(deletes, 15, "a DELETE request after Clear finished")
    time.sleep(0.5)
    removed = sorted(r.path for r in deletes())
    assert removed == sorted(f"/api/v0/transfers/downloads/alice/{i}" for i in (done, bad)), removed
    assert [t["id"] for t in simulator.transfers()] == [busy]

    # The panel restarts: the watcher leaves and comes back, and the item registers again.
    desktop.kill_panel()
    assert desktop.bus_has_name(f"org.kde.StatusNotifierItem-{agent.pid}-1"), "the item outlives the panel"
    desktop.start_panel()
    _registered(desktop, agent)
    _icon_in_panel(desktop, tmp_path)
    assert "registered with the panel" in desktop.log_text("agent").split("went away")[-1]
    assert agent.proc.poll() is None, "the agent died"
