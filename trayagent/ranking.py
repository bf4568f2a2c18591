"""Pure ranking of slskd search responses against one wanted track.

No I/O and no clock: given the same wanted track, responses and preferences, `rank` always
returns the same list, so the pick is unit-tested with plain tables of candidates.

How a file is judged, in order:

1. Hard gates (the file is dropped): locked (listed under `lockedFiles` or flagged), not an
   audio file, already failed for this track (`exclude`), title or artist similarity below
   the minimum, duration outside the tolerance when both durations are known, a lossy file
   whose (known or estimated) bitrate is below `min_bitrate`.
2. A score in [0, 1], a weighted sum of: title and artist similarity, duration closeness,
   format preference (earlier in `preferred_formats` is better), bitrate, free upload slot,
   short peer queue and upload speed. Words that mark another version of the song
   ("live", "remix", "karaoke"...) absent from the wanted title cost a penalty.
3. Ties break on (username, filename) so the order never depends on response order.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any, Iterable, Mapping, Protocol, Sequence

# Formats understood as audio; anything else (cue, log, jpg, nfo...) is never a candidate.
AUDIO_EXTENSIONS = frozenset(
    {"mp3", "flac", "ogg", "oga", "opus", "m4a", "aac", "wav", "aiff", "aif", "alac", "ape",
     "wma", "wv", "mpc"}
)
DEFAULT_FORMATS: tuple[str, ...] = ("flac", "mp3")
LOSSLESS_EXTENSIONS = frozenset({"flac", "wav", "aiff", "aif", "alac", "ape", "wv"})

#: Words that, when in a file name but not in the wanted title, mean a different recording.
VARIANT_WORDS = frozenset(
    {"live", "remix", "rmx", "karaoke", "instrumental", "acoustic", "cover", "demo", "edit",
     "reprise", "acapella", "unplugged", "mashup", "bootleg", "nightcore", "sped", "slowed",
     "rehearsal", "extended"}
)
#: Variants so different that a missing "karaoke" in the wanted title is almost never right.
STRONG_VARIANT_WORDS = frozenset({"karaoke", "instrumental", "acapella", "nightcore", "cover"})

_STOPWORDS = frozenset({"the", "a", "an", "and", "of", "feat", "ft", "featuring", "with"})
# Decorations that name the same recording: "(Remastered 2011)", "[Explicit]", "- 2009 Remaster".
_DECORATION_RE = re.compile(
    r"\s*[(\[][^)\]]*\b(remaster(ed)?|explicit|clean|mono|stereo|album version|single version|"
    r"original mix|bonus track|deluxe)\b[^)\]]*[)\]]"
    r"|\s+-\s+(\d{4}\s+)?(remaster(ed)?|digital remaster|explicit|mono|stereo)(\s+\d{4})?(\s+version)?\s*$",
    re.IGNORECASE,
)
_FEAT_RE = re.compile(r"\s*[(\[]?\b(feat\.?|ft\.?|featuring)\s+[^)\]]*[)\]]?", re.IGNORECASE)
_ARTIST_SPLIT_RE = re.compile(r"\s*(?:,|;|\s/\s|\s&\s|\sx\s|\bfeat\.?\s|\bft\.?\s|\bfeaturing\s)\s*", re.IGNORECASE)
_TRACKNO_RE = re.compile(r"^(?:\d{1,3}|[a-d]\d{1,2})(?:\s*[-._)]\s*|\s+)")


# --------------------------------------------------------------------------- normalisation


def normalise(text: str | None) -> str:
    """Fold case, accents, punctuation and '&' so names compare across taggers and OSes."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold().replace("&", " and ").replace("ß", "ss")
    text = text.replace("'", "").replace("\u2019", "")  # don't -> dont, not don t
    text = re.sub(r"[^\w]+|_", " ", text)
    return " ".join(text.split())


def tokens(text: str | None) -> list[str]:
    """The significant words of a name (stopwords dropped unless nothing else is left)."""
    words = normalise(text).split()
    kept = [w for w in words if w not in _STOPWORDS]
    return kept or words


