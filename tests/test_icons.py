"""Tray icon pixels, icon keys and tooltips: checked on the rendered image, no display needed."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from trayagent.desktop.icons import (
    ARC,
    BADGE,
    BADGE_CENTER,
    RING_STEPS,
    TOOLTIP_LIMIT,
    TRACK,
    format_rate,
    icon_key,
    render_icon,
    ring_point,
    tooltip,
)
from trayagent.core.model import AgentState, Progress

SIZES = (16, 22, 32, 48, 64)


def state(connected: bool = True, logged_in: bool | None = True, failed: int = 0, **progress: float) -> AgentState:
    return AgentState(connected=connected, logged_in=logged_in, failed_unseen=failed,
                      progress=Progress(**progress))  # type: ignore[arg-type]


def active(fraction: float, **kw: object) -> AgentState:
    return state(downloading=1, bytes_total=1000, bytes_done=int(fraction * 1000), **kw)  # type: ignore[arg-type]


def pixels(img: Image.Image) -> list[tuple[int, ...]]:
    """RGBA tuples (getdata is deprecated in Pillow 13, get_flattened_data is too new)."""
    raw = img.convert("RGBA").tobytes()
    return [tuple(raw[i : i + 4]) for i in range(0, len(raw), 4)]


def close(px: tuple[int, ...], colour: tuple[int, ...], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px[:3], colour[:3]))


def is_arc(px: tuple[int, ...]) -> bool:
    return px[3] > 200 and close(px, ARC)


def is_red(px: tuple[int, ...]) -> bool:
    return px[3] > 128 and px[0] > 180 and px[1] < 110 and px[2] < 110


def arc_fraction(img: Image.Image, samples: int = 360) -> float:
    """Share of sample angles along the ring's centre line that are drawn in the arc colour."""
    hits = sum(1 for i in range(samples) if is_arc(img.getpixel(ring_point(img.width, (i + 0.5) / samples))))
    return hits / samples


class TestRing:
    @pytest.mark.parametrize("fraction", [0.0, 0.25, 0.42, 0.5, 0.75, 1.0])
    def test_arc_fraction_matches_progress(self, fraction: float) -> None:
        img = render_icon(active(fraction), 64)
        assert arc_fraction(img) == pytest.approx(round(fraction * RING_STEPS) / RING_STEPS, abs=0.03)

    def test_arc_starts_at_twelve_and_runs_clockwise(self) -> None:
        img = render_icon(active(0.25), 64)
        assert is_arc(img.getpixel(ring_point(64, 0.05)))  # just after 12 o'clock
        assert is_arc(img.getpixel(ring_point(64, 0.20)))  # towards 3 o'clock
        assert not is_arc(img.getpixel(ring_point(64, 0.30)))
        assert not is_arc(img.getpixel(ring_point(64, 0.95)))  # counter-clockwise side is empty
        track = img.getpixel(ring_point(64, 0.6))
        assert track[3] > 0 and close(track, TRACK, 30)  # the rest shows the grey track

    def test_idle_has_no_ring(self) -> None:
        img = render_icon(state(), 64)
        assert arc_fraction(img) == 0.0

    def test_queued_only_shows_empty_ring(self) -> None:
        img = render_icon(state(queued=3), 64)
        assert arc_fraction(img) == 0.0
        assert img.getpixel(ring_point(64, 0.5))[3] > 0  # the track is there


class TestBadge:
    def badge_px(self, img: Image.Image) -> tuple[int, ...]:
        return img.getpixel((int(BADGE_CENTER[0] * img.width), int(BADGE_CENTER[1] * img.height)))

    @pytest.mark.parametrize("size", SIZES)
    def test_badge_present_only_with_unseen_failures(self, size: int) -> None:
        assert is_red(self.badge_px(render_icon(state(failed=2), size)))
        assert not is_red(self.badge_px(render_icon(state(failed=0), size)))
        assert is_red(self.badge_px(render_icon(active(0.5, failed=1), size)))

    def test_no_red_anywhere_without_failures(self) -> None:
        img = render_icon(active(0.9), 64)
        assert not any(is_red(px) for px in pixels(img))

    def test_badge_colour(self) -> None:
        assert close(self.badge_px(render_icon(state(failed=1), 64)), BADGE, 10)


class TestDisconnected:
    @pytest.mark.parametrize("s", [state(connected=False), state(logged_in=False), active(0.5, logged_in=False)])
    def test_greyscale_with_slash(self, s: AgentState) -> None:
        img = render_icon(s, 64)
        coloured = [px for px in pixels(img) if px[3] > 0 and (max(px[:3]) - min(px[:3])) > 2]
        assert coloured == []
        # the slash crosses the centre diagonal: dark pixels along it
        dark = [img.getpixel((i, i)) for i in range(16, 48)]
        assert sum(1 for px in dark if px[3] > 200 and px[0] < 90) >= 20

    def test_unknown_login_is_not_disconnected(self) -> None:
        assert icon_key(state(logged_in=None))[0] == "idle"

    def test_badge_still_shows_when_disconnected(self) -> None:
        img = render_icon(state(connected=False, failed=1), 64)
        assert any(is_red(px) for px in pixels(img))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("s", [state(), active(0.3), state(failed=1), state(connected=False)])
