"""The ways a notification reaches the desktop, best first: D-Bus, notify-send, plyer, none.

Each backend shows one Notification and reports failure as NotificationError; the desktop
notifier walks down the ladder when one fails. Every backend is handed text it can encode:
notify-send gets argv text the file-system encoding can represent, D-Bus gets valid UTF-8.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

from trayagent.desktop.labels import TITLE_LIMIT, encodable, escape_markup, sanitize
from trayagent.desktop.notification import (
    DESKTOP_ENTRY,
    ActionCallback,
    Actions,
    BackendFactory,
    ClosedCallback,
    Notification,
    NotificationBackend,
    NotificationError,
)

log = logging.getLogger(__name__)


class NotifySendBackend:
    """libnotify's notify-send, with '--' before the positional summary and body.

    plyer's own Linux path runs `notify-send <title> <message> -i ...` without '--', so a file
    named '-u critical' would be parsed as options; its Flatpak path splices text into a GVariant
    string. This backend passes every option as --name=value and ends options explicitly.
    No buttons and no in-place updates: notify-send waits for a click only with --wait.
    """

    markup = True
    replaces = False

    def __init__(self, executable: str, app_name: str = "trayagent", icon_path: str | None = None) -> None:
        self.name = "notify-send"
        self._exe = executable
        self._app_name = sanitize(app_name, 40) or "trayagent"
        self._icon = icon_path

    def command(self, note: Notification) -> list[str]:
        """The argv for one notification (exposed so tests can check it without a daemon)."""
        urgency = note.urgency if note.urgency in ("low", "normal", "critical") else "normal"
        args = [self._exe, f"--app-name={self._app_name}", f"--urgency={urgency}",
                f"--hint=string:desktop-entry:{DESKTOP_ENTRY}"]
        if note.category:
            args.append(f"--category={note.category}")
        if self._icon:
            args.append(f"--icon={self._icon}")
        args += ["--", sanitize(note.title, TITLE_LIMIT) or "trayagent", escape_markup(note.body)]
        encoding = sys.getfilesystemencoding()
        return [encodable(a, encoding) for a in args]

    def send(self, note: Notification, replaces_id: int = 0, actions: Actions = ()) -> int:
        try:
            done = subprocess.run(
                self.command(note),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            raise NotificationError(f"notify-send failed: {exc}") from exc
        if done.returncode != 0:
            detail = done.stderr.decode("utf-8", "replace").strip()[:200] if done.stderr else ""
            raise NotificationError(f"notify-send exited {done.returncode}: {detail or 'no message'}")
        return 0


class PlyerBackend:
    """plyer's notification facade: Windows, macOS, and Linux only via dbus-python (safe there)."""

    markup = False
    replaces = False

    def __init__(self, app_name: str = "trayagent", icon_path: str | None = None) -> None:
        self.name = f"plyer ({sys.platform})"
        self._app_name = app_name
        self._icon = icon_path or ""

    def send(self, note: Notification, replaces_id: int = 0, actions: Actions = ()) -> int:
        try:
            from plyer import notification as facade

            facade.notify(
                title=sanitize(note.title, 63),  # Windows balloons cap titles at 64 incl. NUL
                message=sanitize(note.body, 255, leading_dash=False) or " ",
                app_name=self._app_name,
                app_icon=self._icon,
                timeout=10,
            )
        except Exception as exc:  # plyer raises anything from ImportError to NotImplementedError
            raise NotificationError(f"plyer: {type(exc).__name__}: {exc}") from exc
        return 0


class MissingBackend:
    """No way to show notifications here; sending reports why (logged once by the notifier)."""

    markup = False
    replaces = False

    def __init__(self, reason: str) -> None:
        self.name = "none"
        self.reason = reason

    def send(self, note: Notification, replaces_id: int = 0, actions: Actions = ()) -> int:
        raise NotificationError(self.reason)




def backend_ladder(
    app_name: str = "trayagent",
    icon_path: str | None = None,
    on_action: ActionCallback | None = None,
    on_closed: ClosedCallback | None = None,
) -> list[BackendFactory]:
    """The backends to try on this platform, best first; each factory raises if it cannot start."""
    if sys.platform in ("win32", "darwin"):
        return [lambda: PlyerBackend(app_name, icon_path)]

    def dbus() -> NotificationBackend:
        from trayagent.desktop.dbus_notify import DBusNotifyBackend

        return DBusNotifyBackend.connect(app_name, icon_path, on_action=on_action, on_closed=on_closed)

    ladder: list[BackendFactory] = [dbus]
    exe = shutil.which("notify-send")
    if exe:
        ladder.append(lambda: NotifySendBackend(exe, app_name, icon_path))
    elif not os.path.isdir("/app"):  # plyer on Linux is safe only through dbus-python, not its Flatpak path
        ladder.append(_plyer_with_dbus_python(app_name, icon_path))
    return ladder


def _plyer_with_dbus_python(app_name: str, icon_path: str | None) -> BackendFactory:
    def make() -> NotificationBackend:
        try:
            import dbus  # type: ignore[import-not-found]  # noqa: F401
        except ImportError as exc:
            raise NotificationError("no notify-send (libnotify-bin / libnotify) and no dbus-python") from exc
        return PlyerBackend(app_name, icon_path)

    return make


def choose_backend(app_name: str = "trayagent", icon_path: str | None = None) -> NotificationBackend:
    """The first backend of the ladder that starts (doctor shows and tests it), or MissingBackend."""
    reasons = []
    for make in backend_ladder(app_name, icon_path):
        try:
            return make()
        except Exception as exc:  # noqa: BLE001 - any failure to start means: try the next one
            reasons.append(str(exc))
            log.debug("notification backend unavailable: %s", exc)
    detail = "; ".join(reasons)
    return MissingBackend(f"no notification backend ({detail}): install notify-send (libnotify-bin / libnotify)"
                          if detail else "no notification backend: install notify-send (libnotify-bin / libnotify)")
