"""The texts a track is searched for, in the order they are tried.

Peers answer a search only when every query word is among the words of a file's path, matched
case-insensitively but with accents as typed. So a query holds only the song's name and the
credited artist (no "2011 Remaster", no "From 'Top Gun'"), and words are cut where peers cut
them: at apostrophes and slashes ("Don't" -> "don", "AC/DC" -> "ac dc"), never glued
("dont", "acdc" match nothing). slskd drops one-letter words and refuses (400) a text with
nothing left, so they are left out here and a track whose words are all one letter is not
searched at all.

The forms, each used only when the one before found nothing acceptable:
1. artist and name as spelled ("björk jóga"), plus the strong version asked for ("live");
2. the same with accents folded ("bjork joga"), when that differs;
3. looser: the name alone (or with the artist's longest word when the name has fewer than
   two real words), folded.
"""

from __future__ import annotations

import re
import unicodedata

from trayagent.sync.titles import fold, parse_title, split_credit

#: slskd (Soulseek.NET) drops search terms of this length or shorter.
DROPPED_LENGTH = 1
#: Words too common to make a name specific on their own ("The Boxer" is one real word).
_COMMON = frozenset({"the", "and", "you", "for", "with", "from", "not", "are", "but", "all", "her", "his"})


def query_words(text: str, folded: bool = False) -> list[str]:
    """Words of `text` as peers split paths: at any non-word character, lower case, no 1-letter words."""
    text = fold(text) if folded else unicodedata.normalize("NFC", text).lower()
    return [w for w in re.split(r"[\W_]+", text) if len(w) > DROPPED_LENGTH]


def _artist_words(artist: str, folded: bool) -> list[str]:
    main, _featured = split_credit(artist)
    words = query_words(main, folded)
    if len(words) > 1 and words[0] == "the":  # peers' folders often drop it: "Beatles"
        words = words[1:]
    return words


def _version_words(versions: frozenset[str], folded: bool) -> list[str]:
    out: list[str] = []
    for version in sorted(versions):
        out.extend(query_words(version, folded))
    return out


def _join(words: list[str]) -> str:
    return " ".join(dict.fromkeys(words))  # a repeated word adds nothing for peers


def query_forms(artist: str, title: str) -> list[str]:
    """Every distinct non-empty search text for a track, best first (see the module doc)."""
    parts = parse_title(title)
    forms: list[str] = []
    for folded in (False, True):
        words = _artist_words(artist, folded) + query_words(parts.name, folded) \
            + _version_words(parts.versions, folded)
        forms.append(_join(words))
    name = query_words(parts.name, True)
    if len([w for w in name if len(w) >= 3 and w not in _COMMON]) >= 2:
        loose = name
    else:
        longest = sorted(_artist_words(artist, True), key=len, reverse=True)[:1]
        loose = longest + name
    forms.append(_join(loose))
    return [f for f in dict.fromkeys(forms) if f]


def why_unsearchable(artist: str, title: str) -> str:
    """The reason given when `query_forms` is empty."""
    return (f"nothing to search for: slskd ignores one-letter words, and every word of "
            f"{artist!r} - {title!r} has one letter")


__all__ = ["DROPPED_LENGTH", "query_forms", "query_words", "why_unsearchable"]
