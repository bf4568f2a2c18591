"""The dbusmenu layout served to StatusNotifierItem hosts: structure, properties, stable ids, revisions."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from trayagent.desktop import menu as T
from trayagent.desktop.dbusmenu import LAYOUT_SIGNATURE, MenuLayout, UnknownItem, item_props
from trayagent.core.model import AgentState, Finished, Kind
from trayagent.desktop.menu import ItemSpec, MenuModel

NOW = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def done(name: str, outcome: Kind = Kind.SUCCEEDED) -> Finished:
    return Finished(transfer_id=name, username="bob", filename=f"@@abc\\Music\\Artist\\Album\\{name}", size=1,
                    outcome=outcome, reason="rejected" if outcome is Kind.FAILED else None, state="Completed",
                    error=None, first_seen=NOW, finished_at=NOW)


def model(**state: Any) -> MenuModel:
    state.setdefault("connected", True)
    state.setdefault("logged_in", True)
    return MenuModel.build(AgentState(**state), now=NOW, download_dir="/music")


def labels(layout: tuple[int, dict[str, Any], list[Any]]) -> list[str]:
    return [child[1][1].get("label", ("s", "-"))[1] for child in layout[2]]


def by_label(menu: MenuLayout, label: str) -> int:
    for node_id, props in menu.group_properties([]):
        if props.get("label") == ("s", label):
            return node_id
    raise AssertionError(f"no item {label!r}")


def test_get_layout_structure_and_properties() -> None:
    menu = MenuLayout()
    menu.update(model().items)
    revision, root = menu.get_layout(0, -1, [])
    assert revision == 1
    assert root[0] == 0 and root[1] == {"children-display": ("s", "submenu")}
    assert labels(root) == ["Idle", "-", "Open slskd", "Sync now", "Sync playlists", "Clear finished",
                            "Retry failed", "Recent", "-", "Pause notifications", "Pause for 1 hour", "-", "Quit"]
    assert all(sig == LAYOUT_SIGNATURE for sig, _ in root[2])
    children = {c[1][1].get("label", ("s", "-"))[1]: c[1] for c in root[2]}
    assert children["Idle"][1] == {"label": ("s", "Idle"), "enabled": ("b", False)}
    assert children["Clear finished"][1] == {"label": ("s", "Clear finished"), "enabled": ("b", True)}
    assert children["Pause notifications"][1]["toggle-type"] == ("s", "checkmark")
    assert children["Pause notifications"][1]["toggle-state"] == ("i", 0)
    recent = children["Recent"]
    assert recent[1]["children-display"] == ("s", "submenu")
    assert [c[1][1]["label"][1] for c in recent[2]] == ["No finished downloads yet"]
    separators = [c[1] for c in root[2] if c[1][1].get("type") == ("s", "separator")]
    assert len(separators) == 3 and all(s[1] == {"type": ("s", "separator")} for s in separators)


def test_depth_and_property_filter() -> None:
    menu = MenuLayout()
    menu.update(model().items)
    _, only_root = menu.get_layout(0, 0, [])
    assert only_root[2] == []
    _, one_level = menu.get_layout(0, 1, ["label"])
    recent = next(c[1] for c in one_level[2] if c[1][1].get("label") == ("s", "Recent"))
    assert recent[2] == [] and recent[1] == {"label": ("s", "Recent")}
    _, sub = menu.get_layout(recent[0], -1, [])
    assert labels(sub) == ["No finished downloads yet"]
    with pytest.raises(UnknownItem):
        menu.get_layout(999, -1, [])


def test_ids_are_stable_when_labels_change_and_revision_bumps() -> None:
    menu = MenuLayout()
    first = menu.update(model().items)
    clear_id = by_label(menu, "Clear finished")
    status_id = by_label(menu, "Idle")

    change = menu.update(model(failed_unseen=1).items)  # the status line changes its text only
    assert change.revision == 2 and menu.revision == 2
    assert change.layout_parents == []  # no item came or went: an open menu is updated in place
    assert change.updated == [(status_id, {"label": ("s", "Idle · 1 failed")})]
    assert by_label(menu, "Clear finished") == clear_id
    assert first.revision == 1

    same = menu.update(model(failed_unseen=1).items)
    assert not same.changed and same.revision == 2 and menu.revision == 2


def test_new_recent_entries_update_the_submenu_layout_and_enable_retry() -> None:
    menu = MenuLayout()
    menu.update(model().items)
    retry = by_label(menu, "Retry failed")
    recent = by_label(menu, "Recent")
    change = menu.update(model(recent=(done("01 - Song.flac"), done("02 - Bad.flac", Kind.FAILED))).items)
    assert change.layout_parents == [recent]
    assert (retry, {"enabled": ("b", True)}) in change.updated  # explicit: hosts do not reset removed props
    assert change.removed == []
    _, sub = menu.get_layout(recent, -1, [])
    assert labels(sub) == ["✓ Song — Artist", "✗ Bad (rejected)"]
    assert menu.action_for(sub[2][0][1][0]) == (T.OPEN_FOLDER, "/music/Album")


def test_actions_for_clicks_and_none_for_disabled_or_unknown() -> None:
    menu = MenuLayout()
    menu.update(model().items)
    assert menu.action_for(by_label(menu, "Clear finished")) == (T.CLEAR, None)
    assert menu.action_for(by_label(menu, "Retry failed")) is None  # disabled: nothing failed
    assert menu.action_for(by_label(menu, "Idle")) is None
    assert menu.action_for(12345) is None


def test_underscores_are_not_mnemonics_and_group_properties() -> None:
    assert item_props(ItemSpec("my_song_name", "x"))["label"] == ("s", "my__song__name")
    menu = MenuLayout()
    menu.update(model().items)
    quit_id = by_label(menu, "Quit")
    assert menu.group_properties([quit_id, 9999], ["label"]) == [(quit_id, {"label": ("s", "Quit")})]
    assert menu.get_property(quit_id, "label") == ("s", "Quit")
    with pytest.raises(UnknownItem):
        menu.get_property(quit_id, "icon-name")
