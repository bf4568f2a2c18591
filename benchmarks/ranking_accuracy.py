"""Pick accuracy of the playlist sync's ranking on the public test set (tests/ranking_cases.json).

For every case (one wanted track, the responses peers sent, the right pick or "no match") the
ranking's first choice is compared with the expected one. Printed: right picks, accuracy, and
the picks that were a wrong version (another recording, song or artist: the error that must
never happen), overall and per tag; then the same for the ranking on `--baseline-ref` (main by
default, read with `git show`), measured in the same run, and the ratio between the two.

    .venv/bin/python benchmarks/ranking_accuracy.py [--baseline-ref main] [--show-misses]

Targets (issue 10): accuracy >= 95 %, zero wrong-version picks.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import types
from collections import defaultdict
from typing import Any

from _common import ROOT, header

sys.path.insert(0, str(ROOT / "tests"))

from ranking_cases import Outcome, load_cases, run_cases  # noqa: E402

from trayagent.sync.playlist import WantedTrack  # noqa: E402
from trayagent.sync.ranking import RankPrefs, rank  # noqa: E402


def current(wanted: WantedTrack, responses: list[dict[str, Any]], prefs: dict[str, Any]) -> Any:
    ranked = rank(wanted, responses, RankPrefs(preferred_formats=tuple(prefs["preferred_formats"]),
                                               min_bitrate=prefs["min_bitrate"], long_queue=prefs["long_queue"]))
    return ranked[0].key if ranked else None


def baseline_ranker(ref: str) -> Any:
    """The ranking module as it is on `ref` (loaded from git, not imported from this tree)."""
    try:
        source = subprocess.run(["git", "show", f"{ref}:trayagent/sync/ranking.py"], cwd=ROOT, check=True,
                                capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"   baseline: cannot read trayagent/sync/ranking.py at {ref!r} ({exc}); skipped")
        return None
    module = types.ModuleType(f"ranking_at_{ref}")
    module.__dict__["__name__"] = module.__name__
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{ref}:trayagent/sync/ranking.py", "exec"), module.__dict__)

    def ranker(wanted: WantedTrack, responses: list[dict[str, Any]], prefs: dict[str, Any]) -> Any:
        known = set(module.RankPrefs.__dataclass_fields__)
        opts = {k: (tuple(v) if isinstance(v, list) else v) for k, v in prefs.items() if k in known}
        ranked = module.rank(wanted, responses, module.RankPrefs(**opts))
        return ranked[0].key if ranked else None

    return ranker


def report(label: str, outcomes: list[Outcome], wrong: int, cases: list[dict[str, Any]], misses: bool) -> float:
    right = sum(o.right for o in outcomes)
    accuracy = right / len(outcomes)
    print(f"   {label:<9} {right}/{len(outcomes)} right picks = {100 * accuracy:.1f} %, "
          f"{wrong} wrong-version pick{'s' if wrong != 1 else ''}")
    by_tag: dict[str, list[bool]] = defaultdict(list)
    for case, outcome in zip(cases, outcomes):
        for tag in case["tags"]:
            by_tag[tag].append(outcome.right)
    print("             per tag: " + ", ".join(f"{t} {sum(v)}/{len(v)}" for t, v in sorted(by_tag.items())))
    if misses:
        for o in outcomes:
            if not o.right:
                print(f"             miss {o.case}: picked {o.picked}, expected {o.expected}")
    return accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-ref", default="main", help="git ref whose ranking is the baseline")
    parser.add_argument("--show-misses", action="store_true", help="list every wrong pick")
    args = parser.parse_args(argv)
    header("ranking accuracy on tests/ranking_cases.json")
    cases = load_cases()
    print(f"   {len(cases)} cases, {sum(1 for c in cases if c['expect'] is None)} of them 'no match'")
    outcomes, wrong = run_cases(current, cases)
    after = report("current", outcomes, wrong, cases, args.show_misses)
    base = baseline_ranker(args.baseline_ref)
    if base is not None:
        b_outcomes, b_wrong = run_cases(base, cases)
        before = report(args.baseline_ref, b_outcomes, b_wrong, cases, args.show_misses)
        ratio = after / before if before else float("inf")
        print(f"   accuracy ratio current/{args.baseline_ref}: {ratio:.2f}x; "
              f"wrong-version picks {b_wrong} -> {wrong}")
    met = after >= 0.95 and wrong == 0
    print(f"   target (>= 95 % right, 0 wrong-version picks): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