def core_title(title: str) -> str:
    """The title without featured artists and remaster/explicit decorations (same recording)."""
    out = _FEAT_RE.sub("", title)
    out = _DECORATION_RE.sub("", out)
    return out.strip() or title.strip()


def split_artists(artist: str) -> list[str]:
    """'A, B & C feat. D' -> ['A', 'B', 'C', 'D'], the whole string first so duos still match."""
    parts = [p.strip() for p in _ARTIST_SPLIT_RE.split(artist or "") if p and p.strip()]
    whole = (artist or "").strip()
    out = [whole] if whole else []
    for part in parts:
        if part not in out:
            out.append(part)
    return out


def primary_artist(artist: str) -> str:
    """The first credited artist, the one a folder on a peer is most likely named after."""
    parts = [p.strip() for p in _ARTIST_SPLIT_RE.split(artist or "") if p and p.strip()]
    return parts[0] if parts else (artist or "").strip()


def key_of(artist: str, title: str) -> str:
    """Stable identity of a wanted track: normalised primary artist and core title."""
    return f"{normalise(primary_artist(artist))}|{normalise(core_title(title))}"


def search_query(artist: str, title: str) -> str:
    """The one search text for a track: primary artist and core title, punctuation-free.

    Soulseek treats a leading '-' as exclusion and matches whole words, so only plain words go.
    """
    return " ".join(normalise(primary_artist(artist)).split() + normalise(core_title(title)).split())


def loose_query(artist: str, title: str) -> str:
    """A looser text, used only when the first search found nothing.

    Drops bracketed parts of the title and the artist; a title of fewer than two real words
    keeps the artist's longest word so the search stays specific enough to be polite. When
    that equals `search_query`, nothing looser is worth a search (the caller compares).
    """
    bare = re.sub(r"[(\[][^)\]]*[)\]]", " ", core_title(title))
    bare = re.split(r"\s+-\s+", bare)[0]
    title_words = [w for w in normalise(bare).split() if len(w) > 1] or normalise(bare).split()
    if len([w for w in title_words if len(w) >= 3]) >= 2:
        words = title_words
    else:
        artist_words = sorted(tokens(primary_artist(artist)), key=len, reverse=True)
        words = artist_words[:1] + title_words
    return " ".join(words)


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


_BRACKET_RE = re.compile(r"[(\[{][^)\]}]*[)\]}]")


def title_similarity(wanted_title: str, stem: str, context: Iterable[str] = ()) -> float:
    """How well a file stem names the wanted title, in [0, 1].

    recall (the title's words found in the stem) times a factor for precision (the stem's own
    words that are not the title): "Help!" must not fully match "Help Me Rhonda". Words that
    come from `context` (artist, album, folder names), track numbers and bracketed
    decorations of the stem don't count against precision; variants are penalised elsewhere.
    Bracketed words of the wanted title ("(Radio Edit)") only nudge the score.
    """
    title = core_title(wanted_title)
    main = tokens(_BRACKET_RE.sub(" ", title)) or tokens(title)
    extra = [w for w in tokens(" ".join(_BRACKET_RE.findall(title))) if w not in main]
    stem_all = _TRACKNO_RE.sub("", normalise(stem)).split()
    recall = token_recall(main, stem_all)
    if recall == 0.0:
        return 0.0
    ctx = {w for name in context for w in normalise(name).split()}
    own = [
        w for w in _TRACKNO_RE.sub("", normalise(_BRACKET_RE.sub(" ", stem))).split()
        if w not in _STOPWORDS and not w.isdigit() and (w not in ctx or w in main)
    ]
    own_hits = sum(1 for w in own if any(_token_match(w, m) for m in main))
    precision = own_hits / len(own) if own else 1.0
    extra_recall = token_recall(extra, stem_all) if extra else 1.0
    return round(recall * (0.55 + 0.45 * precision) * (0.9 + 0.1 * extra_recall), 4)


def artist_similarity(wanted_artist: str, haystack: str) -> float:
    """Best recall of any credited artist's words in the file's path (stem and folders)."""
    have = normalise(haystack).split()
    best = 0.0
    for name in split_artists(wanted_artist):
        want = tokens(name)
        if want:
            best = max(best, token_recall(want, have))
    return best


