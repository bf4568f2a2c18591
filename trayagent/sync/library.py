"""The music folder: which wanted tracks are already there, so they are never searched."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from trayagent.sync.playlist import WantedTrack, split_artist_title
from trayagent.sync.ranking import AUDIO_EXTENSIONS
from trayagent.sync.titles import key_of

log = logging.getLogger(__name__)


class LocalLibrary:
    """Normalised (artist, title) keys of the audio files already in the music folder.

    Tags first (mutagen), the file name ("Artist - Title", or "Artist/Album/01 Title") when
    a file has no usable tags or mutagen is missing. Each artist credit counts whole (several
    artist tags are several credits), so a local "Earth - September" is not Earth, Wind &
    Fire's, and "Clocks (Live)" is not "Clocks".
    """

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = Path(root).expanduser() if root else None
        self._keys: set[str] | None = None

    def keys(self) -> set[str]:
        if self._keys is None:
            self._keys = self._scan()
        return self._keys

    def contains(self, track: WantedTrack) -> bool:
        return track.key in self.keys()

    def _scan(self) -> set[str]:
        keys: set[str] = set()
        if self.root is None or not self.root.is_dir():
            if self.root is not None:
                log.warning("music folder %s does not exist; nothing counts as present", self.root)
            return keys
        try:
            import mutagen  # noqa: F401
            have_mutagen = True
        except ImportError:  # pragma: no cover - mutagen is a dependency
            have_mutagen = False
            log.warning("mutagen is not installed; matching the music folder by file names only")
        count = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
                if ext not in AUDIO_EXTENSIONS:
                    continue
                path = Path(dirpath) / name
                count += 1
                pairs = _tag_pairs(path) if have_mutagen else []
                if not pairs:
                    pairs = _name_pairs(path, self.root)
                for artist, title in pairs:  # each credit whole: "Earth" is not Earth, Wind & Fire
                    keys.add(key_of(artist, title))
        log.info("music folder %s: %d audio files, %d known tracks", self.root, count, len(keys))
        return keys


def _tag_pairs(path: Path) -> list[tuple[str, str]]:
    try:
        import mutagen

        audio = mutagen.File(path, easy=True)
    except Exception as exc:  # mutagen raises many types on broken files; never fatal
        log.debug("cannot read tags of %s: %s", path, exc)
        return []
    if audio is None or not getattr(audio, "tags", None):
        return []
    titles = audio.tags.get("title") or []
    artists = (audio.tags.get("artist") or []) + (audio.tags.get("albumartist") or [])
    return [(a, t) for t in titles[:1] for a in artists if a and t]


def _name_pairs(path: Path, root: Path) -> list[tuple[str, str]]:
    stem = re.sub(r"^\s*\d{1,3}(?:\s*[-._)]\s*|\s+)", "", path.stem)
    pair = split_artist_title(stem)
    if pair:
        artist, title = pair
        rest = split_artist_title(title)
        if rest and rest[0].isdigit():
            title = rest[1]
        return [(artist, title)]
    rel = path.relative_to(root).parts
    if len(rel) >= 3:  # Artist/Album/Title.ext
        return [(rel[-3], stem)]
    return []


__all__ = ["LocalLibrary"]
