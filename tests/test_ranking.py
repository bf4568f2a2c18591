"""Ranking is pure: tables of search responses and the file that must be picked."""

from __future__ import annotations

import pytest

from trayagent.config import SyncConfig
from trayagent.sync.playlist import WantedTrack
from trayagent.sync.ranking import (
    RankPrefs,
    artist_similarity,
    core_title,
    key_of,
    normalise,
    rank,
    rank_files,
    title_similarity,
)


def f(path: str, size: int = 8_000_000, **extra: object) -> dict:
    """A slskd File object."""
    ext = path.rsplit(".", 1)[-1]
    return {"filename": path, "size": size, "extension": ext, "code": 1, **extra}


def r(user: str, files: list[dict], free: bool = True, queue: int = 0, speed: int = 1_000_000,
      locked: list[dict] | None = None) -> dict:
    """A slskd Response object."""
    return {
        "username": user, "token": 1, "fileCount": len(files), "files": files,
        "lockedFileCount": len(locked or []), "lockedFiles": locked or [],
        "hasFreeUploadSlot": free, "uploadSpeed": speed, "queueLength": queue,
    }


LUCKY = WantedTrack("Daft Punk", "Get Lucky", "Random Access Memories", 248.0)
HELP = WantedTrack("The Beatles", "Help!", None, None)
PREFS = RankPrefs(preferred_formats=("flac", "mp3"), min_bitrate=192)

