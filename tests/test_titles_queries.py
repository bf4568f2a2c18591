"""Names, versions, credits and search texts: what goes to peers, and what a file must carry."""

from __future__ import annotations

import pytest

from trayagent.sync.queries import query_forms, query_words
from trayagent.sync.titles import artist_alternatives, folder_versions, parse_title, split_credit


@pytest.mark.parametrize("title,name,versions,soft", [
    ('Danger Zone - From "Top Gun: Maverick"', "Danger Zone", set(), set()),
    ('Take My Breath Away - Love Theme from "Top Gun"', "Take My Breath Away", set(), set()),
    ("Mr. Brightside - Single Version", "Mr. Brightside", set(), set()),
    ("Smells Like Teen Spirit - Album Version (Edited)", "Smells Like Teen Spirit", set(), set()),
    ("Bohemian Rhapsody - 2011 Remaster", "Bohemian Rhapsody", set(), set()),
    ("Yesterday - Remastered 2009", "Yesterday", set(), set()),
    ("Here Comes The Sun - 2019 Mix", "Here Comes The Sun", set(), set()),
    ("Get Lucky (feat. Pharrell Williams)", "Get Lucky", set(), set()),
    ("Get Lucky - Radio Edit", "Get Lucky", set(), {"edit"}),
    ("One More Time - Extended Mix", "One More Time", set(), {"extended"}),
    ("Clocks - Live at Glastonbury", "Clocks", {"live"}, set()),
    ("Clocks (Live)", "Clocks", {"live"}, set()),
    ("Green Light - Spotify Singles", "Green Light", {"live"}, set()),
    ("About a Girl - MTV Unplugged", "About a Girl", {"live", "acoustic"}, set()),
    ("Summer - Calvin Harris Remix", "Summer", {"remix"}, set()),
    ("Creep - Acoustic", "Creep", {"acoustic"}, set()),
    ("Heat Waves - Sped Up", "Heat Waves", {"sped up"}, set()),
    ("Teardrop (Karaoke Version)", "Teardrop", {"karaoke"}, set()),
    ("Love Story (Taylor's Version)", "Love Story", {"version taylor"}, set()),
    ("(I Can't Get No) Satisfaction", "(I Can't Get No) Satisfaction", set(), set()),
    ("Live Forever", "Live Forever", set(), set()),
    ("Hello, Goodbye", "Hello, Goodbye", set(), set()),
    ("Shout - Pts. 1 & 2", "Shout - Pts. 1 & 2", set(), set()),  # an unknown suffix stays in the name
])
def test_parse_title_strips_decorations_and_keeps_versions(title, name, versions, soft):
    parts = parse_title(title)
    assert (parts.name, set(parts.versions), set(parts.soft)) == (name, versions, soft)


def test_featured_artists_come_out_of_the_title():
    assert parse_title("Uptown Funk (feat. Bruno Mars)").featured == ("Bruno Mars",)
    assert parse_title("Señorita (with Camila Cabello)").featured == ("Camila Cabello",)


@pytest.mark.parametrize("artist,main,featured", [
    ("Simon & Garfunkel", "Simon & Garfunkel", ()),
    ("Earth, Wind & Fire", "Earth, Wind & Fire", ()),
    ("Tyler, The Creator", "Tyler, The Creator", ()),
    ("Daft Punk feat. Pharrell Williams", "Daft Punk", ("Pharrell Williams",)),
    ("Mark Ronson ft. Bruno Mars", "Mark Ronson", ("Bruno Mars",)),
    ("Calvin Harris; Rihanna", "Calvin Harris", ("Rihanna",)),
])
def test_credits_split_only_when_certain(artist, main, featured):
    assert split_credit(artist) == (main, featured)


def test_artist_alternatives_split_comma_lists_only_of_full_names():
    assert artist_alternatives("Daft Punk, Pharrell Williams") == [
        "Daft Punk, Pharrell Williams", "Daft Punk", "Pharrell Williams"]
    assert artist_alternatives("Earth, Wind & Fire") == ["Earth, Wind & Fire"]
    assert artist_alternatives("Tyler, The Creator") == ["Tyler, The Creator"]
    assert artist_alternatives("Calvin Harris", ["Rihanna"]) == ["Calvin Harris", "Rihanna"]


@pytest.mark.parametrize("folder,versions", [
    ("Coldplay - Live 2003", {"live"}),
    ("Live at Wembley '86", {"live"}),
    ("MTV Unplugged in New York", {"live", "acoustic"}),
    ("Karaoke Hits Vol. 3", {"karaoke"}),
    ("Club Future Nostalgia (Remixes)", {"remix"}),
    ("Live Through This", set()),  # Hole's studio album
    ("Definitely Maybe", set()),
    ("Demon Days", set()),
])
def test_folder_versions_only_from_plain_statements(folder, versions):
    assert folder_versions(folder) == versions


def test_folder_versions_ignore_the_artists_own_name():
    assert folder_versions("Live - Throwing Copper", ignore=["Live"]) == set()


@pytest.mark.parametrize("artist,title,forms", [
    ("Daft Punk", "Get Lucky (feat. Pharrell Williams)", ["daft punk get lucky", "get lucky"]),
    # original spelling first; accents folded only in the fallback
    ("Björk", "Jóga", ["björk jóga", "bjork joga"]),
    ("Sigur Rós", "Hoppípolla", ["sigur rós hoppípolla", "sigur ros hoppipolla", "sigur hoppipolla"]),
    # split where peers split, never glued; one-letter fragments left out
    ("Queen", "Don't Stop Me Now", ["queen don stop me now", "don stop me now"]),
    ("AC/DC", "Back in Black", ["ac dc back in black", "back in black"]),
    ("Taylor Swift", "Love Story (Taylor's Version)",
     ["taylor swift love story version", "love story"]),
    # streaming decorations never searched; the version asked for is
    ("Lady Gaga", 'Hold My Hand - From "Top Gun: Maverick"', ["lady gaga hold my hand", "hold my hand"]),
    ("Coldplay", "Clocks - Live in Sydney", ["coldplay clocks live", "coldplay clocks"]),
    ("Queen", "Bohemian Rhapsody - 2011 Remaster", ["queen bohemian rhapsody", "bohemian rhapsody"]),
    # the credit whole, "The" dropped (folders often say "Beatles")
    ("Simon & Garfunkel", "The Boxer", ["simon garfunkel the boxer", "garfunkel the boxer"]),
    ("The Beatles", "Help!", ["beatles help"]),  # the loose form would be the same: no extra search
    ("Earth, Wind & Fire", "September", ["earth wind fire september", "earth september"]),
    ("Muse", "Uprising", ["muse uprising"]),
    # nothing slskd would accept: no search at all
    ("X", "Y", []),
    ("A", "B - C", []),
])
def test_query_forms(artist, title, forms):
    assert query_forms(artist, title) == forms


def test_no_query_word_is_one_letter_or_an_exclusion():
    for artist, title in [("Guns N' Roses", "Sweet Child O' Mine"), ("P!nk", "So What"), ("Jay-Z", "99 Problems"),
                          ("t.A.T.u.", "All the Things She Said"), ("X", "Give It to Me")]:
        for form in query_forms(artist, title):
            assert all(len(w) > 1 and not w.startswith("-") for w in form.split(" ")), form


def test_query_words_keep_case_folding_apart_from_accent_folding():
    assert query_words("Straße Ölfass") == ["straße", "ölfass"]
    assert query_words("Straße Ölfass", folded=True) == ["strasse", "olfass"]
