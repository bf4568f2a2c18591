"""Playlist parsing: each format, broken lines, and the encodings real files come in."""

from __future__ import annotations

import logging

from pathlib import Path

import pytest

from trayagent.sync.playlist import (
    PlaylistError,
    WantedTrack,
    decode,
    detect_format,
    load_playlists,
    parse_csv,
    parse_m3u,
    parse_playlist,
    parse_text,
    split_artist_title,
)


def pairs(tracks: list[WantedTrack]) -> list[tuple[str, str]]:
    return [(t.artist, t.title) for t in tracks]


# --------------------------------------------------------------------------- M3U


def test_m3u_extinf_gives_artist_title_and_duration():
    text = "#EXTM3U\n#EXTINF:248,Daft Punk - Get Lucky\n/music/x.mp3\n#EXTINF:354.5,Queen - Bohemian Rhapsody\nq.flac\n"
    tracks = parse_m3u(text, "p.m3u")
    assert pairs(tracks) == [("Daft Punk", "Get Lucky"), ("Queen", "Bohemian Rhapsody")]
    assert [t.duration for t in tracks] == [248.0, 354.5]
    assert tracks[0].source == "p.m3u"


def test_m3u_unknown_duration_and_titles_with_dashes():
    text = "#EXTINF:-1,Artist - Title - Radio Edit\nfile.mp3\n#EXTINF:0,A \u2013 B\nb.mp3\n"
    tracks = parse_m3u(text)
    assert pairs(tracks) == [("Artist", "Title - Radio Edit"), ("A", "B")]
    assert [t.duration for t in tracks] == [None, None]


def test_m3u_attributes_in_extinf_are_ignored():
    tracks = parse_m3u('#EXTINF:200 tvg-id="x" group="y",Massive Attack - Teardrop\nt.mp3\n')
    assert pairs(tracks) == [("Massive Attack", "Teardrop")]
    assert tracks[0].duration == 200.0


def test_m3u_without_extinf_reads_the_path():
    text = "\n".join([
        "/music/Queen/A Night at the Opera/11 - Bohemian Rhapsody.flac",
        "C:\\Music\\Adele - Hello.mp3",
        "file:///home/u/Music/Blur%20-%2002%20-%20Song%202.mp3",
        "Radiohead/OK Computer/Airbag.mp3",
    ])
    tracks = parse_m3u(text)
    assert pairs(tracks) == [("Queen", "Bohemian Rhapsody"), ("Adele", "Hello"), ("Blur", "Song 2"),
                             ("Radiohead", "Airbag")]
    assert tracks[0].album == "A Night at the Opera"
    assert tracks[1].album is None  # "Music" is not an album


def test_m3u_extinf_without_separator_falls_back_to_path_and_keeps_duration():
    tracks = parse_m3u("#EXTINF:321,Just A Title\n/m/Portishead/Dummy/Roads.mp3\n")
    assert pairs(tracks) == [("Portishead", "Roads")]
    assert tracks[0].duration == 321.0


def test_m3u_extart_and_extalb():
    tracks = parse_m3u("#EXTART:Björk\n#EXTALB:Homogenic\n#EXTINF:300,Jóga\nj.flac\n#EXTINF:1,X - Y\ny.mp3\n")
    assert tracks[0] == WantedTrack("Björk", "Jóga", "Homogenic", 300.0)
    assert tracks[1].album is None  # hints apply to the next entry only


def test_m3u_broken_lines_are_skipped_and_logged(caplog):
    text = "#EXTM3U\n#EXTINF:abc\nhttp://radio.example/stream\n#EXTINF:10,Good - One\ngood.mp3\n\n   \nrandom.mp3\n#EXTINF:99,Trunc - Ated"
    with caplog.at_level(logging.WARNING, logger="trayagent.sync.playlist"):
        tracks = parse_m3u(text, "b.m3u")
    assert pairs(tracks) == [("Good", "One"), ("Trunc", "Ated")]
    assert any("malformed #EXTINF" in r.message for r in caplog.records)
    assert any("random.mp3" in r.message for r in caplog.records)


# --------------------------------------------------------------------------- CSV


EXPORTIFY = (
    "Track URI,Track Name,Artist URI(s),Artist Name(s),Album Name,Disc Number,Duration (ms),Popularity\n"
    'spotify:track:1,Get Lucky (feat. Pharrell Williams),"spotify:artist:4tZw, spotify:artist:2Rdw",'
    '"Daft Punk, Pharrell Williams",Random Access Memories,1,248413,80\n'
    'spotify:track:2,"Hello, Goodbye",spotify:artist:3WrF,The Beatles,Magical Mystery Tour,1,208000,70\n'
    'spotify:track:3,EARFQUAKE,"spotify:artist:4V8L, spotify:artist:3Ngh",'
    '"Tyler\\, The Creator, Playboi Carti",IGOR,1,190000,75\n'
)


