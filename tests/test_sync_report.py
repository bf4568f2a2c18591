"""The sync's words: one vocabulary for the report, the bar, the tooltip and the log."""

from __future__ import annotations

import pytest

from trayagent.sync.playlist import SkippedLine
from trayagent.sync.report import SyncProgress, SyncReport, TrackResult, format_eta, progress_bar


def result(status: str, **kw: object) -> TrackResult:
    return TrackResult(key=f"k|{status}", artist="Coldplay", title="Clocks", status=status, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("seconds,text", [(10, "<1 min"), (90, "2 min"), (3599, "1 h 00 min"), (7500, "2 h 05 min")])
def test_format_eta(seconds, text):
    assert format_eta(seconds) == text


def test_progress_bar_and_tooltip_carry_counts_and_time_left():
    p = SyncProgress(total=200, done=60, active=8, searching=1, completed=40, failed=2, not_found=8,
                     current="Coldplay - Clocks", downloading=3, eta=1500.0)
    bar = progress_bar(p, width=10)
    assert bar.startswith("[###-------] 60/200")
    for part in ("3 downloading", "5 queued", "2 failed", "8 not found", "~25 min left", "searching: Coldplay - Clocks"):
        assert part in bar
    assert p.text() == "Sync 60/200 (3 downloading, 5 queued, 2 failed, 8 not found, ~25 min left, searching)"


def test_track_lines():
    assert result("completed", username="u", filename="@@u\\Coldplay\\Rush\\05 Clocks.flac").line() == \
        "downloaded: Coldplay - Clocks (Rush\\05 Clocks.flac from u)"
    assert result("picked", username="u", filename="x\\Clocks.mp3").line() == \
        "would download: Coldplay - Clocks (x\\Clocks.mp3 from u)"
    assert result("not_found", reason="no results").line() == "not found: Coldplay - Clocks (no results)"
    assert result("not_searched").line() == "not searched yet: Coldplay - Clocks"
    assert result("skipped").line() == "already had: Coldplay - Clocks"


def test_summary_separates_queued_from_never_searched_and_counts_skipped_lines():
    report = SyncReport((result("completed"), result("queued"), result("pending"), result("not_searched"),
                         result("not_searched"), result("not_found")),
                        skipped_lines=(SkippedLine("p.txt", 3, "junk", "not 'Artist - Title'"),))
    assert report.summary() == ("Sync of 6 tracks: 1 downloaded, 1 still queued, 1 being searched, "
                                "2 not searched yet, 1 not found, 1 playlist line skipped")
    data = report.to_json()
    assert data["not_searched"] == 2 and data["queued"] == 1 and data["pending"] == 1
    assert data["skipped_lines"] == [{"source": "p.txt", "line": 3, "text": "junk", "reason": "not 'Artist - Title'"}]
    assert not report.ok


def test_dry_run_is_ok_when_everything_would_be_downloaded():
    report = SyncReport((result("picked"), result("skipped")), dry_run=True)
    assert report.ok and report.summary() == "Dry run of 2 tracks: 1 would be downloaded, 1 already had"
    assert not SyncReport((result("picked"),)).ok  # a real run must download it


def test_near_misses_are_in_the_json():
    miss = {"username": "live", "filename": "x\\Clocks (Live).flac", "why": "live version, not asked for"}
    assert result("not_found", near_misses=(miss,)).to_json()["near_misses"] == [miss]
    assert "near_misses" not in result("completed").to_json()
