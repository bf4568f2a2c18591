"""The backend ladder's choices, the Latin-1 title for XEmbed and the SNI icon pixmaps."""

from __future__ import annotations

import pytest
from PIL import Image

from trayagent.desktop import traybackend as tb
from trayagent.desktop.icons import BADGE, DISC, icon_key, render_key
from trayagent.core.model import AgentState
from trayagent.desktop.sni import ICON_SIZES, argb32, pixmaps


# --------------------------------------------------------------------------- ladder


@pytest.mark.parametrize(("setting", "expected"), [
    ("auto", ("sni", "gtk", "xorg")),
    ("sni", ("sni",)),
    ("xembed", ("gtk", "xorg")),
    ("none", ()),
])
def test_linux_rungs_follow_the_setting(setting: str, expected: tuple[str, ...]) -> None:
    assert tb.rungs(setting, "linux", {}) == expected


def test_windows_and_macos_use_pystray() -> None:
    for platform in ("win32", "darwin"):
        assert tb.rungs("auto", platform, {}) == ("pystray",)
        assert tb.rungs("xembed", platform, {}) == ("pystray",)
        assert tb.rungs("sni", platform, {}) == ()
        assert tb.rungs("none", platform, {}) == ()


def test_pystray_backend_env_pins_the_xembed_rung() -> None:
    assert tb.rungs("auto", "linux", {"PYSTRAY_BACKEND": "xorg"}) == ("sni", "xorg")
    assert tb.rungs("auto", "linux", {"PYSTRAY_BACKEND": "appindicator"}) == ("sni", "pystray")
    assert tb.rungs("xembed", "linux", {"PYSTRAY_BACKEND": "gtk"}) == ("gtk",)


def test_choose_takes_the_first_usable_rung_and_plan_says_why_not() -> None:
    problems = {"sni": "no StatusNotifierWatcher", "gtk": None, "xorg": None}
    ladder = tb.plan("auto", problems.__getitem__, "linux", {})
    assert ladder == [tb.Rung("sni", "no StatusNotifierWatcher"), tb.Rung("gtk", None), tb.Rung("xorg", None)]
    assert tb.choose(ladder) == tb.Rung("gtk", None)
    assert tb.choose(tb.plan("auto", lambda name: None, "linux", {})) == tb.Rung("sni", None)
    assert tb.choose(tb.plan("auto", lambda name: "nope", "linux", {})) is None
    assert tb.choose(tb.plan("none", lambda name: None, "linux", {})) is None


def test_probes_without_a_session_explain_themselves() -> None:
    assert tb.probe("sni", {}) == "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset)"
    assert "DISPLAY is unset" in (tb.probe("gtk", {}) or "")
    assert "DISPLAY is unset" in (tb.probe("xorg", {}) or "")
    dead_bus = tb.probe("sni", {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"})
    assert dead_bus is not None and "cannot connect" in dead_bus


# --------------------------------------------------------------------------- XEmbed text


def test_latin1_title_encodes_what_the_agent_writes() -> None:
    assert tb.latin1_title("Connecting to slskd…") == "Connecting to slskd..."
    assert tb.latin1_title("1 downloading · 42% — Café") == "1 downloading · 42% - Café"
    title = tb.latin1_title("坂本龍一 — 戦場のメリークリスマス")
    title.encode("latin-1")  # what python-xlib does with a window name; must not raise
    assert title == "???? - " + "?" * 11


# --------------------------------------------------------------------------- pixmaps


def test_argb32_is_network_byte_order_on_a_known_pixel() -> None:
    img = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    img.putpixel((1, 0), (0x11, 0x22, 0x33, 0x80))
    width, height, data = argb32(img)
    assert (width, height) == (2, 1)
    assert data == bytes([0, 0, 0, 0, 0x80, 0x11, 0x22, 0x33])  # A, R, G, B; not premultiplied


def test_pixmaps_are_drawn_at_every_size_by_icons() -> None:
    key = icon_key(AgentState(connected=True, polled=True, logged_in=True, failed_unseen=1))
    maps = pixmaps(key)
    assert [(w, h) for w, h, _ in maps] == [(s, s) for s in ICON_SIZES]
    for w, h, data in maps:
        assert len(data) == w * h * 4
    w, h, data = maps[-1]
    image = render_key(key, w)
    for (x, y), colour in (((int(w * 0.15), h // 2), DISC), ((int(w * 0.80), int(h * 0.20)), BADGE)):
        assert image.getpixel((x, y)) == colour
        at = (y * w + x) * 4
        assert data[at:at + 4] == bytes([colour[3], *colour[:3]])  # the disc, the badge: as A R G B