# (case id, wanted, responses, prefs, exclude, expected (user, filename) or None)
CASES = [
    (
        "preferred format wins when both peers are equally available",
        LUCKY,
        [r("mp3guy", [f("Music\\Daft Punk\\RAM\\08 - Get Lucky.mp3", bitRate=320, length=248)]),
         r("flacguy", [f("Music\\Daft Punk\\RAM\\08 - Get Lucky.flac", 30_000_000, length=248)])],
        PREFS, set(), ("flacguy", "Music\\Daft Punk\\RAM\\08 - Get Lucky.flac"),
    ),
    (
        "free slot beats a long queue for the same format",
        LUCKY,
        [r("busy", [f("Daft Punk\\08 Get Lucky.flac", length=248)], free=False, queue=40),
         r("free", [f("Daft Punk\\08 Get Lucky.flac", length=248)], free=True, queue=0, speed=200_000)],
        PREFS, set(), ("free", "Daft Punk\\08 Get Lucky.flac"),
    ),
    (
        "locked files are never picked even when they look best",
        LUCKY,
        [r("locker", [], locked=[f("Daft Punk\\08 Get Lucky.flac", length=248)]),
         r("open", [f("Daft Punk\\08 Get Lucky.mp3", bitRate=256, length=248)], free=False, queue=3)],
        PREFS, set(), ("open", "Daft Punk\\08 Get Lucky.mp3"),
    ),
    (
        "a file flagged isLocked is skipped too",
        LUCKY,
        [r("a", [f("Daft Punk\\Get Lucky.flac", isLocked=True)]),
         r("b", [f("Daft Punk\\Get Lucky.mp3", bitRate=320)])],
        PREFS, set(), ("b", "Daft Punk\\Get Lucky.mp3"),
    ),
    (
        "duration far from the wanted one is rejected (a 10-minute extended mix)",
        LUCKY,
        [r("long", [f("Daft Punk\\Get Lucky.flac", length=610)]),
         r("right", [f("Daft Punk\\Get Lucky.mp3", bitRate=320, length=250)], free=False, queue=2)],
        PREFS, set(), ("right", "Daft Punk\\Get Lucky.mp3"),
    ),
    (
        "low bitrate lossy files are below min_bitrate and rejected",
        LUCKY,
        [r("lo", [f("Daft Punk\\Get Lucky.mp3", bitRate=128, length=248)])],
        PREFS, set(), None,
    ),
    (
        "bitrate estimated from size and length when the peer omits it",
        LUCKY,
        [r("est_lo", [f("Daft Punk\\Get Lucky.mp3", size=248 * 16_000, length=248)]),  # ~128 kbps
         r("est_hi", [f("Daft Punk\\Get Lucky.mp3", size=248 * 40_000, length=248)], free=False)],  # ~320
        PREFS, set(), ("est_hi", "Daft Punk\\Get Lucky.mp3"),
    ),
    (
        "wrong artist is gated out even with the exact title",
        LUCKY,
        [r("other", [f("Music\\Pharrell\\Hits\\Get Lucky (cover).mp3", bitRate=320)])],
        PREFS, set(), None,
    ),
    (
        "a different song that contains the title is gated out",
        HELP,
        [r("bb", [f("Music\\The Beach Boys\\Help Me Rhonda.flac")]),
         r("beatles", [f("Music\\Beatles\\Help!\\01 - Help!.mp3", bitRate=320)], free=False, queue=10)],
        PREFS, set(), ("beatles", "Music\\Beatles\\Help!\\01 - Help!.mp3"),
    ),
    (
        "live and karaoke versions are never picked when the studio recording is wanted",
        LUCKY,
        [r("live", [f("Daft Punk\\Get Lucky (Live).flac", length=250)]),
         r("kar", [f("Daft Punk\\Get Lucky (Karaoke Version).flac", length=248)]),
         r("studio", [f("Daft Punk\\Get Lucky.mp3", bitRate=320, length=248)], free=False, queue=1)],
        PREFS, set(), ("studio", "Daft Punk\\Get Lucky.mp3"),
    ),
    (
        "excluded peer+file (already failed for this track) is never returned",
        LUCKY,
        [r("failed", [f("Daft Punk\\Get Lucky.flac")]),
         r("next", [f("Daft Punk\\Get Lucky.mp3", bitRate=320)])],
        PREFS, {("failed", "Daft Punk\\Get Lucky.flac")}, ("next", "Daft Punk\\Get Lucky.mp3"),
    ),
    (
        "non-audio files (cue, jpg) never count",
        LUCKY,
        [r("x", [f("Daft Punk\\Get Lucky.cue"), f("Daft Punk\\Get Lucky.jpg")])],
        PREFS, set(), None,
    ),
    (
        "a format outside the preferences is still acceptable when nothing else is",
        LUCKY,
        [r("ogg", [f("Daft Punk/Get Lucky.ogg", bitRate=320)])],
        PREFS, set(), ("ogg", "Daft Punk/Get Lucky.ogg"),
    ),
    (
        "forward slashes, accents and case do not matter",
        WantedTrack("Beyoncé", "Déjà Vu"),
        [r("u", [f("music/BEYONCE/B'Day/03 - deja vu.flac")])],
        PREFS, set(), ("u", "music/BEYONCE/B'Day/03 - deja vu.flac"),
    ),
    (
        "featured artists: the whole credit or any single artist matches the folder",
        WantedTrack("Daft Punk, Pharrell Williams", "Get Lucky (feat. Pharrell Williams)"),
        [r("u", [f("Daft Punk - Random Access Memories\\08 Get Lucky.flac")])],
        PREFS, set(), ("u", "Daft Punk - Random Access Memories\\08 Get Lucky.flac"),
    ),
    (
        "shorter queue wins among peers without a free slot",
        LUCKY,
        [r("q50", [f("Daft Punk\\Get Lucky.flac")], free=False, queue=50),
         r("q2", [f("Daft Punk\\Get Lucky.flac")], free=False, queue=2)],
        PREFS, set(), ("q2", "Daft Punk\\Get Lucky.flac"),
    ),
    (
        "faster peer wins when everything else is equal",
        LUCKY,
        [r("slow", [f("Daft Punk\\Get Lucky.flac")], speed=20_000),
         r("fast", [f("Daft Punk\\Get Lucky.flac")], speed=5_000_000)],
        PREFS, set(), ("fast", "Daft Punk\\Get Lucky.flac"),
    ),
    (
        "junk responses and files are ignored, not fatal",
        LUCKY,
        [None, {"username": "nofiles"}, r("", [f("Daft Punk\\Get Lucky.flac")]),
         r("ok", [{"size": 1}, "junk", f("Daft Punk\\Get Lucky.flac")])],
        PREFS, set(), ("ok", "Daft Punk\\Get Lucky.flac"),
    ),
    ("no responses, no pick", LUCKY, [], PREFS, set(), None),
]


