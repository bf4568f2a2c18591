"""Every case of the public ranking test set picks the right file, or nothing (issue 10)."""

from __future__ import annotations

from typing import Any

import pytest

from ranking_cases import load_cases, prefs_of, responses_of, run_cases, wanted_of, wrong_versions
from trayagent.sync.playlist import WantedTrack
from trayagent.sync.ranking import RankPrefs, rank

CASES = load_cases()


def current_ranker(wanted: WantedTrack, responses: list[dict[str, Any]], prefs: dict[str, Any]) -> Any:
    ranked = rank(wanted, responses, RankPrefs(preferred_formats=tuple(prefs["preferred_formats"]),
                                               min_bitrate=prefs["min_bitrate"], long_queue=prefs["long_queue"]))
    return ranked[0].key if ranked else None


def test_the_set_is_big_and_varied_enough():
    assert len(CASES) >= 60
    tags = {t for c in CASES for t in c["tags"]}
    assert {"streaming", "versions", "credits", "diacritics", "decoys", "formats", "queues", "previews"} <= tags
    assert sum(1 for c in CASES if c["expect"] is None) >= 10  # "no match" is an answer too
    assert len({c["id"] for c in CASES}) == len(CASES)
    for case in CASES:  # the expected pick is a file of the case, never a wrong version
        if case["expect"]:
            files = {(p["user"], f["path"]) for p in case["peers"] for f in p["files"]}
            assert tuple(case["expect"]) in files - wrong_versions(case), case["id"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_pick(case):
    ranked = rank(wanted_of(case), responses_of(case), RankPrefs(**{**prefs_of(case), "preferred_formats": tuple(
        prefs_of(case)["preferred_formats"])}))
    picked = ranked[0].key if ranked else None
    expected = tuple(case["expect"]) if case["expect"] else None
    assert picked == expected, case.get("note", "")
    assert not {c.key for c in ranked} & wrong_versions(case), "a wrong version was acceptable at all"


def test_accuracy_and_no_wrong_version():
    outcomes, wrong = run_cases(current_ranker, CASES)
    right = sum(o.right for o in outcomes)
    assert right / len(outcomes) >= 0.95 and wrong == 0