def test_every_size_renders_visible_rgba(size: int, s: AgentState) -> None:
    img = render_icon(s, size)
    assert img.mode == "RGBA" and img.size == (size, size)
    opaque = sum(1 for px in pixels(img) if px[3] > 128)
    assert opaque > size * size * 0.3  # a solid glyph, not a speck
    assert img.getpixel((0, 0))[3] == 0  # transparent corner: round icon on any panel


def test_paused_marker_changes_pixels() -> None:
    assert render_icon(state(), 32).tobytes() != render_icon(state(), 32, paused=True).tobytes()


def test_render_returns_independent_copies() -> None:
    a = render_icon(state(), 16)
    a.putpixel((8, 8), (1, 2, 3, 4))
    assert render_icon(state(), 16).getpixel((8, 8)) != (1, 2, 3, 4)


class TestKey:
    def test_small_progress_changes_do_not_change_key(self) -> None:
        assert icon_key(active(0.500)) == icon_key(active(0.505))
        assert icon_key(active(0.50)) != icon_key(active(0.60))

    def test_key_ignores_what_the_icon_does_not_show(self) -> None:
        a = state(downloading=2, queued=5, bytes_total=100, bytes_done=50, speed=10.0)
        b = state(downloading=7, queued=1, bytes_total=1000, bytes_done=500, speed=9999.0)
        assert icon_key(a) == icon_key(b)
        assert icon_key(state(failed=1)) == icon_key(state(failed=9))
        # disconnected: progress is not drawn, so it does not matter
        assert icon_key(active(0.1, connected=False)) == icon_key(active(0.9, connected=False))

    def test_key_changes_with_each_visible_input(self) -> None:
        keys = {
            icon_key(state()),
            icon_key(state(failed=1)),
            icon_key(state(connected=False)),
            icon_key(state(), paused=True),
            icon_key(active(0.5)),
        }
        assert len(keys) == 5

    def test_equal_keys_mean_identical_pixels(self) -> None:
        a, b = active(0.500), active(0.505)
        assert icon_key(a) == icon_key(b)
        assert render_icon(a, 32).tobytes() == render_icon(b, 32).tobytes()


class TestTooltip:
    def test_active(self) -> None:
        s = state(downloading=3, queued=2, bytes_total=1000, bytes_done=420, speed=1_234_567)
        assert tooltip(s) == "3 downloading · 42% · 1.2 MB/s · 2 queued"

    def test_states(self) -> None:
        assert tooltip(state()) == "Idle"
        assert tooltip(state(connected=False)) == "slskd unreachable"
        assert tooltip(state(logged_in=False)) == "slskd not logged in to Soulseek"
        assert tooltip(state(queued=4)) == "4 queued"
        assert tooltip(state(failed=2)) == "Idle · 2 failed"
        assert tooltip(state(), paused=True) == "Idle · notifications paused"

    def test_capped_single_line(self) -> None:
        s = state(downloading=10**120, queued=10**120, failed=10**50)
        text = tooltip(s)
        assert len(text) <= TOOLTIP_LIMIT and "\n" not in text

    @pytest.mark.parametrize(
        "rate,text", [(0, "0 B/s"), (999, "999 B/s"), (1500, "1.5 KB/s"), (1_200_000, "1.2 MB/s"), (2.5e9, "2.5 GB/s")]
    )
    def test_rate(self, rate: float, text: str) -> None:
        assert format_rate(rate) == text


def test_ring_point_geometry() -> None:
    x, y = ring_point(64, 0.0)
    assert x == 32 and y < 10  # top centre
    x, y = ring_point(64, 0.25)
    assert y == 32 and x > 54  # 3 o'clock
    assert math.isclose(ring_point(64, 0.5)[0], 32, abs_tol=1)


def test_tooltip_shows_sync_progress() -> None:
    from trayagent.desktop.icons import tooltip as tip
    from trayagent.core.model import AgentState as S

    assert tip(S(connected=True, logged_in=True, sync_status="Sync 3/10")) == "Idle · Sync 3/10"


def test_before_the_first_poll_it_is_connecting_not_unreachable() -> None:
    from trayagent.desktop.icons import icon_key as key, tooltip as tip
    from trayagent.core.model import AgentState as S

    starting = S(connected=False, polled=False)
    assert tip(starting) == "Connecting to slskd…"
    assert key(starting)[0] != "disconnected"
    assert key(S(connected=False, polled=True))[0] == "disconnected"
