"""The tray icon and tooltip, drawn from an AgentState. Pure: state in, image or text out.

Shapes are drawn at 4x and box-downsampled (premultiplied), which keeps 16 px icons crisp
without ringing. Everything that affects the picture is first reduced to `icon_key`, and the
image is rendered from that key alone, so equal keys always mean identical pixels and the tray
can skip redraws (a progress ring that moved 0.1 % is not worth an X round trip).
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache

from PIL import Image, ImageDraw

from trayagent.core.model import AgentState
from trayagent.desktop.labels import sanitize

log = logging.getLogger(__name__)

#: The ring moves in steps of 1/RING_STEPS of a turn.
RING_STEPS = 32
SUPERSAMPLE = 4
TOOLTIP_LIMIT = 127  # Windows: 128 chars including the NUL

DISC = (47, 125, 209, 255)
GLYPH = (255, 255, 255, 255)
TRACK = (150, 150, 150, 150)
ARC = (53, 196, 106, 255)
BADGE = (229, 57, 53, 255)
BADGE_RIM = (255, 255, 255, 255)
PAUSE_BG = (70, 70, 70, 255)
SLASH = (60, 60, 60, 255)
SLASH_RIM = (235, 235, 235, 255)

# Geometry as fractions of the icon's side.
RING_OUTER = 0.49
RING_WIDTH = 0.14
RING_MID = RING_OUTER - RING_WIDTH / 2
BADGE_CENTER = (0.80, 0.20)
BADGE_RADIUS = 0.19

IconKey = tuple[str, int | None, bool, bool]


def is_disconnected(state: AgentState) -> bool:
    """Unreachable slskd, or slskd known to be logged out of Soulseek: nothing will move."""
    return (state.polled and not state.connected) or state.logged_in is False


def is_active(state: AgentState) -> bool:
    p = state.progress
    return p.downloading > 0 or p.queued > 0


def icon_key(state: AgentState, *, paused: bool = False) -> IconKey:
    """What the icon shows, quantised: (mode, ring step or None, badge, paused)."""
    if is_disconnected(state):
        mode, ring = "disconnected", None
    elif is_active(state):
        mode, ring = "active", int(round(state.progress.fraction * RING_STEPS))
    else:
        mode, ring = "idle", None
    return (mode, ring, state.failed_unseen > 0, bool(paused))


def render_icon(state: AgentState, size: int = 64, *, paused: bool = False) -> Image.Image:
    """The tray image (RGBA, size x size) for a state."""
    return render_key(icon_key(state, paused=paused), size).copy()


@lru_cache(maxsize=128)
def render_key(key: IconKey, size: int = 64) -> Image.Image:
    """Render from the quantised key (cached: callers must not mutate the result)."""
    mode, ring, badge, paused = key
    size = max(int(size), 8)
    big = size * SUPERSAMPLE
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)

    if mode == "active":
        _ring(draw, big, (ring or 0) / RING_STEPS)
        _disc(draw, big, radius=0.32)
    else:
        _disc(draw, big, radius=0.45)
    if mode == "disconnected":
        img = _greyscale(img)
        draw = ImageDraw.Draw(img)
        _slash(draw, big)
    if paused:
        _pause(draw, big)
    if badge:
        _badge(draw, big)

    small = img.convert("RGBa").resize((size, size), Image.Resampling.BOX)
    return small.convert("RGBA")


def _px(big: int, fraction: float) -> float:
    return big * fraction


def _ring(draw: ImageDraw.ImageDraw, big: int, fraction: float) -> None:
    inset = _px(big, 0.5 - RING_OUTER)
    box = (inset, inset, big - inset - 1, big - inset - 1)
    width = max(int(round(_px(big, RING_WIDTH))), 1)
    draw.ellipse(box, outline=TRACK, width=width)
    if fraction >= 1.0:
        draw.ellipse(box, outline=ARC, width=width)
    elif fraction > 0:
        # PIL angles run clockwise from 3 o'clock; the ring starts at 12 o'clock.
        draw.arc(box, start=-90, end=-90 + 360 * fraction, fill=ARC, width=width)


def _disc(draw: ImageDraw.ImageDraw, big: int, radius: float) -> None:
    c = big / 2
    r = _px(big, radius)
    draw.ellipse((c - r, c - r, c + r, c + r), fill=DISC)
    # Down arrow into a tray line: "downloads", legible at 16 px as a plain arrow.
    shaft_w = r * 0.34
    top = c - r * 0.62
    head_top = c - r * 0.02
    tip = c + r * 0.50
    draw.rectangle((c - shaft_w / 2, top, c + shaft_w / 2, head_top), fill=GLYPH)
    draw.polygon([(c - r * 0.52, head_top), (c + r * 0.52, head_top), (c, tip)], fill=GLYPH)
    bar_h = max(r * 0.12, 1)
    draw.rectangle((c - r * 0.55, c + r * 0.62, c + r * 0.55, c + r * 0.62 + bar_h), fill=GLYPH)


def _greyscale(img: Image.Image) -> Image.Image:
    """Drop colour, keep alpha, and lighten so it reads as 'inactive'."""
    lum, alpha = img.convert("LA").split()
    lum = lum.point(lambda v: 90 + v * 0.55)
    return Image.merge("RGBA", (lum, lum, lum, alpha))


def _slash(draw: ImageDraw.ImageDraw, big: int) -> None:
    a, b = (_px(big, 0.14), _px(big, 0.14)), (_px(big, 0.86), _px(big, 0.86))
    draw.line([a, b], fill=SLASH_RIM, width=max(int(_px(big, 0.17)), 2))
    draw.line([a, b], fill=SLASH, width=max(int(_px(big, 0.09)), 1))


def _badge(draw: ImageDraw.ImageDraw, big: int) -> None:
    cx, cy = _px(big, BADGE_CENTER[0]), _px(big, BADGE_CENTER[1])
    r = _px(big, BADGE_RADIUS)
    rim = _px(big, 0.035)
    draw.ellipse((cx - r - rim, cy - r - rim, cx + r + rim, cy + r + rim), fill=BADGE_RIM)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=BADGE)


def _pause(draw: ImageDraw.ImageDraw, big: int) -> None:
    """Notifications paused: a small pause sign in the bottom-right corner."""
    cx, cy, r = _px(big, 0.80), _px(big, 0.80), _px(big, 0.19)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=PAUSE_BG)
    w, h = r * 0.28, r * 0.95
    for dx in (-r * 0.30, r * 0.30):
        draw.rectangle((cx + dx - w / 2, cy - h / 2, cx + dx + w / 2, cy + h / 2), fill=GLYPH)


def ring_point(size: int, fraction: float) -> tuple[int, int]:
    """The pixel on the ring's centre line at `fraction` of a turn from 12 o'clock (tests, docs)."""
    angle = -math.pi / 2 + 2 * math.pi * fraction
    r = RING_MID * size
    c = size / 2
    return int(c + r * math.cos(angle)), int(c + r * math.sin(angle))


# --------------------------------------------------------------------------- tooltip


def format_rate(bytes_per_second: float) -> str:
    """1234567 -> '1.2 MB/s' (decimal units, like slskd's web UI)."""
    value = max(float(bytes_per_second), 0.0)
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("KB/s", 1e3)):
        if value >= scale:
            shown = value / scale
            return f"{shown:.1f} {unit}" if shown < 100 else f"{shown:.0f} {unit}"
    return f"{value:.0f} B/s"


def tooltip(state: AgentState, *, paused: bool = False) -> str:
    """One line for the tray tooltip and the menu's status item, at most 127 characters."""
    if not state.polled:
        parts = ["Connecting to slskd…"]
    elif not state.connected:
        parts = ["slskd unreachable"]
    elif state.logged_in is False:
        parts = ["slskd not logged in to Soulseek"]
    else:
        p = state.progress
        parts = []
        if p.downloading:
            parts.append(f"{p.downloading} downloading")
            if p.bytes_total > 0:
                parts.append(f"{int(p.fraction * 100)}%")
            if p.speed > 0:
                parts.append(format_rate(p.speed))
        if p.queued:
            parts.append(f"{p.queued} queued")
        if not parts:
            parts.append("Idle")
    if state.failed_unseen:
        parts.append(f"{state.failed_unseen} failed")
    if state.sync_status:
        parts.append(state.sync_status)
    if paused:
        parts.append("notifications paused")
    return sanitize(" · ".join(parts), TOOLTIP_LIMIT)
