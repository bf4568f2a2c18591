"""Opening things for the user: slskd's web UI in the browser, a download's folder in the file manager.

Shared by the tray menu and the notification buttons. Every path and URL involved comes from
config or from a remote peer's file name, so each is checked before anything is launched.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from urllib.parse import urlsplit

from trayagent.desktop.labels import folder_name, sanitize

log = logging.getLogger(__name__)


def local_folder(download_dir: str | None, filename: str) -> str | None:
    """Where slskd put a download: download_dir / <remote parent folder name>, or None.

    The folder name comes from a remote peer, so '.', '..' and names with control characters
    are refused rather than joined (no escaping download_dir).
    """
    if not download_dir:
        return None
    segment = folder_name(filename)
    if not segment or segment.strip() in (".", "..") or sanitize(segment, 1000, leading_dash=False) != segment:
        return None
    if os.sep in segment or (os.altsep and os.altsep in segment) or "\x00" in segment:
        return None
    base = os.path.abspath(os.path.expanduser(download_dir))
    return os.path.join(base, segment)


def open_url(url: str) -> bool:
    """Open slskd's web UI; only http(s) URLs, so a config typo can't launch a local file."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        log.warning("not opening %r: slskd's web URL must start with http:// or https://", url)
        return False
    import webbrowser  # here, not at the top: a headless agent never opens a browser

    return webbrowser.open(url.strip())


def open_folder(path: str, fallback: str | None = None) -> bool:
    """Open a folder in the file manager; the fallback (download_dir) when it does not exist."""
    target = path if os.path.isdir(path) else fallback if fallback and os.path.isdir(fallback) else None
    if target is None:
        log.warning("folder %s does not exist (yet)", path)
        return False
    target = os.path.abspath(target)  # absolute: can never be read as an option
    try:
        if sys.platform == "win32":
            os.startfile(target)  # type: ignore[attr-defined]
        elif sys.platform == "darwin":
            subprocess.Popen(["open", "--", target], start_new_session=True)
        else:
            subprocess.Popen(["xdg-open", target], start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as exc:
        log.warning("could not open %s: %s", target, exc)
        return False
    return True
