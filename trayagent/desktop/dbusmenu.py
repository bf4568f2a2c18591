"""The tray menu as a ``com.canonical.dbusmenu`` layout: pure data, no D-Bus connection.

A StatusNotifierItem host (KDE Plasma, the XFCE panel, waybar, GNOME's AppIndicator extension)
draws the item's menu itself, from the tree this module serves over GetLayout. Kept apart from
the bus code (sni.py) so the tree, its ids and its change signals can be tested without a bus.

Values are in jeepney's shapes: a variant is a ``(signature, value)`` tuple, a struct a tuple.

Ids are stable: an item's id comes from its place in the menu and what it does (its action),
not from its text, so a status line or a Recent entry that changes its label keeps its id and
an open menu is updated in place (ItemsPropertiesUpdated) instead of being rebuilt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Sequence, Union

if TYPE_CHECKING:
    from trayagent.desktop.menu import ItemSpec

INTERFACE = "com.canonical.dbusmenu"
#: The version of the dbusmenu protocol served (the ``Version`` property).
VERSION = 3
ROOT_ID = 0

Variant = tuple[str, Union[str, bool, int]]
Props = dict[str, Variant]
#: A layout node on the wire: (id, properties, children as variants of the same struct).
Layout = tuple[int, Props, list[tuple[str, "Layout"]]]
LAYOUT_SIGNATURE = "(ia{sv}av)"
#: An item's identity: parent's key + (position, what it does); not its label.
ItemKey = tuple[object, ...]


class UnknownItem(LookupError):
    """A host asked about an id that is not in the menu (any more)."""


@dataclass(frozen=True, slots=True)
class Node:
    id: int
    props: Props
    children: tuple[Node, ...] = ()
    action: str | None = None
    arg: str | None = None


@dataclass(slots=True)
class Change:
    """What an update changed, as the signals a host needs to stay current."""

    revision: int
    #: The ids whose children changed (LayoutUpdated(revision, id) each); empty if none.
    layout_parents: list[int] = field(default_factory=list)
    #: ItemsPropertiesUpdated arguments: new or changed values, and names now at their default.
    updated: list[tuple[int, Props]] = field(default_factory=list)
    removed: list[tuple[int, list[str]]] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.layout_parents or self.updated or self.removed)


def item_props(spec: ItemSpec) -> Props:
    """dbusmenu properties for one item; the defaults visible and type "standard" are left out.

    ``enabled`` is always sent, even when true (the default): a host that is told a property
    was removed (ItemsPropertiesUpdated's second list) does not reliably reset it, so an item
    that becomes enabled gets an explicit true instead (libdbusmenu-gtk, seen on xfce4-panel).
    """
    if spec.separator:
        return {"type": ("s", "separator")}
    # An underscore marks a mnemonic in dbusmenu labels; a literal one is doubled.
    props: Props = {"label": ("s", spec.text.replace("_", "__")), "enabled": ("b", spec.enabled)}
    if spec.checked is not None:
        props["toggle-type"] = ("s", "checkmark")
        props["toggle-state"] = ("i", 1 if spec.checked else 0)
    if spec.submenu is not None:
        props["children-display"] = ("s", "submenu")
    return props


def _kind(spec: ItemSpec) -> str:
    if spec.separator:
        return "separator"
    if spec.submenu is not None:
        return "submenu"
    return spec.action or "label"


class MenuLayout:
    """The current menu tree with stable ids and a revision that grows with every change."""

    def __init__(self) -> None:
        self.revision = 0
        self._ids: dict[ItemKey, int] = {}
        self._next_id = ROOT_ID + 1
        self._root = Node(ROOT_ID, {"children-display": ("s", "submenu")})
        self._nodes: dict[int, Node] = {ROOT_ID: self._root}

    # -- building

    def update(self, items: Sequence[ItemSpec]) -> Change:
        """Replace the tree with ``items``; returns what changed (nothing: revision unchanged)."""
        root = Node(ROOT_ID, self._root.props, self._build(items, ()))
        nodes = {n.id: n for n in _walk(root)}
        change = _diff(self._nodes, nodes, self.revision + 1)
        if change.changed:
            self.revision += 1
            self._root, self._nodes = root, nodes
        else:
            change.revision = self.revision
        return change

    def _build(self, items: Sequence[ItemSpec], parent: ItemKey) -> tuple[Node, ...]:
        out = []
        for position, spec in enumerate(items):
            key = (*parent, position, _kind(spec))
            node_id = self._ids.get(key)
            if node_id is None:
                node_id = self._ids[key] = self._next_id
                self._next_id += 1
            children = self._build(spec.submenu, key) if spec.submenu is not None else ()
            out.append(Node(node_id, item_props(spec), children, spec.action, spec.arg))
        return tuple(out)

    # -- queries (the com.canonical.dbusmenu methods)

    def node(self, item_id: int) -> Node:
        try:
            return self._nodes[item_id]
        except KeyError:
            raise UnknownItem(f"no menu item with id {item_id}") from None

    def has(self, item_id: int) -> bool:
        return item_id in self._nodes

    def get_layout(self, parent_id: int, depth: int, names: Sequence[str] = ()) -> tuple[int, Layout]:
        """GetLayout: (revision, the subtree at parent_id). depth -1: all levels; 0: the node only."""
        return self.revision, _serialise(self.node(parent_id), depth, tuple(names))

    def group_properties(self, ids: Iterable[int], names: Sequence[str] = ()) -> list[tuple[int, Props]]:
        """GetGroupProperties: ids that no longer exist are skipped, as libdbusmenu does."""
        ids = list(ids) or list(self._nodes)  # an empty list means every item
        return [(i, _select(self._nodes[i].props, tuple(names))) for i in ids if i in self._nodes]

    def get_property(self, item_id: int, name: str) -> Variant:
        props = self.node(item_id).props
        if name not in props:
            raise UnknownItem(f"menu item {item_id} has no property {name!r}")
        return props[name]

    def action_for(self, item_id: int) -> tuple[str, str | None] | None:
        """What clicking this item does: (action, arg), or None (status line, disabled, unknown)."""
        node = self._nodes.get(item_id)
        if node is None or node.action is None or node.props.get("enabled") == ("b", False):
            return None
        return node.action, node.arg


def _walk(node: Node) -> Iterable[Node]:
    yield node
    for child in node.children:
        yield from _walk(child)


def _select(props: Props, names: tuple[str, ...]) -> Props:
    return dict(props) if not names else {k: v for k, v in props.items() if k in names}


def _serialise(node: Node, depth: int, names: tuple[str, ...]) -> Layout:
    children: list[tuple[str, Layout]] = []
    if depth != 0:
        children = [(LAYOUT_SIGNATURE, _serialise(c, depth - 1, names)) for c in node.children]
    return node.id, _select(node.props, names), children


def _diff(old: dict[int, Node], new: dict[int, Node], revision: int) -> Change:
    change = Change(revision)
    for node_id, node in new.items():
        before = old.get(node_id)
        if before is None:
            continue  # a new item: its parent's children changed, reported below
        if [c.id for c in before.children] != [c.id for c in node.children]:
            change.layout_parents.append(node_id)
        updated = {k: v for k, v in node.props.items() if before.props.get(k) != v}
        gone = [k for k in before.props if k not in node.props]
        if updated:
            change.updated.append((node_id, updated))
        if gone:
            change.removed.append((node_id, gone))
    return change


def properties_xml(props: str) -> str:
    """Read-only property elements for introspection, from "Name:signature Name:signature"."""
    return "".join(f'<property name="{n}" type="{t}" access="read"/>'
                   for n, t in (p.split(":") for p in props.split()))


#: The interface as introspection XML (served by sni.py at the menu's object path).
INTROSPECTION = (
    f'<interface name="{INTERFACE}">'
    + properties_xml("Version:u TextDirection:s Status:s IconThemePath:as")
    + '<method name="GetLayout"><arg name="parentId" type="i" direction="in"/>'
    '<arg name="recursionDepth" type="i" direction="in"/><arg name="propertyNames" type="as" direction="in"/>'
    '<arg name="revision" type="u" direction="out"/><arg name="layout" type="(ia{sv}av)" direction="out"/></method>'
    '<method name="GetGroupProperties"><arg name="ids" type="ai" direction="in"/>'
    '<arg name="propertyNames" type="as" direction="in"/><arg name="properties" type="a(ia{sv})" direction="out"/>'
    "</method>"
    '<method name="GetProperty"><arg name="id" type="i" direction="in"/><arg name="name" type="s" direction="in"/>'
    '<arg name="value" type="v" direction="out"/></method>'
    '<method name="Event"><arg name="id" type="i" direction="in"/><arg name="eventId" type="s" direction="in"/>'
    '<arg name="data" type="v" direction="in"/><arg name="timestamp" type="u" direction="in"/></method>'
    '<method name="EventGroup"><arg name="events" type="a(isvu)" direction="in"/>'
    '<arg name="idErrors" type="ai" direction="out"/></method>'
    '<method name="AboutToShow"><arg name="id" type="i" direction="in"/>'
    '<arg name="needUpdate" type="b" direction="out"/></method>'
    '<method name="AboutToShowGroup"><arg name="ids" type="ai" direction="in"/>'
    '<arg name="updatesNeeded" type="ai" direction="out"/><arg name="idErrors" type="ai" direction="out"/></method>'
    '<signal name="ItemsPropertiesUpdated"><arg name="updatedProps" type="a(ia{sv})"/>'
    '<arg name="removedProps" type="a(ias)"/></signal>'
    '<signal name="LayoutUpdated"><arg name="revision" type="u"/><arg name="parent" type="i"/></signal>'
    '<signal name="ItemActivationRequested"><arg name="id" type="i"/><arg name="timestamp" type="u"/></signal>'
    "</interface>"
)
