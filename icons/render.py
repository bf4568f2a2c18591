"""Regenerate the committed PNG masters from trayagent.desktop.icons (the single source of the art).

    .venv/bin/python icons/render.py        # writes next to this file

trayagent.png (256 px) is the application icon for desktop entries, installers and
notifications; the state-*.png files document what the tray shows, at 64 px.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trayagent.desktop.icons import render_icon  # noqa: E402
from trayagent.core.model import AgentState, Progress  # noqa: E402

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
APP_SIZES = (16, 22, 32, 48, 64, 128, 256)

STATES: dict[str, tuple[AgentState, bool]] = {
    "idle": (AgentState(connected=True, logged_in=True), False),
    "active": (
        AgentState(connected=True, logged_in=True,
                   progress=Progress(downloading=3, queued=2, bytes_total=100, bytes_done=42)),
        False,
    ),
    "attention": (AgentState(connected=True, logged_in=True, failed_unseen=2), False),
    "disconnected": (AgentState(connected=False), False),
    "paused": (AgentState(connected=True, logged_in=True), True),
}


def main(out: Path = HERE) -> list[Path]:
    """Write every master; returns the paths written."""
    written = []
    idle = STATES["idle"][0]
    for size in APP_SIZES:
        path = out / ("trayagent.png" if size == 256 else f"trayagent-{size}.png")
        render_icon(idle, size).save(path, optimize=True)
        written.append(path)
    for name, (state, paused) in STATES.items():
        path = out / f"state-{name}.png"
        render_icon(state, 64, paused=paused).save(path, optimize=True)
        written.append(path)
    package_icon = HERE.parent / "trayagent" / "icons" / "trayagent.png"  # shipped in the wheel
    render_icon(idle, 64).save(package_icon, optimize=True)
    written.append(package_icon)
    log.info("wrote %d icons to %s", len(written), out)
    return written


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
