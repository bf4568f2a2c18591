"""Pure ranking of slskd search responses against one wanted track.

No I/O and no clock: the same wanted track, responses and preferences always give the same
list, so the pick is tested with plain tables (tests/ranking_cases.json).

How a file is judged:

1. Gates (the file is a *miss*, with the reason kept for the report): locked, not audio,
   title or artist not similar enough, another version than the one asked for (live, remix,
   karaoke, acoustic, cover, demo, sped up...: the file must carry exactly the strong versions
   the title asks for), duration outside the tolerance, preview-length, lossy below
   `min_bitrate`.
2. Order among the files that pass, each step deciding only between files equal so far:
   match (exact name, whole artist, same cut such as "Radio Edit", duration within a few
   seconds), then availability (a free slot or a queue shorter than `long_queue`), then the
   place of the format in `preferred_formats`, then free slot, shorter queue, higher bitrate,
   closer duration, faster peer; finally (username, filename) so response order never matters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Iterable, Mapping, Protocol, Sequence

from trayagent.config import SyncConfig
from trayagent.sync.titles import (
    artist_alternatives,
    core_title,
    describe_versions,
    folder_versions,
    key_of,
    name_versions,
    normalise,
    parse_title,
    tokens,
)

# Formats understood as audio; anything else (cue, log, jpg, nfo...) is never a candidate.
AUDIO_EXTENSIONS = frozenset(
    {"mp3", "flac", "ogg", "oga", "opus", "m4a", "aac", "wav", "aiff", "aif", "alac", "ape",
     "wma", "wv", "mpc"}
)
DEFAULT_FORMATS: tuple[str, ...] = ("flac", "mp3")
LOSSLESS_EXTENSIONS = frozenset({"flac", "wav", "aiff", "aif", "alac", "ape", "wv"})
_STOPWORDS = frozenset({"the", "a", "an", "and", "of", "feat", "ft", "featuring", "with"})
_TRACKNO_RE = re.compile(r"^(?:\d{1,3}|[a-d]\d{1,2})(?:\s*[-._)]\s*|\s+)")
_BRACKET_RE = re.compile(r"[(\[{][^)\]}]*[)\]}]")
_PREVIEW_WORDS = frozenset({"preview", "snippet", "sample"})


# --------------------------------------------------------------------------- similarity


def _token_match(a: str, b: str) -> bool:
    if a == b:
        return True
    if len(a) >= 4 and len(b) >= 4:
        return SequenceMatcher(None, a, b).ratio() >= 0.85
    return False


def token_recall(wanted: Sequence[str], have: Sequence[str]) -> float:
    """Share of the wanted words found (exactly, or with a small typo) among `have`."""
    if not wanted:
        return 0.0
    pool = list(have)
    hits = 0
    for word in wanted:
        for i, other in enumerate(pool):
            if _token_match(word, other):
                hits += 1
                del pool[i]
                break
    return hits / len(wanted)


def title_similarity(wanted_title: str, stem: str, context: Iterable[str] = ()) -> float:
    """How well a file stem names the wanted song, in [0, 1].

    Both sides are reduced to the song's name first (decorations and versions are judged
    elsewhere). Recall (the name's words found in the stem) times a factor for precision (the
    stem's own words that are not the name): "Help!" must not fully match "Help Me Rhonda".
    Words from `context` (artist, album, folder names) and track numbers don't count against it.
    """
    name = core_title(wanted_title)
    main = tokens(name)
    stem_name = parse_title(stem, frozenset(normalise(name).split())).name
    stem_all = _TRACKNO_RE.sub("", normalise(stem_name)).split()
    recall = token_recall(main, stem_all)
    if recall == 0.0:
        return 0.0
    ctx = {w for name in context for w in normalise(name).split()}
    own = [
        w for w in _TRACKNO_RE.sub("", normalise(_BRACKET_RE.sub(" ", stem_name))).split()
        if w not in _STOPWORDS and not w.isdigit() and (w not in ctx or w in main)
    ]
    own_hits = sum(1 for w in own if any(_token_match(w, m) for m in main))
    precision = own_hits / len(own) if own else 1.0
    return round(recall * (0.55 + 0.45 * precision), 4)


def artist_similarity(wanted_artist: str, haystack: str, featured: Iterable[str] = ()) -> float:
    """Best recall of the credit's words (whole, or one real co-artist) in a file's path."""
    have = normalise(haystack).split()
    best = 0.0
    for name in artist_alternatives(wanted_artist, featured):
        want = tokens(name)
        if want:
            best = max(best, token_recall(want, have))
    return best


# --------------------------------------------------------------------------- preferences, results


@dataclass(frozen=True, slots=True)
class RankPrefs:
    """What the user asked for in `[sync]`, plus the match gates (rarely changed)."""

    preferred_formats: tuple[str, ...] = DEFAULT_FORMATS
    min_bitrate: int = 0  # kbps, applies to lossy files only
    long_queue: int = 20  # a queue this long (and no free slot) outweighs the format
    min_title: float = 0.75
    min_artist: float = 0.6
    duration_tolerance: float = 15.0  # seconds; widened to 10% for long tracks
    min_length: float = 45.0  # seconds; shorter files are previews when no duration is wanted

    @classmethod
    def from_config(cls, cfg: SyncConfig) -> RankPrefs:
        """The user's `[sync]` choices; the match gates keep their own defaults."""
        return cls(
            preferred_formats=tuple(f.lower().lstrip(".") for f in cfg.preferred_formats),
            min_bitrate=cfg.min_bitrate,
            long_queue=cfg.long_queue,
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """One file of one peer that passed the gates, with the numbers that ranked it."""

    username: str
    filename: str
    size: int
    extension: str
    score: float  # match quality in [0, 2]: 1 for an exact match, plus similarity
    bitrate: int | None = None
    length: float | None = None
    has_free_slot: bool = False
    queue_length: int = 0
    upload_speed: int = 0
    title_sim: float = 0.0
    artist_sim: float = 0.0
    sort_key: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.username, self.filename)

    def describe(self) -> str:
        """"08 - Get Lucky.flac (flac, free slot) from best" for reports and logs."""
        slot = "free slot" if self.has_free_slot else f"queue {self.queue_length}"
        quality = self.extension if self.bitrate is None or self.extension in LOSSLESS_EXTENSIONS \
            else f"{self.extension} {self.bitrate} kbps"
        return f"{short_path(self.filename)} ({quality}, {slot}) from {self.username}"

    def to_json(self) -> dict[str, object]:
        return {
            "username": self.username, "filename": self.filename, "size": self.size,
            "extension": self.extension, "score": self.score, "bitrate": self.bitrate,
            "length": self.length, "has_free_slot": self.has_free_slot,
            "queue_length": self.queue_length, "upload_speed": self.upload_speed,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> Candidate:
        """Back from `to_json`: the store keeps each track's pool of candidates as JSON."""
        bitrate, length = _num(obj.get("bitrate")), _num(obj.get("length"))
        return cls(
            username=str(obj["username"]), filename=str(obj["filename"]),
            size=int(_num(obj.get("size")) or 0), extension=str(obj.get("extension") or ""),
            score=_num(obj.get("score")) or 0.0, bitrate=int(bitrate) if bitrate is not None else None,
            length=length, has_free_slot=bool(obj.get("has_free_slot")),
            queue_length=int(_num(obj.get("queue_length")) or 0),
            upload_speed=int(_num(obj.get("upload_speed")) or 0),
        )


@dataclass(frozen=True, slots=True)
class Miss:
    """A file that was close but did not pass, and why: the report's "best was X (why)"."""

    username: str
    filename: str
    why: str
    closeness: float  # orders misses: the right song in the wrong version beats another song

    def describe(self) -> str:
        return f"{short_path(self.filename)} from {self.username} ({self.why})"

    def to_json(self) -> dict[str, str]:
        return {"username": self.username, "filename": self.filename, "why": self.why}


@dataclass(frozen=True, slots=True)
class Ranking:
    """Everything one search taught: the candidates, the closest misses, how much came back."""

    candidates: list[Candidate]
    misses: list[Miss]
    files: int  # audio files seen, locked ones included
    peers: int

    def verdict(self) -> str:
        """Why nothing matched, in words: "no results" or "N files ..., none matched: best was X (why)"."""
        if not self.files:
            return "no results"
        text = f"{self.files} file{'s' if self.files != 1 else ''} from {self.peers} " \
               f"peer{'s' if self.peers != 1 else ''}, none matched"
        if self.misses:
            text += f": best was {self.misses[0].describe()}"
        return text


class Wanted(Protocol):
    """What ranking needs of a wanted track (playlist.WantedTrack satisfies it)."""

    @property
    def artist(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def duration(self) -> float | None: ...


def short_path(filename: str) -> str:
    """The last folder and the file name: enough to recognise a file in a report."""
    return "\\".join(split_path(filename)[-2:])


def split_path(filename: str) -> list[str]:
    """Split a peer's path on either separator (peers send '\\' or '/')."""
    return [p for p in re.split(r"[\\/]+", filename) if p]


def file_extension(filename: str, declared: object = None) -> str:
    """Lower-case extension without the dot; slskd's own field first, the name as fallback."""
    if isinstance(declared, str) and declared.strip():
        return declared.strip().lower().lstrip(".")
    last = split_path(filename)[-1] if filename else ""
    return last.rsplit(".", 1)[-1].lower() if "." in last else ""


def _num(value: object) -> float | None:
    """A positive number from JSON, else None (a bool, a string, NaN, zero or below are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value <= 0:
        return None
    return float(value)


# --------------------------------------------------------------------------- judging one file


@dataclass(frozen=True, slots=True)
class _Want:
    """The wanted track, read once per ranking."""

    title: str
    artist: str
    album: str
    featured: tuple[str, ...]
    duration: float | None
    versions: frozenset[str]
    soft: frozenset[str]
    details: tuple[str, ...]
    known_words: frozenset[str]  # the name's and artist's words: never version markers
    ignore: tuple[str, ...]  # names blanked before reading versions off folder names

    @classmethod
    def of(cls, wanted: Wanted) -> _Want:
        parts = parse_title(wanted.title)
        album = getattr(wanted, "album", None) or ""
        featured = tuple(getattr(wanted, "featured", ()) or ()) + parts.featured
        ignore = (wanted.artist, parts.name, *featured)
        known = {w for text in ignore for w in normalise(text).split()}
        return cls(
            title=wanted.title, artist=wanted.artist, album=album, featured=featured,
            duration=_num(getattr(wanted, "duration", None)),
            versions=parts.versions | frozenset(folder_versions(album, ignore)),
            soft=parts.soft, details=parts.details, known_words=frozenset(known), ignore=ignore,
        )


def _describe(versions: Iterable[str]) -> str:
    return describe_versions(v[len("version "):] if v.startswith("version ") else v for v in versions)


def _version_mismatch(want: _Want, stem: str, folders: Sequence[str]) -> tuple[str | None, frozenset[str]]:
    """Why the file is another version than the one asked for (None if it is the same), and its cut."""
    strong, soft, stem_words = name_versions(stem, want.known_words)
    for folder in folders[-2:]:
        strong |= folder_versions(folder, want.ignore)
    extra = strong - want.versions
    if extra:
        return f"{_describe(extra)} version, not asked for", frozenset(soft)
    missing = want.versions - strong
    if missing:
        return f"not the {_describe(missing)} version asked for", frozenset(soft)
    if "remix" in want.versions and want.details:
        have = set(stem_words) | {w for f in folders for w in normalise(f).split()}
        if not all(any(_token_match(d, h) for h in have) for d in want.details):
            return f"another remix (wanted the {' '.join(want.details)} remix)", frozenset(soft)
    return None, frozenset(soft)


def _format_rank(ext: str, preferred: Sequence[str]) -> int:
    if ext in preferred:
        return preferred.index(ext)
    return len(preferred) + (0 if ext in LOSSLESS_EXTENSIONS else 1)


def _seconds(value: float) -> str:
    return f"{int(value) // 60}:{int(value) % 60:02d}"


def _length_gate(want: _Want, length: float | None, estimated: bool, stem_words: set[str],
                 prefs: RankPrefs) -> tuple[str | None, float | None]:
    """Duration and preview checks: (why it fails or None, seconds off the wanted duration)."""
    if _PREVIEW_WORDS & (stem_words - want.known_words):
        return "a preview", None
    if want.duration is not None and length is not None:
        diff = abs(length - want.duration)
        tol = max(prefs.duration_tolerance, 0.10 * want.duration) * (2.0 if estimated else 1.0)
        if diff > tol:
            return f"{_seconds(length)} long, wanted {_seconds(want.duration)}", None
        return None, None if estimated else diff
    if want.duration is None and length is not None and length < prefs.min_length:
        return f"preview-length ({length:.0f} s)", None
    return None, None


def judge_file(
    want: _Want, response: Mapping[str, object], file: Mapping[str, object], prefs: RankPrefs,
    locked: bool = False,
) -> Candidate | Miss | None:
    """One file of one response: a Candidate, a Miss with the reason, or None (junk, not audio)."""
    filename, username = file.get("filename"), response.get("username")
    if not isinstance(filename, str) or not filename or not isinstance(username, str) or not username:
        return None
    ext = file_extension(filename, file.get("extension"))
    if ext not in AUDIO_EXTENSIONS:
        return None
    parts = split_path(filename)
    stem, folders = parts[-1].rsplit(".", 1)[0], parts[-3:-1]
    t_sim = title_similarity(want.title, stem, [want.artist, want.album, *folders])
    a_sim = artist_similarity(want.artist, " ".join([*folders, stem]), want.featured)
    base = t_sim + a_sim

    def miss(why: str, right_song: bool = True) -> Miss:
        return Miss(username, filename, why, (2.0 if right_song else 0.0) + base)

    if t_sim < prefs.min_title:
        return miss("another title", right_song=False)
    if a_sim < prefs.min_artist:
        return miss("another artist", right_song=False)
    if locked or file.get("isLocked") is True:
        return miss("locked by the peer")
    why, soft = _version_mismatch(want, stem, folders)
    if why:
        return miss(why)
    size = int(_num(file.get("size")) or 0)
    length = _num(file.get("length"))
    bitrate = _num(file.get("bitRate"))
    lossless = ext in LOSSLESS_EXTENSIONS
    if bitrate is None and length and size and not lossless:
        bitrate = size * 8 / length / 1000.0  # estimated; peers often omit it
    estimated = length is None and bool(bitrate and size) and not lossless
    if estimated:
        length = size * 8 / (bitrate * 1000.0)  # type: ignore[operator]
    why, diff = _length_gate(want, length, estimated, set(normalise(stem).split()), prefs)
    if why:
        return miss(why)
    if not lossless and prefs.min_bitrate and bitrate is not None and bitrate < prefs.min_bitrate - 1:
        return miss(f"{bitrate:.0f} kbps, below min_bitrate {prefs.min_bitrate}")
    return _candidate(want, response, username, filename, ext, size, length, bitrate, t_sim, a_sim, soft,
                      diff, prefs)


def _candidate(want: _Want, response: Mapping[str, object], username: str, filename: str, ext: str, size: int,
               length: float | None, bitrate: float | None, t_sim: float, a_sim: float,
               soft: frozenset[str], diff: float | None, prefs: RankPrefs) -> Candidate:
    """Place a file that passed every gate: the order in the module doc, as a sort key."""
    free = response.get("hasFreeUploadSlot") is True
    queue = int(_num(response.get("queueLength")) or 0)
    speed = int(_num(response.get("uploadSpeed")) or 0)
    close = diff is None or want.duration is None or diff <= max(3.0, 0.02 * want.duration)
    exact = t_sim >= 0.95 and a_sim >= 0.99 and soft == want.soft and close
    available = free or queue < prefs.long_queue
    quality = 99 if ext in LOSSLESS_EXTENSIONS else int(min(bitrate or 0.0, 320.0) // 64)
    sort_key = (0 if exact else 1, 0 if available else 1, _format_rank(ext, prefs.preferred_formats),
                -quality, 0 if free else 1, queue, round(diff) if diff is not None else 5,
                -int(math.log2(1 + speed)))
    dur_score = 0.5 if diff is None or want.duration is None else max(0.0, 1.0 - diff / 15.0)
    return Candidate(
        username=username, filename=filename, size=size, extension=ext,
        score=round((1.0 if exact else 0.0) + 0.5 * t_sim + 0.3 * a_sim + 0.2 * dur_score, 4),
        bitrate=int(round(bitrate)) if bitrate is not None else None, length=length,
        has_free_slot=free, queue_length=queue, upload_speed=speed, title_sim=t_sim, artist_sim=a_sim,
        sort_key=sort_key,
    )


# --------------------------------------------------------------------------- ranking


def rank_files(
    wanted: Wanted,
    responses: Iterable[Mapping[str, object]],
    prefs: RankPrefs | None = None,
    exclude: Iterable[tuple[str, str]] = (),
    keep_misses: int = 3,
) -> Ranking:
    """Every acceptable file across all responses, best first, and the closest misses.

    `exclude` holds (username, filename) pairs already tried for this track: they are skipped
    silently. Files under a response's `lockedFiles` can never be downloaded: misses at best.
    """
    prefs = prefs or RankPrefs()
    want = _Want.of(wanted)
    banned = set(exclude)
    seen: set[tuple[str, str]] = set()
    found: list[Candidate] = []
    misses: list[Miss] = []
    files, peers = 0, set()
    for response in responses:
        if not isinstance(response, Mapping):
            continue
        for listed, locked in ((response.get("files"), False), (response.get("lockedFiles"), True)):
            for file in listed if isinstance(listed, list) else ():
                if not isinstance(file, Mapping):
                    continue
                verdict = judge_file(want, response, file, prefs, locked)
                if verdict is None:
                    continue
                files += 1
                peers.add(verdict.username)
                key = (verdict.username, verdict.filename)
                if key in banned or key in seen:
                    continue
                seen.add(key)
                if isinstance(verdict, Candidate):
                    found.append(verdict)
                else:
                    misses.append(verdict)
    found.sort(key=lambda c: (c.sort_key, c.username, c.filename))
    misses.sort(key=lambda m: (-m.closeness, m.username, m.filename))
    return Ranking(found, misses[:keep_misses], files, len(peers))


def rank(
    wanted: Wanted,
    responses: Iterable[Mapping[str, object]],
    prefs: RankPrefs | None = None,
    exclude: Iterable[tuple[str, str]] = (),
) -> list[Candidate]:
    """The acceptable files only, best first (see `rank_files`)."""
    return rank_files(wanted, responses, prefs, exclude).candidates


__all__ = [
    "AUDIO_EXTENSIONS", "Candidate", "Miss", "RankPrefs", "Ranking", "artist_similarity",
    "core_title", "file_extension", "key_of", "normalise", "rank", "rank_files", "short_path",
    "title_similarity", "tokens",
]