def test_csv_exportify_headers():
    tracks = parse_csv(EXPORTIFY, "e.csv")
    # Exportify lists one artist id per credited artist: the names split into as many credits
    assert pairs(tracks) == [("Daft Punk", "Get Lucky (feat. Pharrell Williams)"),
                             ("The Beatles", "Hello, Goodbye"), ("Tyler, The Creator", "EARFQUAKE")]
    assert [t.featured for t in tracks] == [("Pharrell Williams",), (), ("Playboi Carti",)]
    assert tracks[0].album == "Random Access Memories"
    assert tracks[0].duration == pytest.approx(248.413)


def test_csv_simple_lowercase_headers_and_semicolons():
    text = "artist;title;album;duration\nMuse;Uprising;The Resistance;5:05\nMuse;Starlight;;240\n"
    tracks = parse_csv(text)
    assert pairs(tracks) == [("Muse", "Uprising"), ("Muse", "Starlight")]
    assert [t.duration for t in tracks] == [305.0, 240.0]
    assert [t.album for t in tracks] == ["The Resistance", None]


def test_csv_tab_separated_with_odd_header_case():
    text = "TITLE\tARTIST\tAlbum Title\nTeardrop\tMassive Attack\tMezzanine\n"
    assert pairs(parse_csv(text)) == [("Massive Attack", "Teardrop")]


def test_csv_title_only_column_with_artist_dash_title():
    text = "Name,Plays\nPortishead - Roads,3\nno separator,1\n"
    assert pairs(parse_csv(text)) == [("Portishead", "Roads")]


def test_csv_broken_rows_are_skipped(caplog):
    text = "Artist,Title\nA,B\n,missing artist\nonly one cell\n\nC,D,extra,cells\n"
    with caplog.at_level(logging.WARNING, logger="trayagent.sync.playlist"):
        assert pairs(parse_csv(text, "x.csv")) == [("A", "B"), ("C", "D")]
    assert sum("skipped" in r.message for r in caplog.records) == 2


def test_csv_without_a_title_column_reads_nothing(caplog):
    with caplog.at_level(logging.WARNING, logger="trayagent.sync.playlist"):
        assert parse_csv("foo,bar\n1,2\n") == []
    assert "no title column" in caplog.text


def test_csv_empty_and_header_only():
    assert parse_csv("") == []
    assert parse_csv("Artist,Title\n") == []


def test_csv_duration_seconds_column_and_bad_values():
    text = "artist,title,length\nA,B,213\nC,D,n/a\nE,F,-5\n"
    assert [t.duration for t in parse_csv(text)] == [213.0, None, None]


# --------------------------------------------------------------------------- text


def test_text_lines():
    text = "# my list\nDaft Punk - Get Lucky\n\n// note\nSigur Rós \u2014 Hoppípolla\n1. Muse - Uprising\nnot a track\nMassive Attack\tTeardrop\n"
    tracks = parse_text(text)
    assert pairs(tracks) == [("Daft Punk", "Get Lucky"), ("Sigur Rós", "Hoppípolla"), ("Muse", "Uprising"),
                             ("Massive Attack", "Teardrop")]


def test_split_artist_title_needs_spaces_around_the_dash():
    assert split_artist_title("Jay-Z - 99 Problems") == ("Jay-Z", "99 Problems")
    assert split_artist_title("Jay-Z") is None
    assert split_artist_title(" - Title") is None
    assert split_artist_title("Artist - ") is None


# --------------------------------------------------------------------------- encodings and files


def test_decode_bom_utf8_latin1_utf16():
    assert decode("\ufeffBjörk - Jóga".encode("utf-8")) == "Björk - Jóga"
    assert decode("Björk - Jóga".encode("latin-1")) == "Björk - Jóga"
    assert decode("Beyoncé \u2013 Halo".encode("cp1252")) == "Beyoncé \u2013 Halo"
    assert decode("Björk - Jóga".encode("utf-16")) == "Björk - Jóga"