# --------------------------------------------------------------------------- candidates


@dataclass(frozen=True, slots=True)
class RankPrefs:
    """What the user asked for in `[sync]`, plus the match gates (rarely changed)."""

    preferred_formats: tuple[str, ...] = DEFAULT_FORMATS
    min_bitrate: int = 0  # kbps, applies to lossy files only
    min_title: float = 0.75
    min_artist: float = 0.6
    duration_tolerance: float = 15.0  # seconds; widened to 10% for long tracks

    @classmethod
    def from_config(cls, cfg: Any) -> RankPrefs:
        """Build from `config.sync` (anything with those attributes; missing ones default)."""
        formats = getattr(cfg, "preferred_formats", None)
        formats = DEFAULT_FORMATS if formats is None else formats
        return cls(
            preferred_formats=tuple(str(f).lower().lstrip(".") for f in formats),
            min_bitrate=int(getattr(cfg, "min_bitrate", 0) or 0),
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    """One file of one peer that passed the gates, with the numbers that ranked it."""

    username: str
    filename: str
    size: int
    extension: str
    score: float
    bitrate: int | None = None
    length: float | None = None
    has_free_slot: bool = False
    queue_length: int = 0
    upload_speed: int = 0
    title_sim: float = 0.0
    artist_sim: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.username, self.filename)

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username, "filename": self.filename, "size": self.size,
            "extension": self.extension, "score": self.score, "bitrate": self.bitrate,
            "length": self.length, "has_free_slot": self.has_free_slot,
            "queue_length": self.queue_length, "upload_speed": self.upload_speed,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Candidate:
        return cls(
            username=str(obj["username"]), filename=str(obj["filename"]),
            size=int(obj.get("size") or 0), extension=str(obj.get("extension") or ""),
            score=float(obj.get("score") or 0.0), bitrate=obj.get("bitrate"),
            length=obj.get("length"), has_free_slot=bool(obj.get("has_free_slot")),
            queue_length=int(obj.get("queue_length") or 0),
            upload_speed=int(obj.get("upload_speed") or 0),
        )


