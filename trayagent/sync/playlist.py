"""Playlist files -> the tracks the user wants.

Three formats: M3U/M3U8 (titles from `#EXTINF:duration,Artist - Title`, else from the file
path), CSV exports (Exportify, TuneMyMusic, Soundiiz... headers matched case-insensitively)
and plain text with one `Artist - Title` per line.

Real files are messy: a BOM, latin-1 from old Windows players, CRLF, a truncated last line.
Bad lines are skipped and logged, never fatal; only an unreadable file raises PlaylistError.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Iterable
from urllib.parse import unquote

from trayagent.errors import EXIT_USAGE, TrayagentError
from trayagent.sync.titles import key_of, normalise

log = logging.getLogger(__name__)

#: Separators between artist and title in "Artist - Title": hyphen, en dash, em dash.
_DASH_RE = re.compile(r"\s+[-\u2013\u2014]\s+")
_TRACKNO_RE = re.compile(r"^\s*(?:\d{1,3}|[A-Da-d]\d{1,2})(?:\s*[-._)]\s*|\s+)(?=\S)")
_EXTINF_RE = re.compile(r"^#EXTINF\s*:\s*(-?\d+(?:\.\d+)?)?([^,]*),(.*)$", re.IGNORECASE)

# Header names (folded) -> field. Exportify, Spotify/Apple/TuneMyMusic/Soundiiz exports.
_ARTIST_HEADERS = ("artist name(s)", "artist names", "artist name", "artist(s)", "artists",
                   "artist", "album artist name(s)", "performer", "creator", "band")
_TITLE_HEADERS = ("track name", "track title", "song name", "song title", "title", "track",
                  "song", "name")
# Exportify lists each credited artist's Spotify id beside the names: the count splits the names.
_ARTIST_ID_HEADERS = ("artist uri(s)", "artist uris", "artist ids", "artist id(s)")
_ALBUM_HEADERS = ("album name", "album title", "album", "release")
_DURATION_HEADERS = ("duration (ms)", "duration_ms", "duration ms", "track duration (ms)",
                     "duration", "length", "time", "duration (s)", "track duration")


class PlaylistError(TrayagentError):
    """A playlist that cannot be read at all (missing, a directory, unreadable): the user must fix the path."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True, slots=True)
class WantedTrack:
    """One track to obtain. `key` identifies it across playlists, runs and formats."""

    artist: str
    title: str
    album: str | None = None
    duration: float | None = None  # seconds
    source: str = field(default="", compare=False)
    #: Co-credited artists when the playlist says for certain (Exportify's artist list).
    featured: tuple[str, ...] = field(default=(), compare=False)

    @property
    def key(self) -> str:
        """Normalised primary artist + core title: the same song from two playlists is one."""
        return key_of(self.artist, self.title)

    @property
    def label(self) -> str:
        return f"{self.artist} - {self.title}"


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A playlist line that named no track: reported, so nothing vanishes without a word."""

    source: str
    line: int
    text: str
    reason: str

    def to_json(self) -> dict[str, object]:
        return {"source": self.source, "line": self.line, "text": self.text, "reason": self.reason}


def _skip(skipped: list[SkippedLine] | None, source: str, kind: str, lineno: int, text: str, reason: str) -> None:
    log.warning("%s:%d: %s, skipped: %r", source or kind, lineno, reason, text[:80])
    if skipped is not None:
        skipped.append(SkippedLine(source or kind, lineno, text[:200], reason))


# --------------------------------------------------------------------------- decoding


def decode(data: bytes) -> str:
    """Bytes -> text: honour a BOM, else UTF-8, else cp1252, else latin-1 (never fails)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _lines(text: str) -> list[str]:
    # splitlines also splits on \x0b, \x1c, \u2028...: only real line ends count here.
    return re.split(r"\r\n|\r|\n", text)


# --------------------------------------------------------------------------- helpers


def split_artist_title(text: str) -> tuple[str, str] | None:
    """'Artist - Title' -> (artist, title); None when there's no separator or a side is empty."""
    text = " ".join(text.split())
    parts = _DASH_RE.split(text, maxsplit=1)
    if len(parts) != 2:
        return None
    artist, title = parts[0].strip(), parts[1].strip()
    if not artist or not title:
        return None
    return artist, title


def split_exportify_artists(names: str, ids: str) -> list[str]:
    """Exportify's artist names, split into as many credits as it lists artist ids.

    watsonbox's layout joins names with ", " and escapes commas inside a name ("Tyler\\, The
    Creator"); pavelkomarov's joins with "," and no space. A split that does not give one name
    per id is not trusted: the names stay whole, as one credit.
    """
    count = len([i for i in ids.split(",") if i.strip()])
    whole = names.replace("\\,", ",").strip()
    if count <= 1:
        return [whole]
    for pattern in (r"(?<!\\),\s*", r",(?!\s)"):
        parts = [p.replace("\\,", ",").strip() for p in re.split(pattern, names)]
        if len(parts) == count and all(parts):
            return parts
    return [whole]