@pytest.mark.parametrize("name,data", [
    ("bom.m3u8", "\ufeff#EXTM3U\r\n#EXTINF:123,Björk - Jóga\r\njoga.flac\r\n".encode("utf-8")),
    ("latin.m3u", "#EXTM3U\r\n#EXTINF:123,Björk - Jóga\r\njoga.flac\r\n".encode("latin-1")),
    ("bom.csv", "\ufeffArtist Name(s),Track Name\r\nBjörk,Jóga\r\n".encode("utf-8")),
    ("latin.csv", "artist,title\r\nBjörk,Jóga\r\n".encode("latin-1")),
    ("crlf.txt", "Björk - Jóga\r\n\r\n".encode("utf-8")),
    ("cr.txt", "Björk - Jóga\rX - Y\r".encode("utf-8")),
    ("utf16.txt", "Björk - Jóga\r\n".encode("utf-16")),
])
def test_files_in_odd_encodings(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    tracks = parse_playlist(path)
    assert tracks[0].artist == "Björk" and tracks[0].title == "Jóga"
    assert all("\r" not in t.title and "\ufeff" not in t.artist for t in tracks)


def test_detect_format_by_extension_then_content():
    assert detect_format("a.m3u8", "") == "m3u"
    assert detect_format("a.CSV", "") == "csv"
    assert detect_format("a.txt", "#EXTM3U\n") == "m3u"
    assert detect_format("a.txt", "Artist Name(s)\tTrack Name\n") == "csv"
    assert detect_format("list", "Artist - Title\n") == "text"


def test_missing_or_directory_playlist_raises(tmp_path):
    with pytest.raises(PlaylistError, match="not found"):
        parse_playlist(tmp_path / "nope.m3u")
    with pytest.raises(PlaylistError, match="directory"):
        parse_playlist(tmp_path)


def test_load_playlists_dedupes_by_key_across_formats(tmp_path):
    (tmp_path / "a.m3u").write_text("#EXTINF:248,Daft Punk - Get Lucky\nx.mp3\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text(EXPORTIFY, encoding="utf-8")
    (tmp_path / "c.txt").write_text("the beatles - hello, goodbye\nMuse - Uprising\n", encoding="utf-8")
    tracks = load_playlists([tmp_path / "a.m3u", tmp_path / "b.csv", tmp_path / "c.txt"])
    assert pairs(tracks) == [("Daft Punk", "Get Lucky"), ("The Beatles", "Hello, Goodbye"),
                             ("Tyler, The Creator", "EARFQUAKE"), ("Muse", "Uprising")]
    assert tracks[0].duration == 248.0  # first occurrence wins


def test_key_is_stable_and_ignores_album_duration_and_source():
    a = WantedTrack("Daft Punk", "Get Lucky", "RAM", 248.0, "a.m3u")
    b = WantedTrack("DAFT PUNK", "Get Lucky (feat. Pharrell Williams)", None, None, "b.csv")
    assert a.key == b.key
    assert a.key == WantedTrack("Daft Punk", "Get Lucky").key  # same value every time
    assert a.key != WantedTrack("Daft Punk", "Lose Yourself to Dance").key


def test_csv_exportify_older_layout_joins_names_without_spaces():
    text = ("Spotify ID,Artist IDs,Track Name,Album Name,Artist Name(s),Release Date,Duration (ms)\n"
            '1,"a1,a2","EARFQUAKE","IGOR","Tyler, The Creator,Playboi Carti",2019-05-17,190000\n'
            '2,"b1","September","The Best of","Earth, Wind & Fire",1978-11-23,215000\n')
    tracks = parse_csv(text)
    assert [(t.artist, t.featured) for t in tracks] == [("Tyler, The Creator", ("Playboi Carti",)),
                                                         ("Earth, Wind & Fire", ())]


def test_other_csv_exports_keep_a_comma_credit_whole():
    text = "Track name,Artist name,Album\nSeptember,\"Earth, Wind & Fire\",The Best of\n"
    assert [(t.artist, t.featured) for t in parse_csv(text)] == [("Earth, Wind & Fire", ())]


def test_skipped_lines_are_collected_with_the_reason(tmp_path):
    from trayagent.sync.playlist import SkippedLine

    (tmp_path / "a.txt").write_text("Muse - Uprising\njust some words\n", encoding="utf-8")
    (tmp_path / "b.m3u").write_text("#EXTM3U\n#EXTINF:x\nhttp://radio.example/stream\n", encoding="utf-8")
    skipped: list[SkippedLine] = []
    tracks = load_playlists([tmp_path / "a.txt", tmp_path / "b.m3u"], skipped)
    assert pairs(tracks) == [("Muse", "Uprising")]
    assert [(Path(s.source).name, s.line, s.reason) for s in skipped] == [
        ("a.txt", 2, "not 'Artist - Title'"), ("b.m3u", 2, "malformed #EXTINF line"),
        ("b.m3u", 3, "no artist and title")]
    assert skipped[0].to_json()["text"] == "just some words"
