"""A desktop notification and the seam its backends share: what is shown, and how a backend fails.

Apart from the composer (which decides what to say) and the backends (which show it) so both,
and the D-Bus backend loaded lazily by the ladder, import these without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence


@dataclass(frozen=True, slots=True)
class Notification:
    """One desktop notification: plain, sanitised text (backends escape markup themselves).

    `key` ties notes that replace each other in place (an album arriving track by track); `final`
    is False while more notes with that key will follow. `folder_of` is a remote file name whose
    local folder an *Open folder* button may open; `retry_ids` are the downloads *Retry* re-enqueues.
    A note of kind "close" asks to close the one shown under its key.
    """

    title: str
    body: str = ""
    urgency: str = "normal"  # low / normal / critical (freedesktop names)
    kind: str = "downloads"  # downloads / album / away / summary / sync / connection_* / close
    key: str = ""
    final: bool = True
    category: str = ""
    folder_of: str = ""
    retry_ids: tuple[str, ...] = ()


#: What a backend is asked to show next to the text: (action key, button label) pairs.
Actions = Sequence[tuple[str, str]]
ActionCallback = Callable[[int, str], None]
ClosedCallback = Callable[[int], None]
#: The desktop file name (without .desktop) the notification daemon may use for icon and grouping.
DESKTOP_ENTRY = "trayagent"


class NotificationError(Exception):
    """A backend could not show a notification."""


class NotificationBackend(Protocol):
    name: str
    markup: bool  # whether bodies are rendered as markup (and must be escaped)

    def send(self, note: Notification, replaces_id: int = 0, actions: Actions = ()) -> int:
        """Show `note` (replacing notification `replaces_id` where supported); its id, or 0."""
        ...


BackendFactory = Callable[[], NotificationBackend]