def _duration(value: str, header: str) -> float | None:
    """Seconds from '213000' (ms header or clearly ms), '213', '3:33' or '1:02:03'."""
    value = value.strip()
    if not value:
        return None
    if ":" in value:
        try:
            parts = [float(p) for p in value.split(":")]
        except ValueError:
            return None
        seconds = 0.0
        for part in parts:
            seconds = seconds * 60 + part
        return seconds if seconds > 0 else None
    try:
        number = float(value.replace(",", "."))
    except ValueError:
        return None
    if number <= 0:
        return None
    if "ms" in header or number > 36000:  # ten hours in seconds is not a song; it's ms
        number /= 1000.0
    return number


def _from_path(entry: str) -> tuple[str, str, str | None] | None:
    """Guess (artist, title, album) from a path such as 'Artist/Album/01 - Title.mp3'."""
    entry = entry.strip()
    if re.match(r"^[a-z][a-z0-9+.-]*://", entry, re.IGNORECASE) and not entry.lower().startswith("file://"):
        return None  # a stream URL names no track
    if entry.lower().startswith("file://"):
        entry = entry[7:]
    entry = unquote(entry)
    parts = list(PureWindowsPath(entry).parts)  # accepts both separators
    if not parts:
        return None
    name = parts[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = _TRACKNO_RE.sub("", stem).strip()
    pair = split_artist_title(stem)
    folders = [p for p in parts[:-1] if p not in ("\\", "/") and not p.endswith(":\\")]
    if pair:
        artist, title = pair
        # "Artist - 01 - Title" -> title "Title".
        rest = split_artist_title(title)
        if rest and re.fullmatch(r"\d{1,3}", rest[0]):
            title = rest[1]
        # Only "Artist/Album/Artist - Title.ext" names an album; "/music/x.mp3" does not.
        album = folders[-1] if len(folders) >= 2 and normalise(folders[-2]) == normalise(artist) else None
        return artist, title, album
    if len(folders) >= 2 and stem:
        return folders[-2], stem, folders[-1]
    return None


# --------------------------------------------------------------------------- formats


def parse_m3u(text: str, source: str = "", skipped: list[SkippedLine] | None = None) -> list[WantedTrack]:
    """M3U/M3U8: #EXTINF gives duration and 'Artist - Title'; else the path is read."""
    tracks: list[WantedTrack] = []
    pending: tuple[float | None, str] | None = None
    album: str | None = None
    artist_hint: str | None = None
    for lineno, raw in enumerate(_lines(text), 1):
        line = raw.strip().lstrip("\ufeff")
        if not line:
            continue
        if line.startswith("#"):
            match = _EXTINF_RE.match(line)
            if match:
                secs = float(match.group(1)) if match.group(1) else None
                pending = (secs if secs and secs > 0 else None, match.group(3).strip())
            elif line.upper().startswith("#EXTINF"):
                _skip(skipped, source, "m3u", lineno, line, "malformed #EXTINF line")
                pending = None
            elif line.upper().startswith("#EXTALB:"):
                album = line[8:].strip() or None
            elif line.upper().startswith("#EXTART:"):
                artist_hint = line[8:].strip() or None
            continue
        track: WantedTrack | None = None
        if pending is not None:
            secs, label = pending
            pair = split_artist_title(label)
            if pair is None and artist_hint and label:
                pair = (artist_hint, label)
            if pair is not None:
                track = WantedTrack(pair[0], pair[1], album, secs, source)
        if track is None:
            guess = _from_path(line)
            if guess is not None:
                secs = pending[0] if pending else None
                track = WantedTrack(guess[0], guess[1], album or guess[2], secs, source)
        if track is None:
            _skip(skipped, source, "m3u", lineno, line, "no artist and title")
        else:
            tracks.append(track)
        pending, album, artist_hint = None, None, None
    if pending is not None:  # #EXTINF with no path line after it (truncated file)
        pair = split_artist_title(pending[1])
        if pair is not None:
            tracks.append(WantedTrack(pair[0], pair[1], album, pending[0], source))
    return tracks


def _pick_column(headers: list[str], names: Iterable[str]) -> int | None:
    folded = [h.strip().strip("\ufeff").strip('"').casefold() for h in headers]
    for name in names:
        if name in folded:
            return folded.index(name)
    return None


def parse_csv(text: str, source: str = "", skipped: list[SkippedLine] | None = None) -> list[WantedTrack]:
    """CSV/TSV exports: artist and title columns required, album and duration optional."""
    sample = text[:8192]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows = csv.reader(io.StringIO(text, newline=""), dialect)
    try:
        header = next(rows)
    except (StopIteration, csv.Error):
        return []
    a_col = _pick_column(header, _ARTIST_HEADERS)
    t_col = _pick_column(header, _TITLE_HEADERS)
    al_col = _pick_column(header, _ALBUM_HEADERS)
    d_col = _pick_column(header, _DURATION_HEADERS)
    id_col = _pick_column(header, _ARTIST_ID_HEADERS)
    d_name = header[d_col].strip().casefold() if d_col is not None else ""
    if t_col is None:
        log.warning("%s: no title column among %r; nothing read", source or "csv", header[:10])
        return []
    tracks: list[WantedTrack] = []
    lineno = 1
    while True:
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. NUL byte or an unterminated quote
            _skip(skipped, source, "csv", lineno + 1, "", f"unreadable row ({exc})")
            break
        lineno += 1

        def cell(col: int | None) -> str:
            return row[col].strip() if col is not None and col < len(row) else ""

        artist, title = cell(a_col), cell(t_col)
        if a_col is None and title:
            pair = split_artist_title(title)
            if pair:
                artist, title = pair
        if not artist or not title:
            if any(c.strip() for c in row):
                _skip(skipped, source, "csv", lineno, ",".join(row), "row without artist or title")
            continue
        album = cell(al_col) or None
        duration = _duration(cell(d_col), d_name) if d_col is not None else None
        credits = split_exportify_artists(artist, cell(id_col)) if id_col is not None else [artist]
        tracks.append(WantedTrack(credits[0], title, album, duration, source, tuple(credits[1:])))
    return tracks


def parse_text(text: str, source: str = "", skipped: list[SkippedLine] | None = None) -> list[WantedTrack]:
    """Plain text: 'Artist - Title' per line; blank lines and '#' or '//' comments ignored."""
    tracks: list[WantedTrack] = []
    for lineno, raw in enumerate(_lines(text), 1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith(("#", "//")):
            continue
        line = _TRACKNO_RE.sub("", line) if re.match(r"^\d{1,3}[.)]\s", line) else line
        pair = split_artist_title(line)
        if pair is None and "\t" in raw:
            cells = [c.strip() for c in raw.split("\t") if c.strip()]
            if len(cells) >= 2:
                pair = (cells[0], cells[1])
        if pair is None:
            _skip(skipped, source, "text", lineno, line, "not 'Artist - Title'")
            continue
        tracks.append(WantedTrack(pair[0], pair[1], None, None, source))
    return tracks


def detect_format(name: str, text: str) -> str:
    """'m3u', 'csv' or 'text', from the extension and, for unknown ones, the content."""
    suffix = Path(name).suffix.lower()
    if suffix in (".m3u", ".m3u8"):
        return "m3u"
    if suffix in (".csv", ".tsv"):
        return "csv"
    head = text.lstrip("\ufeff").lstrip()[:4096]
    if head.upper().startswith("#EXTM3U"):
        return "m3u"
    first = _lines(head)[0] if head else ""
    for delimiter in ("\t", ",", ";"):
        if delimiter in first:
            cells = next(csv.reader([first], delimiter=delimiter))
            if _pick_column(cells, _TITLE_HEADERS) is not None:
                return "csv"
    return "text"


def parse_playlist_text(
    text: str, fmt: str, source: str = "", skipped: list[SkippedLine] | None = None
) -> list[WantedTrack]:
    """Parse already-decoded text in the given format; lines naming no track go to `skipped`."""
    if fmt == "m3u":
        return parse_m3u(text, source, skipped)
    if fmt == "csv":
        return parse_csv(text, source, skipped)
    return parse_text(text, source, skipped)


def parse_playlist(path: str | os.PathLike[str], skipped: list[SkippedLine] | None = None) -> list[WantedTrack]:
    """Read one playlist file; raises PlaylistError only when the file cannot be read."""
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise PlaylistError(f"playlist not found: {p}") from None
    except IsADirectoryError:
        raise PlaylistError(f"playlist is a directory: {p}") from None
    except OSError as exc:
        raise PlaylistError(f"cannot read playlist {p}: {exc.strerror or exc}") from None
    text = decode(data)
    fmt = detect_format(p.name, text)
    tracks = parse_playlist_text(text, fmt, str(p), skipped)
    log.info("%s: %d tracks (%s)", p, len(tracks), fmt)
    return tracks


def load_playlists(paths: Iterable[str | os.PathLike[str]], skipped: list[SkippedLine] | None = None) -> list[WantedTrack]:
    """Every track of every playlist, first occurrence wins, in playlist order."""
    seen: set[str] = set()
    out: list[WantedTrack] = []
    for path in paths:
        for track in parse_playlist(path, skipped):
            if track.key in seen:
                continue
            seen.add(track.key)
            out.append(track)
    return out


__all__ = [
    "PlaylistError", "SkippedLine", "WantedTrack", "split_exportify_artists", "decode", "detect_format", "load_playlists", "parse_csv",
    "parse_m3u", "parse_playlist", "parse_playlist_text", "parse_text", "split_artist_title",
]