@pytest.mark.parametrize("wanted,responses,prefs,exclude,expected", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rank_picks(wanted, responses, prefs, exclude, expected):
    ranked = rank(wanted, responses, prefs, exclude=exclude)
    if expected is None:
        assert ranked == []
    else:
        assert ranked, "expected a pick"
        assert ranked[0].key == expected
        assert all(c.key not in exclude for c in ranked)


def test_rank_is_independent_of_response_order():
    responses = [r(u, [f("Daft Punk\\Get Lucky.flac")]) for u in ("c", "a", "b")]
    one = [c.key for c in rank(LUCKY, responses, PREFS)]
    two = [c.key for c in rank(LUCKY, list(reversed(responses)), PREFS)]
    assert one == two == [("a", "Daft Punk\\Get Lucky.flac"), ("b", "Daft Punk\\Get Lucky.flac"),
                          ("c", "Daft Punk\\Get Lucky.flac")]


def test_rank_never_returns_a_locked_file_anywhere_in_the_list():
    locked = f("Daft Punk\\Get Lucky.flac")
    ranked = rank(LUCKY, [r("u", [f("Daft Punk\\Get Lucky.mp3", bitRate=320)], locked=[locked])], PREFS)
    assert [c.filename for c in ranked] == ["Daft Punk\\Get Lucky.mp3"]


def test_duplicate_files_in_one_response_appear_once():
    file = f("Daft Punk\\Get Lucky.flac")
    assert len(rank(LUCKY, [r("u", [file, dict(file)])], PREFS)) == 1


def test_lossless_ignores_min_bitrate_and_unknown_duration_is_neutral():
    ranked = rank(WantedTrack("Daft Punk", "Get Lucky"), [r("u", [f("Daft Punk\\Get Lucky.flac", bitRate=100)])],
                  RankPrefs(min_bitrate=320))
    assert len(ranked) == 1


def test_prefs_from_config_reads_sync_section():
    prefs = RankPrefs.from_config(SyncConfig(preferred_formats=("MP3", ".flac"), min_bitrate=256, long_queue=7))
    assert prefs.preferred_formats == ("mp3", "flac") and prefs.min_bitrate == 256 and prefs.long_queue == 7
    assert RankPrefs.from_config(SyncConfig()).preferred_formats == ("flac", "mp3")


@pytest.mark.parametrize("text,expected", [
    ("Beyoncé & JAY-Z", "beyonce and jay z"),
    ("  Don't   Stop Me Now ", "dont stop me now"),
    ("Sigur Rós — Hoppípolla", "sigur ros hoppipolla"),
    ("AC/DC", "ac dc"),
    ("Straße", "strasse"),
    ("", ""),
    (None, ""),
])
def test_normalise(text, expected):
    assert normalise(text) == expected


@pytest.mark.parametrize("title,core", [
    ("Get Lucky (feat. Pharrell Williams)", "Get Lucky"),
    ("Here Comes the Sun - Remastered 2009", "Here Comes the Sun"),
    ("Song - 2011 Remaster", "Song"),
    ("Help! [Explicit]", "Help!"),
    ("Get Lucky (Radio Edit)", "Get Lucky"),  # the cut is a version, judged apart from the name
    ("Clocks - Live at Glastonbury", "Clocks"),
    ('Hold My Hand - From "Top Gun: Maverick"', "Hold My Hand"),
    ("Live Forever", "Live Forever"),
])
def test_core_title(title, core):
    assert core_title(title) == core


def test_artist_credit_is_matched_whole_with_and_plus_the_and_accents_either_way():
    for path in ("Simon and Garfunkel Boxer", "Simon & Garfunkel Boxer", "Simon + Garfunkel Boxer"):
        assert artist_similarity("Simon & Garfunkel", path) == 1.0
    assert artist_similarity("Simon & Garfunkel", "Paul Simon The Boxer") < 0.6  # not the duo
    assert artist_similarity("Earth, Wind & Fire", "Earth September") < 0.6
    assert artist_similarity("Beyonce", "Beyoncé Halo") == artist_similarity("Beyoncé", "Beyonce Halo") == 1.0
    assert artist_similarity("Calvin Harris", "Rihanna Singles", featured=["Rihanna"]) == 1.0


@pytest.mark.parametrize("wanted,stem,ctx,low,high", [
    ("Help!", "01 - Help", [], 1.0, 1.0),
    ("Help!", "Help Me Rhonda", ["The Beach Boys"], 0.0, 0.74),
    ("Yesterday", "Yesterday Once More", [], 0.0, 0.74),
    ("Bohemian Rhapsody", "11 - Bohemian Rhapsody (Live at Wembley)", ["Queen"], 1.0, 1.0),
    ("Smells Like Teen Spirit", "Nirvana - Nevermind - 01 - Smells Like Teen Spirit", ["Nirvana", "Nevermind"], 1.0, 1.0),
    ("Song 2", "Blur - 03 - Song 3", ["Blur"], 0.0, 0.74),
    ("Get Lucky (Radio Edit)", "Get Lucky", [], 1.0, 1.0),  # same name; the cut only orders
    ("Live Forever", "05 - Live Forever", ["Oasis"], 1.0, 1.0),  # "- Live Forever" is the name here
    ("Bohemian Rhapsody", "Bohemain Rhapsody", [], 0.9, 1.0),  # a typo still matches
])
def test_title_similarity(wanted, stem, ctx, low, high):
    assert low <= title_similarity(wanted, stem, ctx) <= high


def test_artist_similarity_drops_the_article():
    assert artist_similarity("The Beatles", "Beatles Help 01 - Help") == 1.0
    assert artist_similarity("The Beatles", "Rolling Stones Help") == 0.0


def test_key_is_stable_across_decorations_and_featured_credits():
    assert key_of("Daft Punk feat. Pharrell Williams", "Get Lucky (feat. Pharrell Williams)") == \
        key_of("daft punk", "GET LUCKY")
    assert key_of("Beyoncé", "Déjà Vu") == key_of("Beyonce", "Deja vu")
    assert key_of("A", "Song") != key_of("A", "Song (Live)")
    assert key_of("Simon & Garfunkel", "The Boxer") == key_of("Simon and Garfunkel", "The Boxer")
    assert key_of("The Beatles", "Help! - Remastered 2009") == key_of("Beatles", "Help!")
    assert key_of("Earth, Wind & Fire", "September") != key_of("Earth", "September")


def test_misses_explain_why_nothing_matched():
    responses = [r("live", [f("Coldplay\\Live 2003\\06 Clocks (Live).flac", length=315)]),
                 r("other", [f("TLC\\Clocks.mp3", bitRate=320)])]
    ranking = rank_files(WantedTrack("Coldplay", "Clocks", None, 307.0), responses, PREFS)
    assert ranking.candidates == [] and ranking.files == 2 and ranking.peers == 2
    assert [m.why for m in ranking.misses] == ["live version, not asked for", "another artist"]
    assert ranking.verdict() == ("2 files from 2 peers, none matched: best was Live 2003\\06 Clocks (Live).flac "
                                 "from live (live version, not asked for)")
    assert rank_files(LUCKY, [], PREFS).verdict() == "no results"
