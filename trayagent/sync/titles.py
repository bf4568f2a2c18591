"""What a track's name says: the song's name, the version asked for, the credited artists.

Streaming services decorate titles: `" - From \\"Top Gun: Maverick\\""`, `" - 2011 Remaster"`,
`" - Single Version"`, `"(feat. X)"`. None of that is part of the song's name, so none of it may
go into a search (peers match every word) or count against a file's name. Some decorations do
name another recording, though (`" - Live at Wembley"`, `"(Kygo Remix)"`, `"(Taylor's Version)"`):
those become *versions*, which a file must carry too, and nothing else.

Pure functions, no I/O: ranking, queries, keys and the music-folder check all read names here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Iterable

_STOPWORDS = frozenset({"the", "a", "an", "and", "of", "feat", "ft", "featuring", "with"})

#: Strong versions: another recording. A file must carry exactly the ones the title asks for.
STRONG_VERSIONS = frozenset({
    "live", "acoustic", "remix", "instrumental", "karaoke", "acapella", "demo", "cover", "reprise",
    "nightcore", "sped up", "slowed", "piano", "orchestral",
})
#: Soft versions: the same recording cut differently. They only nudge the ranking.
SOFT_VERSIONS = frozenset({"edit", "extended"})

# Words that name a strong version wherever they stand in a file name (not part of the wanted name).
_BARE_MARKERS: dict[str, tuple[str, ...]] = {
    "live": ("live",), "remix": ("remix",), "rmx": ("remix",), "remixed": ("remix",),
    "bootleg": ("remix",), "mashup": ("remix",), "acoustic": ("acoustic",),
    "unplugged": ("live", "acoustic"), "instrumental": ("instrumental",), "karaoke": ("karaoke",),
    "acapella": ("acapella",), "acappella": ("acapella",), "demo": ("demo",), "cover": ("cover",),
    "reprise": ("reprise",), "nightcore": ("nightcore",), "sped": ("sped up",), "slowed": ("slowed",),
}
# Words of a decoration that names the same recording ("2011 Remaster", "Album Version (Edited)").
_SAME_RECORDING = frozenset({
    "mono", "stereo", "version", "explicit", "clean", "edited", "censored", "bonus", "track", "single",
    "album", "original", "mix", "main", "lp", "deluxe", "edition", "digital", "remastered", "remaster",
    "mastered", "master", "radio", "short", "long", "full", "vinyl", "cd", "hd", "hq", "bit", "dirty",
})
_FEAT_WORDS = ("feat", "ft", "featuring", "with")
_BRACKET_RE = re.compile(r"\s*[(\[]([^()\[\]]*)[)\]]")
_DASH_RE = re.compile(r"\s+[-\u2013\u2014]\s+")
_FEAT_IN_ARTIST_RE = re.compile(r"\s*[(\[]?\s*\b(?:feat\.?|ft\.?|featuring)\s+", re.IGNORECASE)
# Strict album/folder patterns: "Live at Wembley", "(Live)", "MTV Unplugged", "Karaoke Hits"...
# ("Live Through This" or "Live Forever" must not count, so a bare leading "live" does not).
_FOLDER_VERSION_RE = re.compile(
    r"\blive\s+(?:at|in|from|on|\d{4})\b|^live$|\blive$|\bunplugged\b|\bkaraoke\b"
    r"|\binstrumentals?\b|\bremix(?:es)?\b|\bacoustic\b|\bcovers\b|\bdemos\b|\bsped up\b|\bnightcore\b"
    r"|\bacapellas?\b"
)
_FOLDER_WORDS: dict[str, tuple[str, ...]] = {
    "live": ("live",), "unplugged": ("live", "acoustic"), "karaoke": ("karaoke",),
    "instrumental": ("instrumental",), "instrumentals": ("instrumental",), "remix": ("remix",),
    "remixes": ("remix",), "acoustic": ("acoustic",), "covers": ("cover",), "demos": ("demo",),
    "sped": ("sped up",), "nightcore": ("nightcore",), "acapella": ("acapella",), "acapellas": ("acapella",),
}


# --------------------------------------------------------------------------- folding


def fold(text: str | None) -> str:
    """Case and accents folded, nothing else changed ("Björk" -> "bjork")."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()


def normalise(text: str | None) -> str:
    """Fold case, accents, punctuation, '&' and '+' so names compare across taggers and OSes."""
    if not text:
        return ""
    text = fold(text).replace("&", " and ").replace(" + ", " and ").replace("ß", "ss")
    text = text.replace("'", "").replace("\u2019", "")  # don't -> dont on both sides alike
    text = re.sub(r"[^\w]+|_", " ", text)
    return " ".join(text.split())


def tokens(text: str | None) -> list[str]:
    """The significant words of a name (stopwords dropped unless nothing else is left)."""
    words = normalise(text).split()
    kept = [w for w in words if w not in _STOPWORDS]
    return kept or words


