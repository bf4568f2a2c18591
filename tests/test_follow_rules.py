"""The one rule set for following a download (core/rules.judge), shared by the tracker and the sync."""

from __future__ import annotations

import pytest

from trayagent.core.model import Kind, classify
from trayagent.core.rules import MISSING_REASON, RESTART_REASON, Phase, Wait, judge
from trayagent.core.tracker import Rules

RULES = Rules(grace_polls=3, failure_settle=60.0, restart_window=300.0)


@pytest.mark.parametrize("state", ["Queued, Remotely", "Queued, Locally", "Initializing", "InProgress", "Requested"])
def test_a_live_transfer_is_going(state: str) -> None:
    assert judge(classify(state), RULES).phase is Phase.GOING


@pytest.mark.parametrize("state,kind", [
    ("Completed, Succeeded", Kind.SUCCEEDED),
    ("Completed, Cancelled", Kind.CANCELLED),
])
def test_success_and_cancellation_end_at_once(state: str, kind: Kind) -> None:
    verdict = judge(classify(state), RULES)
    assert verdict.ended and verdict.outcome is kind and verdict.reason is None


def test_a_rejection_ends_at_once_a_retryable_failure_settles_first() -> None:
    rejected = judge(classify("Completed, Rejected"), RULES)
    assert rejected.ended and (rejected.outcome, rejected.reason) == (Kind.FAILED, "rejected")

    errored = classify("Completed, Errored")
    first = judge(errored, RULES)  # no clock yet: this observation starts it
    assert first.phase is Phase.SETTLING and first.wait is Wait.FAILURE
    assert judge(errored, RULES, failing_for=59.9).phase is Phase.SETTLING
    done = judge(errored, RULES, failing_for=60.0)
    assert done.ended and (done.outcome, done.reason) == (Kind.FAILED, "errored")


def test_a_restart_casualty_waits_the_restart_window_not_the_failure_settle() -> None:
    errored = classify("Completed, Errored")
    waiting = judge(errored, RULES, casualty=True, failing_for=1000.0, restarting_for=299.0)
    assert waiting.phase is Phase.SETTLING and waiting.wait is Wait.RESTART
    done = judge(errored, RULES, casualty=True, restarting_for=300.0)
    assert done.ended and done.outcome is Kind.FAILED


def test_what_the_follower_cancelled_ends_cancelled_whatever_slskd_shows() -> None:
    for state in ("Completed, Errored", "Completed, TimedOut", "Completed, Rejected"):
        verdict = judge(classify(state), RULES, casualty=True, cancelled=True)
        assert verdict.ended and verdict.outcome is Kind.CANCELLED
    assert judge(classify("Completed, Succeeded"), RULES, cancelled=True).outcome is Kind.SUCCEEDED


def test_a_missing_download_ends_after_grace_polls() -> None:
    assert judge(None, RULES, missing_polls=1).phase is Phase.MISSING
    assert judge(None, RULES, missing_polls=2).phase is Phase.MISSING
    gone = judge(None, RULES, missing_polls=3, last_reason="timedout")
    assert gone.ended and (gone.outcome, gone.reason) == (Kind.FAILED, MISSING_REASON)
    # it had been failing when it vanished: the failure it showed is the reason
    settled = judge(None, RULES, missing_polls=3, failing_for=5.0, last_reason="timedout")
    assert (settled.outcome, settled.reason) == (Kind.FAILED, "timedout")
    assert judge(None, RULES, missing_polls=3, cancelled=True).outcome is Kind.CANCELLED


def test_a_missing_restart_casualty_waits_for_its_new_id_however_many_polls() -> None:
    waiting = judge(None, RULES, restarting_for=10.0, missing_polls=50)
    assert waiting.phase is Phase.SETTLING and waiting.wait is Wait.RESTART
    gone = judge(None, RULES, restarting_for=300.0)
    assert gone.ended and (gone.outcome, gone.reason) == (Kind.FAILED, RESTART_REASON)
    assert judge(None, RULES, restarting_for=300.0, last_reason="aborted").reason == "aborted"
    assert judge(None, RULES, restarting_for=300.0, cancelled=True).outcome is Kind.CANCELLED


def test_rules_of_zero_end_on_the_first_observation() -> None:
    instant = Rules(grace_polls=1, failure_settle=0.0, restart_window=0.0)
    assert judge(classify("Completed, Errored"), instant).ended
    assert judge(classify("Completed, Errored"), instant, casualty=True).ended
    assert judge(None, instant, missing_polls=1).ended
