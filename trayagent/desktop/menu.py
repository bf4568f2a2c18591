"""The tray menu as data: which items it has, what each one does, built from an AgentState.

Pure and backend-neutral, so the menu is tested without a display: the SNI backend serves it
over dbusmenu (dbusmenu.py), pystray's backends convert it to their items (traybackend.py), and
TrayApp (tray.py) dispatches the action names below. Equal models render identical menus.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable

from trayagent.core.model import AgentState, Finished, Kind
from trayagent.desktop.clock import before, local_now
from trayagent.desktop.icons import tooltip
from trayagent.desktop.labels import sanitize, short_reason, track_label, track_title
from trayagent.desktop.openers import local_folder

RECENT_LIMIT = 10
RECENT_LABEL_LIMIT = 60
PAUSE_HOUR = timedelta(hours=1)

# Action names: what a menu item does, dispatched by TrayApp.
SYNC = "sync"
SYNC_PLAYLISTS = "sync_playlists"
CLEAR = "clear_finished"
RETRY = "retry_failed"
OPEN_FOLDER = "open_folder"
TOGGLE_PAUSE = "toggle_pause"
PAUSE_HOUR_ACTION = "pause_hour"
OPEN_SLSKD = "open_slskd"
QUIT = "quit"


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """One menu entry, backend-neutral. `action` names what TrayApp does; `arg` is its input."""

    text: str
    action: str | None = None
    arg: str | None = None
    enabled: bool = True
    checked: bool | None = None  # None: not checkable
    default: bool = False  # the left-click action where the backend has one
    submenu: tuple[ItemSpec, ...] | None = None
    separator: bool = False


SEPARATOR = ItemSpec("", enabled=False, separator=True)


def recent_label(f: Finished) -> str:
    """'✓ Title — Artist' for a success, '✗ Title (timed out)' otherwise; capped."""
    if f.outcome is Kind.SUCCEEDED:
        return sanitize("✓ " + track_label(f.filename, RECENT_LABEL_LIMIT), RECENT_LABEL_LIMIT + 2)
    why = "cancelled" if f.outcome is Kind.CANCELLED else short_reason(f.reason)
    title = sanitize(track_title(f.filename), RECENT_LABEL_LIMIT - len(why) - 3) or "(unnamed)"
    return f"✗ {title} ({why})"


@dataclass(frozen=True, slots=True)
class MenuModel:
    """The whole menu as data. Equal models render identical menus, so TrayApp compares them."""

    items: tuple[ItemSpec, ...]

    @classmethod
    def build(
        cls,
        state: AgentState,
        *,
        paused: bool = False,
        paused_until: datetime | None = None,
        download_dir: str | None = None,
        now: datetime | None = None,
        playlists: bool = False,
    ) -> MenuModel:
        """Describe the menu for a state and the tray's notification-pause flags."""
        now = now if now is not None else local_now()
        until = paused_until if paused_until is not None and before(now, paused_until) else None
        is_paused = paused or until is not None
        folder_root = download_dir or state.download_dir
        recent = state.recent[:RECENT_LIMIT]
        any_failed = any(f.outcome is Kind.FAILED for f in state.recent)

        if recent:
            entries = []
            for f in recent:
                target = local_folder(folder_root, f.filename)
                entries.append(ItemSpec(recent_label(f), OPEN_FOLDER, target, enabled=target is not None))
            recent_menu = tuple(entries)
        else:
            recent_menu = (ItemSpec("No finished downloads yet", enabled=False),)

        pause_text = "Pause notifications"
        if until is not None and not paused:
            pause_text = f"Notifications paused until {until.strftime('%H:%M')}"

        items = (
            ItemSpec(tooltip(state, paused=is_paused), enabled=False),
            SEPARATOR,
            ItemSpec("Open slskd", OPEN_SLSKD, default=True),
            ItemSpec("Sync now", SYNC),
            ItemSpec(state.sync_status or "Sync playlists", SYNC_PLAYLISTS,
                     enabled=playlists and state.sync_status is None),
            ItemSpec("Clear finished", CLEAR),
            ItemSpec("Retry failed", RETRY, enabled=any_failed),
            ItemSpec("Recent", submenu=recent_menu),
            SEPARATOR,
            ItemSpec(pause_text, TOGGLE_PAUSE, checked=is_paused),
            ItemSpec("Pause for 1 hour", PAUSE_HOUR_ACTION),
            SEPARATOR,
            ItemSpec("Quit", QUIT),
        )
        return cls(items)

    def find(self, action: str) -> ItemSpec | None:
        """The first item with this action, searching submenus too."""
        for item in _walk(self.items):
            if item.action == action:
                return item
        return None

    @property
    def default(self) -> ItemSpec | None:
        return next((i for i in _walk(self.items) if i.default), None)


def _walk(items: Iterable[ItemSpec]) -> Iterable[ItemSpec]:
    for item in items:
        yield item
        if item.submenu:
            yield from _walk(item.submenu)
