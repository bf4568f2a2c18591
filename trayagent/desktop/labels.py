"""The words the desktop shows: sanitised one-line labels for downloads, shared by the tray's tooltip
and menu, the icons, desktop notifications and the CLI's tables.

Every name shown comes from a remote peer's file name, so it is sanitised before it reaches a
notification daemon (which renders markup in bodies), a command line (notify-send) or a terminal.
Pure text in, text out: no I/O, no third-party imports (headless runs import it too).
"""

from __future__ import annotations

import re
import unicodedata

# --------------------------------------------------------------------------- sanitising

TITLE_LIMIT = 100
BODY_LIMIT = 300
ELLIPSIS = "…"
#: Replaces a leading '-' so no text can be read as a command-line option (U+2010 HYPHEN).
SAFE_DASH = "\u2010"

#: Bidi embeddings/overrides/isolates and marks: they reorder what the user reads
#: ("gpj.exe" shown as "exe.jpg"). Zero-width joiners/BOM are stripped as invisible noise.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_INVISIBLE = "\u200b\u2060\ufeff"
_STRIP_RE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f" + _BIDI + _INVISIBLE + "]"
)
#: Terminal escape sequences (CSI like ESC[31m, OSC like ESC]0;title BEL): dropped whole, so
#: no "[31m" residue is left behind once the ESC itself is stripped.
_ANSI_RE = re.compile("\x1b\\[[0-?]*[ -/]*[@-~]|\x1b\\][^\x07\x1b]*(?:\x07|\x1b\\\\)?")
#: Lone surrogates (legal in slskd's .NET strings, not in any encoding): shown as U+FFFD.
_SURROGATE_RE = re.compile("[\ud800-\udfff]")
#: Whitespace-like controls become a space first so "a\nb" reads "a b", not "ab".
_SPACE_RE = re.compile("[\t\n\x0b\x0c\r\x85\u2028\u2029\\s]+")


def sanitize(text: str, limit: int, *, leading_dash: bool = True) -> str:
    """One safe line: no control/bidi characters, collapsed whitespace, at most `limit` chars.

    A leading '-' becomes U+2010 (looks the same) so the text can never be an option to a
    command it ends up on; pass leading_dash=False only for text that is never a whole argument.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    text = unicodedata.normalize("NFC", _SURROGATE_RE.sub("\ufffd", text))
    text = _ANSI_RE.sub("", text)
    text = _SPACE_RE.sub(" ", text)
    text = _STRIP_RE.sub("", text)
    text = _SPACE_RE.sub(" ", text).strip()
    if leading_dash and text.startswith("-"):
        text = SAFE_DASH + text[1:]
    limit = max(int(limit), 1)
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + ELLIPSIS
    return text


def escape_markup(text: str) -> str:
    """Escape &, < and > for notification bodies, which daemons render as a subset of HTML."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# --------------------------------------------------------------------------- file names

_SEP_RE = re.compile(r"[\\/]+")
_TRACK_NO_RE = re.compile(r"^\s*(?:\d{1,3}|[A-Da-d]\d{1,2})(?:\s*[-._)]\s*|\s+)(?=\S)")
_AUDIO_EXT = frozenset({"flac", "mp3", "ogg", "opus", "m4a", "aac", "wav", "aiff", "aif", "alac", "wma", "ape", "wv"})
#: Folder names that say nothing about the artist (share roots people commonly use).
_GENERIC_DIRS = frozenset(
    {
        "music", "musique", "musik", "mp3", "mp3s", "flac", "audio", "albums", "downloads", "download",
        "complete", "completed", "shared", "share", "shares", "soulseek", "slsk", "media", "my music",
    }
)


def path_segments(filename: str) -> list[str]:
    """Split a remote path on either separator, dropping empty parts."""
    return [s for s in _SEP_RE.split(filename or "") if s]


def folder_name(filename: str) -> str:
    """The remote file's parent folder name (slskd names the local folder after it), or ''."""
    parts = path_segments(filename)
    return parts[-2] if len(parts) >= 2 else ""


def folder_key(filename: str) -> str:
    """The full remote directory, used to group downloads of one album."""
    parts = path_segments(filename)
    return "\\".join(parts[:-1]).lower()


def track_title(filename: str) -> str:
    """A readable title: last path segment without extension or leading track number."""
    parts = path_segments(filename)
    name = parts[-1] if parts else ""
    stem, dot, ext = name.rpartition(".")
    if dot and stem and len(ext) <= 5 and " " not in ext:
        name = stem
    stripped = _TRACK_NO_RE.sub("", name)
    return stripped or name


def guess_artist(filename: str) -> str:
    """Best guess at the artist from the folder layout (Artist\\Album\\track or 'Artist - Album')."""
    parts = path_segments(filename)[:-1]
    if parts and parts[0].startswith("@@"):
        parts = parts[1:]
    if len(parts) >= 2 and parts[-2].strip().lower() not in _GENERIC_DIRS:
        return parts[-2]
    if parts:
        parent = parts[-1]
        if " - " in parent:
            return parent.split(" - ", 1)[0]
        return parent if parent.strip().lower() not in _GENERIC_DIRS else ""
    return ""


def is_audio(filename: str) -> bool:
    _, dot, ext = filename.rpartition(".")
    return bool(dot) and ext.lower() in _AUDIO_EXT


def track_label(filename: str, limit: int = 80) -> str:
    """'Title — Artist' (or just 'Title'), sanitised and capped: the one-line name of a download."""
    title = sanitize(track_title(filename), limit) or "(unnamed)"
    artist = sanitize(guess_artist(filename), limit, leading_dash=False)
    if artist and artist.casefold() != title.casefold():
        return sanitize(f"{title} — {artist}", limit)
    return title


def failure_text(reason: str | None, bytes_transferred: int = 0, error: str | None = None) -> str:
    """Why a download failed, in words a user understands."""
    if reason == "rejected":
        return "peer rejected the request"
    if reason == "timedout":
        return "timed out waiting in the peer's queue" if not bytes_transferred else "timed out"
    if reason == "errored":
        detail = sanitize(error or "", 120, leading_dash=False)
        return f"transfer error: {detail}" if detail else "transfer error"
    if reason == "aborted":
        return "aborted"
    if reason == "missing":
        return "disappeared from slskd"
    return "failed"


def short_reason(reason: str | None) -> str:
    """A one- or two-word reason for tight spaces such as menu items."""
    return {
        "rejected": "rejected",
        "timedout": "timed out",
        "errored": "error",
        "aborted": "aborted",
        "missing": "disappeared",
    }.get(reason or "", "failed")


def encodable(text: str, encoding: str) -> str:
    """`text` with whatever `encoding` cannot represent (lone surrogates too) replaced by '?'.

    Each backend gets text it can encode: a Latin-1 locale's argv, D-Bus's UTF-8.
    """
    try:
        return text.encode(encoding, "replace").decode(encoding, "replace")
    except LookupError:
        return text.encode("ascii", "replace").decode("ascii")
