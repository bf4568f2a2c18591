"""The seam between TrayApp and the tray backends: what a backend shows and what it must do.

Apart from the ladder (traybackend.py), which creates backends, so the backends it creates
(sni.py, the pystray ones) can import these without importing the ladder back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from trayagent.desktop.icons import IconKey
from trayagent.desktop.menu import MenuModel

ActionHandler = Callable[[str, "str | None"], None]


@dataclass(frozen=True, slots=True)
class TrayView:
    """Everything a backend shows: the icon (as its quantised key), the tooltip and the menu."""

    key: IconKey
    title: str
    model: MenuModel

    @property
    def needs_attention(self) -> bool:
        """Unseen failures: the icon carries the red badge."""
        return bool(self.key[2])


class TrayBackend(Protocol):
    """What TrayApp needs from a tray. Any method may raise: TrayApp then moves down the ladder."""

    name: str
    has_menu: bool

    def start(self, view: TrayView, on_action: ActionHandler) -> None:
        """Create the icon (not shown yet); raise if this desktop cannot have it."""

    def run(self, ready: Callable[[], None]) -> None:
        """Show the icon, call ``ready`` once it is up, block (main thread) until stop()."""

    def update(self, view: TrayView, *, icon: bool, title: bool, menu: bool) -> None:
        """Show a new view; the flags say which parts changed. Called from worker threads."""

    def stop(self) -> None:
        """Make run() return; callable from any thread, more than once."""


class TrayBackendError(RuntimeError):
    """A backend cannot run here (the reason is a plain sentence for logs and doctor)."""
