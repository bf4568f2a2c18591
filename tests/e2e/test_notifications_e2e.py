"""The headless agent's desktop notifications, as a user's notification daemon shows them.

Real processes throughout: the agent (`trayagent run --headless`) polls the simulator over
HTTP and calls notify-send on a private session bus; dunst receives and renders the text.
"""

from __future__ import annotations

import re
import time
import unicodedata
from pathlib import Path
from typing import Any, Callable

from PIL import Image

from .conftest import AgentRun
from .desktop import Desktop, visible_text

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
