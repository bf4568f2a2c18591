"""The XEmbed rungs of the tray ladder on trayer, with and without PyGObject.

trayer has no StatusNotifierWatcher, so the ladder falls to XEmbed: pystray's gtk icon when
PyGObject is importable, pystray's xorg icon when it is not (the default install). XEmbed window
names are Latin-1, so the "Connecting to slskd…" title and a Japanese track name once crashed
the agent at start; now the icon docks and polling goes on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from .conftest import AgentRun
from .desktop import Desktop, ProcessDied, WindowInfo, wait_for

SIZE = 9_000_000
JAPANESE = "@@kenji\\Music\\坂本龍一\\Merry Christmas\\01 - 坂本龍一 — 戦場のメリークリスマス.flac"


def _docked(desktop: Desktop, agent: AgentRun, timeout: float = 20.0) -> WindowInfo:
    """The agent's icon in trayer: its window carries our pid (GTK) or our WM_CLASS (xorg)."""

    def find() -> WindowInfo | None:
        if agent.proc.poll() is not None:
            raise ProcessDied(f"agent exited:\n{desktop.log_text('agent')[-3000:]}")
        for child in desktop.tray_children():
            if desktop.window_pid(child.id) == agent.pid or "trayagentSystemTrayIcon" in child.wm_class:
                return child
        return None

    return wait_for(find, timeout, "the agent's icon in the tray")


@pytest.mark.parametrize("with_gi", [True, False], ids=["gtk", "xorg-without-pygobject"])
def test_xembed_icon_docks_and_non_latin1_text_never_crashes(
    desktop: Desktop,
    simulator: Any,
    start_agent: Callable[..., AgentRun],
    without_gi: dict[str, str],
    browser: tuple[dict[str, str], Path],
    gtk_prerequisites: None,
    tmp_path: Path,
    with_gi: bool,
) -> None:
    track = simulator.add_download("kenji", JAPANESE, SIZE, state="InProgress", bytes_transferred=SIZE // 3)
    browser_env, opened = browser
    env = {**browser_env, **({} if with_gi else without_gi)}

    agent = start_agent(desktop, headless=False, env=env, cleanup={"enabled": False})
    icon = _docked(desktop, agent)
    expected = "gtk" if with_gi else "xorg"
    log = desktop.log_text("agent")
    assert f"using the {expected} tray" in log, log[-2000:]
    assert "sni is not available" in log  # trayer has no StatusNotifierWatcher: the ladder moved on

    agent.wait_event("added", id=track)
    simulator.set_state(track, "Completed, Succeeded")
    done = agent.wait_event("completed", id=track)
    assert done["filename"] == JAPANESE
    desktop.wait_for_displayed(1)  # the desktop notification for it went out too

    if not with_gi:
        # pystray's xorg icon has no menu: a left click runs the default item, Open slskd.
        desktop.click(*icon.geometry.center, button=1)
        wait_for(lambda: opened.exists() and simulator.url.rstrip("/") in opened.read_text(), 10,
                 "a click on the xorg icon to open slskd")

    assert agent.proc.poll() is None, "the agent died"
    assert "Traceback" not in desktop.log_text("agent"), desktop.log_text("agent")[-3000:]
    assert _docked(desktop, agent).id == icon.id, "still docked"