# --------------------------------------------------------------------------- titles


@dataclass(frozen=True, slots=True)
class TitleParts:
    """A title split into the song's name and what the decorations say."""

    name: str
    versions: frozenset[str] = frozenset()  # strong versions, e.g. {"live"}
    soft: frozenset[str] = frozenset()  # soft versions, e.g. {"edit"}
    details: tuple[str, ...] = ()  # words naming the version ("kygo" in "Kygo Remix")
    featured: tuple[str, ...] = ()  # artists from "(feat. X)"


@dataclass(slots=True)
class _Segment:
    kind: str  # "drop" | "feat" | "version"
    versions: set[str]
    soft: set[str]
    details: list[str]
    featured: list[str]


def _split_names(text: str) -> list[str]:
    parts = re.split(r"\s*(?:,|&|\band\b|\bx\b)\s*", text.strip(" )]"))
    return [p.strip() for p in parts if p and p.strip()]


def _version_of_words(words: list[str]) -> tuple[set[str], set[str]]:
    """Strong and soft versions named by a decoration's words."""
    strong: set[str] = set()
    soft: set[str] = set()
    has = set(words)
    for i, word in enumerate(words):
        strong.update(_BARE_MARKERS.get(word, ()))
        if word in ("recorded", "session", "sessions", "concert"):
            strong.add("live")
        if word in ("piano", "orchestral", "symphonic"):
            strong.add("piano" if word == "piano" else "orchestral")
        if word in ("rework", "flip", "dub", "vip"):
            strong.add("remix")
        if word == "mix" and i > 0 and words[i - 1] not in _SAME_RECORDING and not words[i - 1].isdigit():
            if words[i - 1] != "extended":
                strong.add("remix")
    if "edit" in has or ({"radio", "short"} & has and has & {"version", "mix"}):
        soft.add("edit")
    if {"extended", "long"} & has or {"full", "version"} <= has:
        soft.add("extended")
    if {"spotify", "singles"} <= has:
        strong.add("live")
    if {"speed", "up"} <= has:
        strong.add("sped up")
    if {"originally", "performed"} <= has:
        strong.add("karaoke")
    return strong, soft


def _classify_segment(raw: str, name_words: frozenset[str] = frozenset()) -> _Segment | None:
    """What one decoration says, or None when it is part of the name ("(Don't Fear)").

    A segment holding a word of the known name other than a version marker is the name
    itself: "05 - Live Forever" names the song "Live Forever", it is not a live take.
    """
    words = normalise(raw.replace('"', " ")).split()
    if not words:
        return _Segment("drop", set(), set(), [], [])
    if any(w in name_words and w not in _BARE_MARKERS for w in words):
        return None
    if words[0] in _FEAT_WORDS:
        rest = re.sub(r"^\W*\w+\.?\s*", "", raw.strip(), count=1)
        return _Segment("feat", set(), set(), [], _split_names(rest))
    if words[0] == "from" or "soundtrack" in words or ("theme" in words and "from" in words) \
            or "motion picture" in " ".join(words):
        return _Segment("drop", set(), set(), [], [])
    strong, soft = _version_of_words(words)
    if not strong and not soft:
        if all(w.isdigit() or w in _SAME_RECORDING for w in words):
            return _Segment("drop", set(), set(), [], [])
        if words[-1] == "version" and len(words) > 1:  # "Taylor's Version", "Spanish Version"
            named = [w for w in re.split(r"[^\w]+", fold(raw)) if len(w) > 1 and w != "version"]
            if named and not all(w in _SAME_RECORDING or w.isdigit() for w in named):
                return _Segment("version", {"version " + " ".join(named)}, set(), [], [])
        return None
    plain = _STOPWORDS | _SAME_RECORDING | {"at", "in", "on", "from", "by", "up", "remix", "edit"} \
        | set(_BARE_MARKERS)
    details = [w for w in words if w not in plain and not w.isdigit()]
    return _Segment("version", strong, soft, details, [])


def parse_title(title: str | None, name_words: frozenset[str] = frozenset()) -> TitleParts:
    """Split a title into its name and decorations (brackets anywhere, then " - X" suffixes).

    `name_words` are words known to belong to the song's name or artist (when reading a file
    name against a wanted track): a segment using them is never taken for a decoration.
    """
    text = " ".join((title or "").split())
    segs: list[_Segment] = []

    def bracket(match: re.Match[str]) -> str:
        if match.start() == 0:  # "(I Can't Get No) Satisfaction": part of the name
            return match.group(0)
        seg = _classify_segment(match.group(1), name_words)
        if seg is None:
            return match.group(0)
        segs.append(seg)
        return " "

    text = _BRACKET_RE.sub(bracket, text).strip()
    while True:
        parts = _DASH_RE.split(text)
        if len(parts) < 2:
            break
        seg = _classify_segment(parts[-1], name_words)
        if seg is None:
            break
        segs.append(seg)
        text = " - ".join(parts[:-1]).strip()
    name = " ".join(text.split()).strip(" -") or (title or "").strip()
    return TitleParts(
        name=name,
        versions=frozenset(v for s in segs for v in s.versions),
        soft=frozenset(v for s in segs for v in s.soft),
        details=tuple(dict.fromkeys(d for s in segs for d in s.details)),
        featured=tuple(dict.fromkeys(f for s in segs for f in s.featured)),
    )


