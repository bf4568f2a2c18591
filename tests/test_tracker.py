"""Every tracking rule, tested with plain data and an explicit clock."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone

import pytest

from trayagent.core.model import EventType, Kind, Transfer
from trayagent.core.tracker import Rules, Tracker

T0 = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
_ids = itertools.count(1)


def gid() -> str:
    return f"00000000-0000-0000-0000-{next(_ids):012d}"


def tr(tid: str, state: str, user: str = "alice", name: str = r"@@m\Album\01.flac", **kw) -> Transfer:
    return Transfer(id=tid, username=user, filename=name, state=state, size=kw.pop("size", 1000), **kw)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def kinds(changes) -> list[str]:
    return [e.event.value for e in changes.events]


@pytest.fixture
def tracker() -> Tracker:
    t = Tracker(Rules(grace_polls=3, failure_settle=60, restart_window=300), initialized=True)
    return t


def test_lifecycle_reports_added_started_completed_once(tracker: Tracker) -> None:
    a = gid()
    assert kinds(tracker.reconcile([tr(a, "Queued, Remotely")], at(0))) == ["added"]
    assert kinds(tracker.reconcile([tr(a, "Initializing")], at(1))) == ["started"]
    assert kinds(tracker.reconcile([tr(a, "InProgress", bytes_transferred=500)], at(2))) == []
    ch = tracker.reconcile([tr(a, "Completed, Succeeded", bytes_transferred=1000)], at(3))
    assert kinds(ch) == ["completed"]
    assert ch.events[0].id == a and ch.events[0].state == "Completed, Succeeded"
    # still listed by slskd afterwards: never reported again
    for i in range(5):
        assert kinds(tracker.reconcile([tr(a, "Completed, Succeeded")], at(4 + i))) == []
    assert tracker.recent[0].outcome is Kind.SUCCEEDED
    assert tracker.active == []


def test_timed_out_is_never_a_success(tracker: Tracker) -> None:
    a = gid()
    tracker.reconcile([tr(a, "Queued, Remotely")], at(0))
    tracker.reconcile([tr(a, "Completed, TimedOut")], at(1))
    ch = tracker.reconcile([tr(a, "Completed, TimedOut")], at(62))
    assert kinds(ch) == ["failed"]
    assert ch.events[0].reason == "timedout"


@pytest.mark.parametrize(
    "state,event,reason",
    [
        ("Completed, Rejected", "failed", "rejected"),
        ("Completed, Cancelled", "cancelled", None),
        ("Completed, Succeeded", "completed", None),
    ],
)
def test_final_states_reported_at_once(tracker: Tracker, state: str, event: str, reason) -> None:
    a = gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    ch = tracker.reconcile([tr(a, state)], at(1))
    assert kinds(ch) == [event]
    assert ch.events[0].reason == reason


@pytest.mark.parametrize(
    "state,reason",
    [("Completed, Errored", "errored"), ("Completed, Aborted", "aborted"), ("Completed", "unknown")],
)
def test_retryable_failure_waits_for_settle(tracker: Tracker, state: str, reason: str) -> None:
    a = gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    assert kinds(tracker.reconcile([tr(a, state)], at(1))) == []
    assert kinds(tracker.reconcile([tr(a, state)], at(60))) == []
    ch = tracker.reconcile([tr(a, state)], at(61))
    assert kinds(ch) == ["failed"]
    assert ch.events[0].reason == reason


def test_flash_of_errored_during_slskd_retry_is_not_reported(tracker: Tracker) -> None:
    a = gid()
    tracker.reconcile([tr(a, "InProgress", attempts=1)], at(0))
    assert kinds(tracker.reconcile([tr(a, "Completed, Errored", attempts=1)], at(1))) == []
    assert kinds(tracker.reconcile([tr(a, "Queued, Locally", attempts=2)], at(6))) == []
    assert kinds(tracker.reconcile([tr(a, "InProgress", attempts=2)], at(7))) == []
    # the settle clock restarts: a second failure must hold a full settle period again
    assert kinds(tracker.reconcile([tr(a, "Completed, Errored", attempts=2)], at(8))) == []
    assert kinds(tracker.reconcile([tr(a, "Completed, Errored", attempts=2)], at(67))) == []
    assert kinds(tracker.reconcile([tr(a, "Completed, Succeeded", attempts=2)], at(68))) == ["completed"]


def test_missing_after_grace_of_successful_polls(tracker: Tracker) -> None:
    a = gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    assert kinds(tracker.reconcile([], at(1))) == []
    assert kinds(tracker.reconcile([], at(2))) == []
    ch = tracker.reconcile([], at(3))
    assert kinds(ch) == ["failed"] and ch.events[0].reason == "missing"
    assert kinds(tracker.reconcile([], at(4))) == []


def test_reappearing_resets_the_missing_count(tracker: Tracker) -> None:
    a = gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    tracker.reconcile([], at(1))
    tracker.reconcile([], at(2))
    tracker.reconcile([tr(a, "InProgress")], at(3))
    tracker.reconcile([], at(4))
    assert kinds(tracker.reconcile([], at(5))) == []
    assert [e.reason for e in tracker.reconcile([], at(6)).events] == ["missing"]


def test_vanished_while_failing_reports_its_failure_reason(tracker: Tracker) -> None:
    a = gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    tracker.reconcile([tr(a, "Completed, Errored")], at(1))
    tracker.reconcile([], at(2))
    tracker.reconcile([], at(3))
    ch = tracker.reconcile([], at(4))
    assert [(e.event.value, e.reason) for e in ch.events] == [("failed", "errored")]


def test_match_by_name_when_slskd_mints_a_new_id(tracker: Tracker) -> None:
    a, b = gid(), gid()
    tracker.reconcile([tr(a, "Queued, Remotely")], at(0))
    # the user pressed retry: the old record is superseded, a new id appears
    assert kinds(tracker.reconcile([tr(b, "Queued, Locally")], at(1))) == []
    ch = tracker.reconcile([tr(b, "Completed, Succeeded")], at(2))
    assert kinds(ch) == ["completed"] and ch.events[0].id == b
    assert tracker.is_recorded(a) and tracker.is_recorded(b)


def test_one_transfer_one_download(tracker: Tracker) -> None:
    a, b = gid(), gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    # a second live record of the same file while the first is live: a new download
    ch = tracker.reconcile([tr(a, "InProgress"), tr(b, "Queued, Locally")], at(1))
    assert kinds(ch) == ["added"] and ch.events[0].id == b
    assert len(tracker.active) == 2


def test_live_record_supersedes_a_failed_one_in_the_same_poll(tracker: Tracker) -> None:
    a, b = gid(), gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    ch = tracker.reconcile([tr(a, "Completed, Errored"), tr(b, "Queued, Locally")], at(1))
    assert kinds(ch) == []
    # the stale old record lingers; it is an alias now and never reported
    for i in range(2, 80):
        assert kinds(tracker.reconcile([tr(a, "Completed, Errored"), tr(b, "Queued, Locally")], at(i))) == []
    assert kinds(tracker.reconcile([tr(a, "Completed, Errored"), tr(b, "Completed, Succeeded")], at(81))) == ["completed"]


def test_requeued_after_reported_end_is_a_new_download(tracker: Tracker) -> None:
    a, b = gid(), gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    assert kinds(tracker.reconcile([tr(a, "Completed, Rejected")], at(1))) == ["failed"]
    ch = tracker.reconcile([tr(b, "Queued, Locally")], at(2))
    assert kinds(ch) == ["added"]
    assert kinds(tracker.reconcile([tr(b, "Completed, Succeeded")], at(3))) == ["completed"]


def test_slskd_restart_with_new_ids_is_not_a_failure(tracker: Tracker) -> None:
    a, b = gid(), gid()
    tracker.reconcile([tr(a, "InProgress", bytes_transferred=300)], at(0))
    shut = tr(a, "Completed, Errored", exception="Application shut down")
    for i in range(1, 20):  # slskd back up, not yet logged in: errored, for many polls
        assert kinds(tracker.reconcile([shut], at(i))) == []
    for i in range(20, 30):  # the old record removed, not yet re-enqueued: absent
        assert kinds(tracker.reconcile([], at(i))) == []
    assert kinds(tracker.reconcile([tr(b, "Queued, Locally")], at(31))) == []
    assert kinds(tracker.reconcile([tr(b, "Completed, Succeeded")], at(32))) == ["completed"]


def test_slskd_restart_fails_when_nothing_returns_in_the_window(tracker: Tracker) -> None:
    a = gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    shut = tr(a, "Completed, Errored", exception="Application shut down")
    tracker.reconcile([shut], at(1))
    assert kinds(tracker.reconcile([], at(100))) == []
    assert kinds(tracker.reconcile([], at(300))) == []
    ch = tracker.reconcile([], at(301))
    assert [(e.event.value, e.reason) for e in ch.events] == [("failed", "errored")]
    assert ch.events[0].error == "Application shut down"


def test_first_start_records_old_history_silently() -> None:
    fresh = Tracker(Rules(), initialized=False)
    done, failed, live = gid(), gid(), gid()
    ch = fresh.reconcile(
        [tr(done, "Completed, Succeeded", name="a"), tr(failed, "Completed, TimedOut", name="b"),
         tr(live, "InProgress", name="c")],
        at(0),
    )
    assert kinds(ch) == ["added", "started"] and {e.id for e in ch.events} == {live}
    assert ch.initialized and fresh.is_recorded(done) and fresh.is_recorded(failed)
    # after the baseline, an unseen ended transfer did end while we watched: it is reported
    late = gid()
    ch = fresh.reconcile([tr(late, "Completed, Succeeded", name="d")], at(1))
    assert kinds(ch) == ["added", "completed"]


def test_restart_from_persisted_rows_repeats_nothing(tracker: Tracker) -> None:
    a, b = gid(), gid()
    tracker.reconcile([tr(a, "InProgress", name="x"), tr(b, "InProgress", name="y")], at(0))
    tracker.reconcile([tr(a, "Completed, Succeeded", name="x"), tr(b, "InProgress", name="y")], at(1))
    # a new tracker built from what the store would hold
    again = Tracker(tracker.rules, tracked=tracker.active, ended=dict(tracker._ended), initialized=True)
    ch = again.reconcile([tr(a, "Completed, Succeeded", name="x"), tr(b, "Completed, Succeeded", name="y")], at(2))
    assert [(e.event.value, e.id) for e in ch.events] == [("completed", b)]


def test_changes_carry_only_what_changed(tracker: Tracker) -> None:
    a = gid()
    ch = tracker.reconcile([tr(a, "InProgress", bytes_transferred=1)], at(0))
    assert set(ch.upserts) == {a}
    ch = tracker.reconcile([tr(a, "InProgress", bytes_transferred=2)], at(1))
    assert ch.empty, "progress bytes alone must not cause a write"
    ch = tracker.reconcile([tr(a, "Completed, Succeeded")], at(2))
    assert ch.deletes == {a} and not ch.upserts and ch.ended == {a: Kind.SUCCEEDED}


def test_aliases_of_a_finished_download_stay_recorded(tracker: Tracker) -> None:
    a, b = gid(), gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    tracker.reconcile([tr(b, "InProgress")], at(1))
    tracker.reconcile([tr(b, "Completed, Succeeded")], at(2))
    # slskd now lists the old record again (e.g. includeRemoved-like glitch): ignored
    assert kinds(tracker.reconcile([tr(a, "Completed, Errored")], at(3))) == []


def test_same_file_from_two_peers_are_two_downloads(tracker: Tracker) -> None:
    a, b = gid(), gid()
    ch = tracker.reconcile([tr(a, "InProgress", user="p1"), tr(b, "InProgress", user="p2")], at(0))
    assert sorted(kinds(ch)) == ["added", "added", "started", "started"]
    ch = tracker.reconcile([tr(a, "Completed, Succeeded", user="p1"), tr(b, "Completed, Rejected", user="p2")], at(1))
    assert sorted(kinds(ch)) == ["completed", "failed"]


def test_forgets_ended_ids_slskd_stopped_listing(tracker: Tracker) -> None:
    tracker.FORGET_EVERY = 2
    a = gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    tracker.reconcile([tr(a, "Completed, Succeeded")], at(1))
    assert tracker.is_recorded(a)
    forgotten = set()
    for i in range(2, 8):
        forgotten |= tracker.reconcile([], at(i)).forgotten
    assert forgotten == {a} and not tracker.is_recorded(a)


def test_progress_counts_bytes_of_downloads_in_progress(tracker: Tracker) -> None:
    a, b, c = gid(), gid(), gid()
    tracker.reconcile(
        [tr(a, "InProgress", name="1", size=100, bytes_transferred=50, average_speed=10.0),
         tr(b, "InProgress", name="2", size=300, bytes_transferred=0, average_speed=5.0),
         tr(c, "Queued, Remotely", name="3")],
        at(0),
    )
    p = tracker.progress()
    assert (p.downloading, p.queued, p.bytes_total, p.bytes_done) == (2, 1, 400, 50)
    assert p.fraction == pytest.approx(0.125) and p.speed == 15.0


def test_event_payload_carries_the_raw_fields(tracker: Tracker) -> None:
    a = gid()
    hostile = "-rf \u202e<b>&</b>\x07" + "x" * 5000
    tracker.reconcile([tr(a, "InProgress", user="-bob", name=hostile, size=77)], at(0))
    ev = tracker.reconcile([tr(a, "Completed, Rejected", user="-bob", name=hostile, size=77)], at(1)).events[0]
    js = ev.to_json()
    assert js["event"] == "failed" and js["filename"] == hostile and js["username"] == "-bob"
    assert js["size"] == 77 and js["reason"] == "rejected" and js["at"].endswith("Z")
    assert ev.event is EventType.FAILED


def test_a_poll_with_unreadable_records_counts_no_one_missing(tracker: Tracker) -> None:
    """Issue 14.2: an absent download may be among the records that could not be read."""
    a, b = gid(), gid()
    tracker.reconcile([tr(a, "InProgress", name="a"), tr(b, "InProgress", name="b")], at(0))
    for i in range(1, 6):
        ch = tracker.reconcile([tr(b, "Completed, Succeeded", name="b")] if i == 1 else [], at(i), complete=False)
        assert "failed" not in kinds(ch)
        if i == 1:
            assert kinds(ch) == ["completed"], "the readable records still count"
    assert [d.key for d in tracker.active] == [a]
    for i in range(3):
        ch = tracker.reconcile([], at(10 + i))
    assert kinds(ch) == ["failed"] and ch.events[0].reason == "missing"


# ------------------------------------------------------------- polls that read some peers only (issue 12)


def test_a_partial_poll_counts_absence_only_for_the_peers_it_read(tracker: Tracker) -> None:
    a, b = gid(), gid()
    tracker.reconcile([tr(a, "InProgress", "alice", "a"), tr(b, "InProgress", "bob", "b")], at(0))
    for i in range(1, 6):  # bob's list was not read: his download is neither seen nor missed
        assert kinds(tracker.reconcile([tr(a, "InProgress", "alice", "a")], at(i), peers={"alice"})) == []
    assert {d.transfer_id: d.missing_polls for d in tracker.active} == {a: 0, b: 0}
    assert kinds(tracker.reconcile([], at(6), peers={"alice", "bob"})) == []
    assert kinds(tracker.reconcile([tr(a, "InProgress", "alice", "a")], at(7), peers={"alice", "bob"})) == []
    ch = tracker.reconcile([tr(a, "InProgress", "alice", "a")], at(8), peers={"bob"})
    assert kinds(ch) == ["failed"] and ch.events[0].id == b and ch.events[0].reason == "missing"


def test_partial_and_full_polls_add_up_to_the_same_grace(tracker: Tracker) -> None:
    a = gid()
    tracker.reconcile([tr(a, "InProgress", "alice")], at(0))
    assert kinds(tracker.reconcile([], at(1), peers={"alice"})) == []
    assert kinds(tracker.reconcile([], at(2))) == []
    assert kinds(tracker.reconcile([], at(3), peers={"alice"})) == ["failed"]


def test_peers_and_restart_need_the_whole_list(tracker: Tracker) -> None:
    a, b = gid(), gid()
    tracker.reconcile([tr(a, "InProgress", "alice", "a"), tr(b, "Queued, Remotely", "bob", "b")], at(0))
    assert tracker.peers() == {"alice", "bob"} and not tracker.needs_full_poll()
    tracker.reconcile([tr(a, "Completed, Errored", "alice", "a", exception="Application shut down")], at(1),
                      peers={"alice"})
    assert tracker.needs_full_poll()


def test_ids_not_built_still_count_as_listed_for_the_forget_sweep() -> None:
    old, gone = gid(), gid()
    tracker = Tracker(Rules(), ended={old: Kind.SUCCEEDED, gone: Kind.SUCCEEDED}, initialized=True)
    assert tracker.recorded == {old: Kind.SUCCEEDED, gone: Kind.SUCCEEDED}
    forgotten: set[str] = set()
    for i in range(2 * Tracker.FORGET_EVERY):
        forgotten |= tracker.reconcile([], at(i), also_listed=[old]).forgotten
        tracker.reconcile([], at(i), peers={"alice"})  # partial polls neither sweep nor count toward one
    assert forgotten == {gone} and tracker.is_recorded(old) and not tracker.is_recorded(gone)


def test_a_whole_list_read_by_id_with_some_peers_lists_sweeps_and_counts_only_those_peers() -> None:
    old, gone, live = gid(), gid(), gid()
    tracker = Tracker(Rules(), ended={old: Kind.SUCCEEDED, gone: Kind.SUCCEEDED}, initialized=True)
    tracker.reconcile([tr(live, "InProgress", "alice", "a")], at(0), peers={"alice"})
    forgotten: set[str] = set()
    for i in range(1, 2 * Tracker.FORGET_EVERY + 1):
        ch = tracker.reconcile([tr(live, "InProgress", "alice", "a")], at(i), peers={"alice"},
                               also_listed=[old, live], whole_list=True)
        forgotten |= ch.forgotten
        assert kinds(ch) == []
    assert forgotten == {gone} and tracker.is_recorded(old)
    assert kinds(tracker.reconcile([], at(1000), peers=frozenset(), also_listed=[old], whole_list=True)) == []
    assert [d.transfer_id for d in tracker.active] == [live] and tracker.active[0].missing_polls == 0


def test_followed_ids_hold_current_and_earlier_ids(tracker: Tracker) -> None:
    first, again = gid(), gid()
    tracker.reconcile([tr(first, "InProgress", "alice", "a")], at(0))
    tracker.reconcile([tr(again, "Queued, Locally", "alice", "a")], at(1))
    assert tracker.followed_ids() == {first, again}


def test_compact_keeps_every_recorded_outcome_in_new_strings() -> None:
    ids = [gid() + suffix for suffix in ("", "é", "日本", "")]  # any id slskd might send
    ended = {tid: kind for tid, kind in zip(ids, (Kind.SUCCEEDED, Kind.FAILED, Kind.CANCELLED, Kind.SUCCEEDED))}
    tracker = Tracker(Rules(), ended=dict(ended), initialized=True)
    before = list(tracker.recorded)  # held, so no new string can take an old one's place
    view = tracker.recorded
    tracker.compact()
    assert dict(tracker.recorded) == ended and dict(view) == ended
    assert all(new == old and new is not old for new, old in zip(tracker.recorded, before))
    assert all(tracker.is_recorded(tid) for tid in ids)


# ----------------------------------------------------------------------------- cancels trayagent made


def test_a_cancel_we_made_ends_cancelled_even_when_slskd_says_errored(tracker: Tracker) -> None:
    a, b = gid(), gid()
    tracker.reconcile([tr(a, "InProgress"), tr(b, "InProgress", name="other")], at(0))
    waiting = tr(a, "Queued, Locally", exception="Remote connection closed")  # between slskd's retries
    tracker.reconcile([waiting, tr(b, "InProgress", name="other")], at(1), cancelled={a})
    errored = tr(a, "Completed, Errored", exception="Remote connection closed")
    ch = tracker.reconcile([errored, tr(b, "Completed, Errored", name="other")], at(2), cancelled={a})
    assert [(e.event, e.id) for e in ch.events] == [(EventType.CANCELLED, a)], "no settling for our own cancel"
    assert tracker.recorded_outcome(a) is Kind.CANCELLED
    ch = tracker.reconcile([errored, tr(b, "Completed, Errored", name="other")], at(70), cancelled={a})
    assert [(e.event, e.id) for e in ch.events] == [(EventType.FAILED, b)]  # nobody cancelled b


def test_a_cancel_follows_the_download_across_its_ids(tracker: Tracker) -> None:
    old, new = gid(), gid()
    tracker.reconcile([tr(old, "InProgress")], at(0))
    tracker.reconcile([tr(old, "Completed, Errored", exception="Application shut down"),
                       tr(new, "Queued, Locally")], at(1))
    ch = tracker.reconcile([tr(new, "Completed, Errored")], at(2), cancelled={old})
    assert kinds(ch) == ["cancelled"]


def test_a_cancelled_download_that_vanishes_is_cancelled_not_missing(tracker: Tracker) -> None:
    a = gid()
    tracker.reconcile([tr(a, "Queued, Remotely")], at(0))
    for i in range(1, 4):
        ch = tracker.reconcile([], at(i), cancelled={a})
    assert kinds(ch) == ["cancelled"]


def test_a_cancelled_download_that_succeeded_anyway_is_a_success(tracker: Tracker) -> None:
    a = gid()
    tracker.reconcile([tr(a, "InProgress")], at(0))
    ch = tracker.reconcile([tr(a, "Completed, Succeeded")], at(1), cancelled={a})
    assert kinds(ch) == ["completed"]