class Wanted(Protocol):
    """What ranking needs of a wanted track (playlist.WantedTrack satisfies it)."""

    @property
    def artist(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def duration(self) -> float | None: ...


def split_path(filename: str) -> list[str]:
    """Split a peer's path on either separator (peers send '\\' or '/')."""
    return [p for p in re.split(r"[\\/]+", filename) if p]


def file_extension(filename: str, declared: Any = None) -> str:
    """Lower-case extension without the dot; slskd's own field first, the name as fallback."""
    if isinstance(declared, str) and declared.strip():
        return declared.strip().lower().lstrip(".")
    last = split_path(filename)[-1] if filename else ""
    return last.rsplit(".", 1)[-1].lower() if "." in last else ""


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value != value or value <= 0:
        return None
    return float(value)


def _format_score(ext: str, preferred: Sequence[str]) -> float:
    if not preferred:
        return 1.0 if ext in LOSSLESS_EXTENSIONS else 0.8
    if ext in preferred:
        return 1.0 - 0.5 * preferred.index(ext) / max(len(preferred), 1)
    return 0.2


def _bitrate_score(ext: str, bitrate: float | None) -> float:
    if ext in LOSSLESS_EXTENSIONS:
        return 1.0
    if bitrate is None:
        return 0.5
    return max(0.0, min(1.0, (bitrate - 96.0) / (320.0 - 96.0)))


def _duration_tolerance(wanted: float, prefs: RankPrefs) -> float:
    return max(prefs.duration_tolerance, 0.10 * wanted)


def score_file(
    wanted: Wanted, response: Mapping[str, Any], file: Mapping[str, Any], prefs: RankPrefs
) -> Candidate | None:
    """Judge one file of one response: None if a gate rejects it, else a scored Candidate."""
    filename = file.get("filename")
    username = response.get("username")
    if not isinstance(filename, str) or not filename or not isinstance(username, str) or not username:
        return None
    if file.get("isLocked") is True:
        return None
    ext = file_extension(filename, file.get("extension"))
    if ext not in AUDIO_EXTENSIONS:
        return None
    parts = split_path(filename)
    stem = parts[-1].rsplit(".", 1)[0] if parts else ""
    haystack = " ".join(parts[-3:-1] + [stem])

    album = getattr(wanted, "album", None) or ""
    t_sim = title_similarity(wanted.title, stem, [wanted.artist, album, *parts[-3:-1]])
    if t_sim < prefs.min_title:
        return None
    a_sim = artist_similarity(wanted.artist, haystack)
    if a_sim < prefs.min_artist:
        return None

    length = _num(file.get("length"))
    size = int(_num(file.get("size")) or 0)
    want_dur = _num(getattr(wanted, "duration", None))
    if want_dur is not None and length is not None:
        diff = abs(length - want_dur)
        tol = _duration_tolerance(want_dur, prefs)
        if diff > tol:
            return None
        dur_score = 1.0 - diff / tol
    else:
        dur_score = 0.5

    bitrate = _num(file.get("bitRate"))
    if bitrate is None and length and size and ext not in LOSSLESS_EXTENSIONS:
        bitrate = size * 8 / length / 1000.0  # estimated; peers often omit it
    if ext not in LOSSLESS_EXTENSIONS and prefs.min_bitrate and bitrate is not None:
        if bitrate < prefs.min_bitrate - 1:  # 319.9 from estimation still counts as 320
            return None

    stem_words = set(normalise(stem).split())
    want_words = set(normalise(wanted.title).split())
    extra = (stem_words - want_words) & VARIANT_WORDS
    penalty = 0.0
    if extra & STRONG_VARIANT_WORDS:
        penalty = 0.6
    elif extra:
        penalty = 0.35  # outweighs format and slot: another recording is the last resort

    free = response.get("hasFreeUploadSlot") is True
    queue = int(_num(response.get("queueLength")) or 0)
    speed = int(_num(response.get("uploadSpeed")) or 0)
    queue_score = 1.0 / (1.0 + queue / 5.0)
    speed_score = min(1.0, math.log10(1 + speed) / 7.0)  # 10 MB/s -> 1.0

    score = (
        0.20 * t_sim
        + 0.10 * a_sim
        + 0.10 * dur_score
        + 0.20 * _format_score(ext, prefs.preferred_formats)
        + 0.05 * _bitrate_score(ext, bitrate)
        + 0.20 * (1.0 if free else 0.0)
        + 0.10 * queue_score
        + 0.05 * speed_score
        - penalty
    )
    return Candidate(
        username=username,
        filename=filename,
        size=size,
        extension=ext,
        score=round(score, 6),
        bitrate=int(round(bitrate)) if bitrate is not None else None,
        length=length,
        has_free_slot=free,
        queue_length=queue,
        upload_speed=speed,
        title_sim=t_sim,
        artist_sim=a_sim,
    )


def rank(
    wanted: Wanted,
    responses: Iterable[Mapping[str, Any]],
    prefs: RankPrefs | None = None,
    exclude: Iterable[tuple[str, str]] = (),
) -> list[Candidate]:
    """Every acceptable file across all responses, best first; `exclude` holds (user, file).

    `wanted` is anything with `artist`, `title` and `duration` (a WantedTrack). Files listed
    under a response's `lockedFiles` are never returned: they cannot be downloaded.
    """
    prefs = prefs or RankPrefs()
    banned = set(exclude)
    seen: set[tuple[str, str]] = set()
    out: list[Candidate] = []
    for response in responses:
        if not isinstance(response, Mapping):
            continue
        files = response.get("files")
        if not isinstance(files, list):
            continue
        for file in files:
            if not isinstance(file, Mapping):
                continue
            cand = score_file(wanted, response, file, prefs)
            if cand is None or cand.key in banned or cand.key in seen:
                continue
            seen.add(cand.key)
            out.append(cand)
    out.sort(key=lambda c: (-c.score, c.username, c.filename))
    return out


__all__ = [
    "AUDIO_EXTENSIONS", "Candidate", "RankPrefs", "artist_similarity", "core_title",
    "file_extension", "key_of", "loose_query", "normalise", "primary_artist", "rank",
    "score_file", "search_query", "split_artists", "title_similarity", "tokens",
]