def core_title(title: str) -> str:
    """The song's name: the title without featured artists, versions and decorations."""
    return parse_title(title).name


def folder_versions(text: str | None, ignore: Iterable[str] = ()) -> set[str]:
    """Strong versions an album or folder name states plainly ("Live at Wembley", "Karaoke Hits").

    Words in `ignore` (the artist's and song's own words) are blanked first, so a band named
    "Live" or a song called "Acoustic" does not count.
    """
    skip = {w for name in ignore for w in normalise(name).split()}
    folded = " ".join(w for w in normalise(text).split() if w not in skip)
    if re.search(r"[(\[]\s*live\s*[)\]]", fold(text)):
        folded += " live"  # "(Live)" lost its brackets to normalise
    found: set[str] = set()
    for match in _FOLDER_VERSION_RE.finditer(folded):
        for word in match.group(0).split():
            found.update(_FOLDER_WORDS.get(word, ()))
    return found


def name_versions(stem: str, wanted_words: Iterable[str]) -> tuple[set[str], set[str], list[str]]:
    """Versions a file name carries: its decorations, plus marker words outside the wanted words.

    Returns (strong, soft, all words of the decorations) so a remix's name can be checked.
    """
    known = frozenset(wanted_words)
    parts = parse_title(stem, known)
    strong, soft = set(parts.versions), set(parts.soft)
    for word in normalise(stem).split():
        if word not in known:
            strong.update(_BARE_MARKERS.get(word, ()))
    return strong, soft, normalise(stem).split()


def describe_versions(versions: Iterable[str]) -> str:
    """Versions in words for a report: "live acoustic"; "original" when there are none."""
    return " ".join(sorted(versions)) or "original"


# --------------------------------------------------------------------------- artists


def split_credit(artist: str | None) -> tuple[str, tuple[str, ...]]:
    """'Daft Punk feat. Pharrell Williams' -> ('Daft Punk', ('Pharrell Williams',)).

    Only credits that are certainly several artists are split: "feat."/"ft."/"featuring" and
    ';'. "Simon & Garfunkel", "Earth, Wind & Fire" and "Tyler, The Creator" stay whole.
    """
    text = " ".join((artist or "").split())
    featured: list[str] = []
    match = _FEAT_IN_ARTIST_RE.search(text)
    if match and match.start() > 0:
        featured.extend(_split_names(text[match.end():]))
        text = text[:match.start()].strip()
    parts = [p.strip() for p in text.split(";") if p.strip()]
    if len(parts) > 1:
        text, featured = parts[0], parts[1:] + featured
    return text, tuple(dict.fromkeys(featured))


def artist_alternatives(artist: str, featured: Iterable[str] = ()) -> list[str]:
    """Names a file's folder may carry for this credit: the whole credit first, then the others.

    A comma list is split only when every part is at least two words and none starts with
    "The" ("Daft Punk, Pharrell Williams" yes; "Earth, Wind & Fire", "Tyler, The Creator" no).
    """
    main, feat = split_credit(artist)
    out = [main] if main else []
    parts = [p.strip() for p in main.split(",")]
    if len(parts) > 1 and all(len(p.split()) >= 2 and not p.lower().startswith("the ") for p in parts):
        out.extend(parts)
    out.extend(feat)
    out.extend(featured)
    return [a for a in dict.fromkeys(out) if a]


def key_of(artist: str, title: str) -> str:
    """Stable identity of a wanted track: the credited artist, the song's name, its version.

    "The Beatles"/"Beatles", "&"/"and", accents and streaming decorations give the same key;
    "Clocks" and "Clocks (Live)" do not.
    """
    main, _feat = split_credit(artist)
    parts = parse_title(title)
    key = f"{' '.join(tokens(main))}|{normalise(parts.name)}"
    if parts.versions:
        key += "|" + "+".join(sorted(parts.versions))
    return key


__all__ = [
    "SOFT_VERSIONS", "STRONG_VERSIONS", "TitleParts", "artist_alternatives", "core_title",
    "describe_versions", "fold", "folder_versions", "key_of", "name_versions", "normalise",
    "parse_title", "split_credit", "tokens",
]
