"""A throw-away headless desktop for end-to-end tests.

``Desktop`` starts, each in its own process group and all owned by the test:

* ``Xvfb`` on a display number it picks itself (``-displayfd``, so parallel runs never clash),
* a private D-Bus session bus with **no service activation** (nothing starts behind our back),
* ``dunst`` (the notification server a user would see) with a test configuration,
* ``trayer`` (an XEmbed system tray, i.e. the ``_NET_SYSTEM_TRAY_S0`` selection owner),
* or instead ``xfce4-panel`` with its status tray plugin (``with_panel=True``): a real
  StatusNotifierItem host that owns ``org.kde.StatusNotifierWatcher`` (after ``xfconfd``),
* optionally the AT-SPI accessibility bus, used only to *locate* menu items on screen.

Input is real X input through ``xdotool`` (XTEST), screenshots come from ImageMagick's
``import -window root``, and window queries use python-xlib. ``stop()`` kills every process
group it started, so nothing outlives the test even when it fails.
"""

from __future__ import annotations

import atexit
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, TypeVar

from Xlib import X
from Xlib import display as xdisplay
from Xlib import error as xerror
from Xlib.xobject.drawable import Window

T = TypeVar("T")

#: Binaries the harness cannot work without (the e2e fixture reports the missing ones).
REQUIRED_BINARIES: tuple[str, ...] = (
    "Xvfb",
    "dbus-daemon",
    "dunst",
    "dunstctl",
    "notify-send",
    "trayer",
    "xdotool",
    "import",
    "xfce4-panel",
)

#: Where Debian-family systems install xfconfd (xfce4-panel reads its settings from it).
XFCONFD_PATHS: tuple[str, ...] = (
    "/usr/lib/x86_64-linux-gnu/xfce4/xfconf/xfconfd",
    "/usr/lib/aarch64-linux-gnu/xfce4/xfconf/xfconfd",
    "/usr/lib/xfce4/xfconf/xfconfd",
    "/usr/libexec/xfconfd",
)
SNI_WATCHER = "org.kde.StatusNotifierWatcher"
PANEL_HEIGHT = 32
#: One top panel, full width, holding only the status tray (StatusNotifierItem + XEmbed) plugin.
PANEL_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<channel name="xfce4-panel" version="1.0">
  <property name="configver" type="int" value="2"/>
  <property name="panels" type="array">
    <value type="int" value="1"/>
    <property name="panel-1" type="empty">
      <property name="position" type="string" value="p=6;x=0;y=0"/>
      <property name="length" type="uint" value="100"/>
      <property name="position-locked" type="bool" value="true"/>
      <property name="size" type="uint" value="{height}"/>
      <property name="plugin-ids" type="array">
        <value type="int" value="1"/>
      </property>
    </property>
  </property>
  <property name="plugins" type="empty">
    <property name="plugin-1" type="string" value="systray"/>
  </property>
</channel>
"""

#: Where at-spi2-core installs its bus launcher on Debian-family systems.
ATSPI_LAUNCHERS: tuple[str, ...] = (
    "/usr/libexec/at-spi-bus-launcher",
    "/usr/lib/at-spi2-core/at-spi-bus-launcher",
)

SCREEN_WIDTH = 1024
SCREEN_HEIGHT = 768
TRAY_HEIGHT = 32
#: trayer's background tint (``--tint``); anything else in the tray strip is an icon.
TRAY_TINT = (0x20, 0x20, 0x20)
#: The desktop's background (Xvfb's default root is black), so screenshots read well.
ROOT_COLOUR = (0x3B, 0x42, 0x52)

DUNSTRC = """\
[global]
    monitor = 0
    follow = none
    width = 420
    height = 300
    origin = top-left
    offset = 16x48
    notification_limit = 0
    font = DejaVu Sans 11
    frame_width = 2
    frame_color = "#8fa1b3"
    separator_height = 2
    padding = 10
    horizontal_padding = 10
    # What the user reads: bold summary, then the body. `full` markup means dunst parses
    # Pango markup, so unescaped markup in the *data* would render; the agent must escape it.
    markup = full
    format = "<b>%s</b>\\n%b"
    alignment = left
    word_wrap = yes
    ellipsize = middle
    ignore_newline = no
    show_age_threshold = -1
    idle_threshold = 0
    sticky_history = yes
    history_length = 100
    stack_duplicates = false
    show_indicators = no
    icon_position = off
    dmenu = /bin/false
    browser = /bin/false
    mouse_left_click = none
    mouse_middle_click = none
    mouse_right_click = none

[urgency_low]
    background = "#2b303b"
    foreground = "#eeeeee"
    timeout = 0

[urgency_normal]
    background = "#2b303b"
    foreground = "#ffffff"
    timeout = 0

[urgency_critical]
    background = "#900000"
    foreground = "#ffffff"
    frame_color = "#ff0000"
    timeout = 0
"""

DBUS_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>unix:dir={socket_dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


class DesktopError(RuntimeError):
    """A desktop component failed to start or a UI expectation timed out."""


class ProcessDied(DesktopError):
    """A component exited while we waited for it: no point waiting any longer."""


@dataclass(frozen=True)
class Geometry:
    """A window's absolute position and size on the root window."""

    x: int
    y: int
    width: int
    height: int

    @property
    def center(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, upper, right, lower), as Pillow's ``Image.crop`` wants it."""
        return self.x, self.y, self.x + self.width, self.y + self.height


@dataclass(frozen=True)
class WindowInfo:
    """A snapshot of one X window."""

    id: int
    geometry: Geometry
    mapped: bool
    override_redirect: bool
    wm_class: tuple[str, ...]
    name: str


def missing_binaries(names: Iterable[str] = REQUIRED_BINARIES) -> list[str]:
    """The subset of ``names`` not found on PATH."""
    return [name for name in names if shutil.which(name) is None]


def xfconfd_path() -> str | None:
    """Path of xfconfd (package xfconf), if installed."""
    for path in XFCONFD_PATHS:
        if os.access(path, os.X_OK):
            return path
    return None


def atspi_launcher() -> str | None:
    """Path of at-spi-bus-launcher, if installed."""
    for path in ATSPI_LAUNCHERS:
        if os.access(path, os.X_OK):
            return path
    return None


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Poll ``predicate`` until it returns something truthy; raise DesktopError on timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
        except ProcessDied:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline, then reported
            last_exc = exc
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise DesktopError(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)


def _read_line_from_fd(fd: int, timeout: float, what: str) -> str:
    """Read one newline-terminated line from a pipe within ``timeout`` seconds."""
    import select

    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DesktopError(f"timed out waiting for {what}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise DesktopError(f"{what}: pipe closed before a line was written (got {buf!r})")
        buf += chunk
    return buf.split(b"\n", 1)[0].decode().strip()


_RUNNING: set[Desktop] = set()  # strong refs: a forgotten Desktop is still stopped at exit


@atexit.register
def _stop_forgotten_desktops() -> None:
    for desktop in list(_RUNNING):
        desktop.stop()


class Desktop:
    """A headless X desktop with a notification server and a system tray.

    Use as a context manager. ``env`` is the environment a desktop application needs to
    run inside it (DISPLAY, the private bus, private XDG directories).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        with_tray: bool = True,
        with_notifications: bool = True,
        with_accessibility: bool = False,
        with_panel: bool = False,
        start_timeout: float = 15.0,
        dunst_settings: Mapping[str, str] | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        #: [global] settings that replace DUNSTRC's (e.g. the ``dmenu`` that shows a context menu).
        self.dunst_settings = dict(dunst_settings or {})
        self.with_panel = with_panel
        self.panel_proc: subprocess.Popen[bytes] | None = None
        self.with_tray = with_tray
        self.with_notifications = with_notifications
        self.with_accessibility = with_accessibility
        self.start_timeout = start_timeout
        self.display_name = ""
        self.bus_address = ""
        self.env: dict[str, str] = {}
        self.logs_dir = self.workdir / "logs"
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._x: xdisplay.Display | None = None
        self.tray_window: int | None = None
        self.runtime_dir: Path | None = None

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Desktop:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every component and wait until each one is ready."""
        _RUNNING.add(self)  # stopped at interpreter exit at the latest, whatever the caller does
        missing = missing_binaries(self._needed_binaries())
        if missing:
            raise DesktopError("missing binaries: " + ", ".join(missing))
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self._make_env()
        self._start_xvfb()
        self._start_dbus()
        if self.with_accessibility:
            self._start_atspi()
        if self.with_notifications:
            self._start_dunst()
        if self.with_tray:
            self._start_trayer()
        if self.with_panel:
            self._start_panel()

    def stop(self) -> None:
        """Stop every process group this desktop started, newest first. Idempotent."""
        if self._x is not None:
            try:
                self._x.close()
            except Exception:  # noqa: BLE001 - the server may already be gone
                pass
            self._x = None
        while self._procs:
            name, proc = self._procs.pop()
            self._kill_group(proc)
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None
        _RUNNING.discard(self)

    def _needed_binaries(self) -> list[str]:
        needed = ["Xvfb", "dbus-daemon", "xdotool", "import"]
        if self.with_notifications:
            needed += ["dunst", "dunstctl", "notify-send"]
        if self.with_tray:
            needed.append("trayer")
        if self.with_panel:
            needed.append("xfce4-panel")
        return needed

    @staticmethod
    def _kill_group(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
        """SIGTERM the process group of ``proc``, then SIGKILL whatever is left.

        Every process is spawned as a session leader, so its group id is its pid; the id
        cannot be reused while any member of the group is alive.
        """
        pgid = proc.pid
        if proc.poll() is None:
            try:
                os.killpg(pgid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Children of the group (e.g. services a bus spawned) may outlive the leader.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass

    def _make_env(self) -> None:
        xdg = self.workdir / "xdg"
        for sub in ("config", "state", "data", "cache"):
            (xdg / sub).mkdir(parents=True, exist_ok=True)
        # Sockets live here (the a11y bridge's among them): a unix socket path must fit in
        # 108 bytes, which a pytest tmp_path easily exceeds, so this one is short.
        runtime = Path(tempfile.mkdtemp(prefix="trayagent-e2e-"))
        runtime.chmod(0o700)
        self.runtime_dir = runtime
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("XDG_", "DBUS_", "WAYLAND_", "GTK_", "GDK_", "AT_SPI"))
            and k not in {"DISPLAY", "XAUTHORITY", "NO_AT_BRIDGE", "PYSTRAY_BACKEND"}
        }
        env.update(
            XDG_CONFIG_HOME=str(xdg / "config"),
            XDG_STATE_HOME=str(xdg / "state"),
            XDG_DATA_HOME=str(xdg / "data"),
            XDG_CACHE_HOME=str(xdg / "cache"),
            XDG_RUNTIME_DIR=str(runtime),
            GDK_BACKEND="x11",
            # No dconf-service activation, no surprise settings from the host.
            GSETTINGS_BACKEND="memory",
            LANG=env.get("LANG") or "C.UTF-8",
        )
        if not self.with_accessibility:
            env["NO_AT_BRIDGE"] = "1"
        self.env = env

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        pass_fds: Sequence[int] = (),
        cwd: Path | None = None,
        stdout: Any = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` in its own process group, logging to ``logs/<name>.log``.

        The process is stopped by :meth:`stop` (or earlier by :meth:`terminate`).
        """
        log_path = self.logs_dir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            proc = subprocess.Popen(
                list(argv),
                env=dict(env if env is not None else self.env),
                stdin=subprocess.DEVNULL,
                stdout=stdout if stdout is not None else log,
                stderr=log,
                pass_fds=tuple(pass_fds),
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            log.close()
        self._procs.append((name, proc))
        return proc

    def terminate(self, proc: subprocess.Popen[bytes], grace: float = 5.0) -> int | None:
        """Stop one spawned process group now; returns the leader's exit code."""
        self._kill_group(proc, grace)
        self._procs = [(n, p) for n, p in self._procs if p is not proc]
        return proc.returncode

    def log_text(self, name: str) -> str:
        """Everything a spawned component wrote to stderr (and stdout, unless redirected)."""
        path = self.logs_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _check_alive(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is not None:
            raise ProcessDied(
                f"{name} exited with {proc.returncode}:\n{self.log_text(name)[-2000:]}"
            )

    def _start_xvfb(self) -> None:
        read_fd, write_fd = os.pipe()
        try:
            proc = self.spawn(
                "xvfb",
                [
                    "Xvfb",
                    "-displayfd", str(write_fd),
                    "-screen", "0", f"{SCREEN_WIDTH}x{SCREEN_HEIGHT}x24",
                    "-nolisten", "tcp",
                    "-noreset",
                ],
                pass_fds=[write_fd],
            )
            os.close(write_fd)
            write_fd = -1
            number = _read_line_from_fd(read_fd, self.start_timeout, "Xvfb's display number")
        finally:
            if write_fd >= 0:
                os.close(write_fd)
            os.close(read_fd)
        self.display_name = f":{number}"
        self.env["DISPLAY"] = self.display_name

        def connected() -> bool:
            self._check_alive("xvfb", proc)
            self._x = xdisplay.Display(self.display_name)
            return True

        wait_for(connected, self.start_timeout, f"X server {self.display_name}")
        self._paint_root()

    def _paint_root(self) -> None:
        screen = self.x.screen()
        r, g, b = ROOT_COLOUR
        pixel = screen.default_colormap.alloc_color(r * 257, g * 257, b * 257).pixel
        screen.root.change_attributes(background_pixel=pixel)
        screen.root.clear_area()
        self.x.sync()

    def _start_dbus(self) -> None:
        assert self.runtime_dir is not None
        socket_dir = self.runtime_dir / "bus"
        socket_dir.mkdir(exist_ok=True)
        config = self.workdir / "session-bus.conf"
        config.write_text(DBUS_CONFIG.format(socket_dir=socket_dir))
        read_fd, write_fd = os.pipe()
        try:
            self.spawn(
                "dbus",
                [
                    "dbus-daemon",
                    f"--config-file={config}",
                    "--nofork",
                    "--nopidfile",
                    f"--print-address={write_fd}",
                ],
                pass_fds=[write_fd],
            )
            os.close(write_fd)
            write_fd = -1
            self.bus_address = _read_line_from_fd(read_fd, self.start_timeout, "D-Bus address")
        finally:
            if write_fd >= 0:
                os.close(write_fd)
            os.close(read_fd)
        self.env["DBUS_SESSION_BUS_ADDRESS"] = self.bus_address

    def _start_atspi(self) -> None:
        launcher = atspi_launcher()
        if launcher is None:
            raise DesktopError("at-spi-bus-launcher is not installed (package at-spi2-core)")
        proc = self.spawn("atspi", [launcher, "--launch-immediately"])

        def registered() -> bool:
            self._check_alive("atspi", proc)
            return self.bus_has_name("org.a11y.Bus")

        wait_for(registered, self.start_timeout, "the accessibility bus (org.a11y.Bus)")

    def bus_has_name(self, name: str) -> bool:
        out = subprocess.run(
            [
                "dbus-send", "--session", "--print-reply", "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus", "org.freedesktop.DBus.NameHasOwner", f"string:{name}",
            ],
            env=self.env, capture_output=True, text=True, timeout=10,
        )
        return out.returncode == 0 and "boolean true" in out.stdout

    def _start_dunst(self) -> None:
        rc = self.workdir / "dunstrc"
        text = DUNSTRC
        for key, value in self.dunst_settings.items():
            text, found = re.subn(rf"(?m)^    {re.escape(key)} = .*$", lambda _m: f"    {key} = {value}", text)
            if not found:
                text = text.replace("[global]\n", f"[global]\n    {key} = {value}\n", 1)
        rc.write_text(text)
        proc = self.spawn("dunst", ["dunst", "-config", str(rc)])

        def answering() -> bool:
            self._check_alive("dunst", proc)
            out = self.dunstctl("is-paused", check=False)
            return out.returncode == 0 and out.stdout.strip() in ("true", "false")

        wait_for(answering, self.start_timeout, "dunst on the private bus")

    def _start_panel(self) -> None:
        """xfconfd with a one-panel config, then xfce4-panel (as root it needs --disable-wm-check)."""
        xfconfd = xfconfd_path()
        if xfconfd is None:
            raise DesktopError("xfconfd is not installed (package xfconf)")
        channel = Path(self.env["XDG_CONFIG_HOME"]) / "xfce4" / "xfconf" / "xfce-perchannel-xml"
        channel.mkdir(parents=True, exist_ok=True)
        (channel / "xfce4-panel.xml").write_text(PANEL_XML.format(height=PANEL_HEIGHT))
        proc = self.spawn("xfconfd", [xfconfd])

        def answering() -> bool:
            self._check_alive("xfconfd", proc)
            return self.bus_has_name("org.xfce.Xfconf")

        wait_for(answering, self.start_timeout, "xfconfd on the private bus")
        self.start_panel()

    def start_panel(self) -> None:
        """Start xfce4-panel and wait until it owns the StatusNotifierWatcher and is on screen."""
        proc = self.panel_proc = self.spawn("panel", ["xfce4-panel", "--disable-wm-check"])

        def ready() -> bool:
            self._check_alive("panel", proc)
            return self.bus_has_name(SNI_WATCHER) and self.panel_geometry() is not None

        wait_for(ready, self.start_timeout, f"xfce4-panel to own {SNI_WATCHER}")

    def kill_panel(self) -> None:
        """Kill the panel (as a crash or a panel restart would) and wait until its watcher is gone."""
        if self.panel_proc is not None:
            self.terminate(self.panel_proc)
            self.panel_proc = None
        wait_for(lambda: not self.bus_has_name(SNI_WATCHER), self.start_timeout, "the watcher to leave the bus")

    def panel_geometry(self) -> Geometry | None:
        """Where the xfce4-panel window is, or None when it is not mapped."""
        for w in self.top_level_windows():
            if w.mapped and "xfce4-panel" in w.wm_class and w.geometry.height >= PANEL_HEIGHT // 2:
                return w.geometry
        return None

    def sni_items(self) -> list[str]:
        """The watcher's RegisteredStatusNotifierItems ("bus-name/object-path" each)."""
        from jeepney import DBusAddress, Properties
        from jeepney.io.blocking import open_dbus_connection

        watcher = DBusAddress("/StatusNotifierWatcher", bus_name=SNI_WATCHER, interface=SNI_WATCHER)
        with open_dbus_connection(self.bus_address) as conn:
            reply = conn.send_and_get_reply(Properties(watcher).get("RegisteredStatusNotifierItems"), timeout=5)
        if reply.header.message_type.name == "error":
            raise DesktopError(f"no StatusNotifierWatcher answered: {reply.body}")
        return list(reply.body[0][1])

    def _start_trayer(self) -> None:
        tint = "0x%02x%02x%02x" % TRAY_TINT
        proc = self.spawn(
            "trayer",
            [
                "trayer",
                "--edge", "top",
                "--align", "right",
                "--widthtype", "request",
                "--height", str(TRAY_HEIGHT),
                "--heighttype", "pixel",
                # --tint only applies to trayer's pseudo-transparency; alpha 0 makes it opaque.
                "--transparent", "true",
                "--alpha", "0",
                "--tint", tint,
                "--expand", "true",
                "--SetDockType", "true",
                "--SetPartialStrut", "true",
                "--margin", "0",
                "--padding", "0",
            ],
        )

        def tray_ready() -> int | None:
            self._check_alive("trayer", proc)
            owner = self.tray_selection_owner()
            if owner is None:
                return None
            windows = [w for w in self.top_level_windows() if "trayer" in w.wm_class]
            mapped = [w for w in windows if w.mapped]
            return mapped[0].id if mapped else None

        self.tray_window = wait_for(tray_ready, self.start_timeout, "trayer's tray window")

    # ------------------------------------------------------------------ X queries

    @property
    def x(self) -> xdisplay.Display:
        if self._x is None:
            raise DesktopError("the desktop is not running")
        return self._x

    def tray_selection_owner(self) -> int | None:
        """Window id owning ``_NET_SYSTEM_TRAY_S0`` (the tray host), or None."""
        atom = self.x.intern_atom("_NET_SYSTEM_TRAY_S0")
        owner = self.x.get_selection_owner(atom)
        return None if owner in (X.NONE, 0) else int(owner.id)

    def _info(self, win: Window) -> WindowInfo | None:
        try:
            attrs = win.get_attributes()
            geom = win.get_geometry()
            pos = win.translate_coords(self.x.screen().root, 0, 0)
            wm_class = win.get_wm_class() or ()
            name = win.get_wm_name() or ""
        except (xerror.BadWindow, xerror.BadDrawable, xerror.BadMatch):
            return None
        if isinstance(name, bytes):
            name = name.decode(errors="replace")
        return WindowInfo(
            id=int(win.id),
            geometry=Geometry(-pos.x, -pos.y, geom.width, geom.height),
            mapped=attrs.map_state == X.IsViewable,
            override_redirect=bool(attrs.override_redirect),
            wm_class=tuple(wm_class),
            name=str(name),
        )

    def window_pid(self, window_id: int) -> int | None:
        """The ``_NET_WM_PID`` a client set on its window (GTK always does), or None."""
        atom = self.x.intern_atom("_NET_WM_PID")
        try:
            prop = self.x.create_resource_object("window", window_id).get_full_property(
                atom, X.AnyPropertyType
            )
        except (xerror.BadWindow, xerror.BadDrawable):
            return None
        return int(prop.value[0]) if prop is not None and len(prop.value) else None

    def top_level_windows(self) -> list[WindowInfo]:
        """Every child of the root window, bottom to top."""
        root = self.x.screen().root
        out = []
        for child in root.query_tree().children:
            info = self._info(child)
            if info is not None:
                out.append(info)
        return out

    def tray_geometry(self) -> Geometry:
        """Where trayer's panel is on screen."""
        if self.tray_window is None:
            raise DesktopError("no tray running")
        info = self._info(self.x.create_resource_object("window", self.tray_window))
        if info is None:
            raise DesktopError("trayer's window vanished")
        return info.geometry

    def tray_children(self) -> list[WindowInfo]:
        """Icons docked in trayer: the mapped XEmbed client windows inside its panel.

        trayer reparents each client into a socket window of its own, so this walks the
        whole subtree and returns the leaf windows that are mapped and have a size.
        """
        if self.tray_window is None:
            raise DesktopError("no tray running")
        found: list[WindowInfo] = []

        def walk(win: Window, depth: int) -> None:
            try:
                children = win.query_tree().children
            except (xerror.BadWindow, xerror.BadDrawable):
                return
            for child in children:
                info = self._info(child)
                if info is None:
                    continue
                if info.wm_class and "trayer" not in info.wm_class and info.mapped:
                    # A foreign client (it has its own WM_CLASS) embedded into trayer.
                    if info.geometry.width > 1 and info.geometry.height > 1:
                        found.append(info)
                    continue
                walk(child, depth + 1)

        walk(self.x.create_resource_object("window", self.tray_window), 0)
        return found

    def popup_windows(self) -> list[WindowInfo]:
        """Mapped override-redirect top-level windows (menus, tooltips) that are not dunst's."""
        return [
            w
            for w in self.top_level_windows()
            if w.mapped
            and w.override_redirect
            and "Dunst" not in w.wm_class
            and "dunst" not in w.wm_class
            and w.geometry.width > 8
            and w.geometry.height > 8
            # GTK keeps a 10x10 helper window mapped off-screen at (-100, -100).
            and w.geometry.x + w.geometry.width > 0
            and w.geometry.y + w.geometry.height > 0
        ]

    def dunst_windows(self) -> list[WindowInfo]:
        """dunst's mapped notification window(s)."""
        return [
            w
            for w in self.top_level_windows()
            if w.mapped and ("Dunst" in w.wm_class or "dunst" in w.wm_class)
        ]

    # ------------------------------------------------------------------ input & output

    def xdotool(self, *args: str) -> str:
        """Run xdotool against this display; returns its stdout."""
        out = subprocess.run(
            ["xdotool", *args], env=self.env, capture_output=True, text=True, timeout=15
        )
        if out.returncode != 0:
            raise DesktopError(f"xdotool {' '.join(args)} failed: {out.stderr.strip()}")
        return out.stdout

    def pointer(self) -> tuple[int, int]:
        """Where the pointer is, in root coordinates."""
        reply = self.x.screen().root.query_pointer()
        return int(reply.root_x), int(reply.root_y)

    def click(self, x: int, y: int, button: int = 1) -> None:
        """Move the pointer to (x, y) and click ``button`` (1 left, 3 right)."""
        # Not `mousemove --sync`: it waits for motion forever if the pointer is already there.
        self.xdotool("mousemove", str(x), str(y))
        wait_for(lambda: self.pointer() == (x, y), 5, f"the pointer to reach {(x, y)}", 0.02)
        time.sleep(0.15)  # let the toolkit see the enter/motion before the press
        self.xdotool("click", str(button))

    def key(self, *keys: str) -> None:
        """Press keys (xdotool names, e.g. ``Escape``) on whatever has the keyboard."""
        self.xdotool("key", *keys)

    def right_click_window(self, window: WindowInfo) -> None:
        """Right-click the middle of ``window``."""
        self.click(*window.geometry.center, button=3)

    def screenshot(self, path: Path | str) -> Path:
        """Save the whole screen as PNG at ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["import", "-display", self.display_name, "-window", "root", f"png:{path}"],
            env=self.env, check=True, capture_output=True, timeout=30,
        )
        return path

    # ------------------------------------------------------------------ notifications

    def dunstctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run dunstctl on the private bus."""
        out = subprocess.run(
            ["dunstctl", *args], env=self.env, capture_output=True, text=True, timeout=15
        )
        if check and out.returncode != 0:
            raise DesktopError(f"dunstctl {' '.join(args)} failed: {out.stderr.strip()}")
        return out

    def notify_send(self, *args: str) -> None:
        """Run notify-send on the private bus."""
        subprocess.run(
            ["notify-send", *args], env=self.env, check=True, capture_output=True, timeout=15
        )

    def notification_count(self, which: str = "displayed") -> int:
        """``dunstctl count displayed|waiting|history``."""
        return int(self.dunstctl("count", which).stdout.strip() or 0)

    def notification_history(self) -> list[dict[str, Any]]:
        """Notifications in dunst's history, oldest first, as flat dicts.

        Keys include ``summary``, ``body`` (as received), ``message`` (the text dunst
        rendered after applying ``format`` and markup: what the user reads) and ``appname``.
        Notifications still on screen are not in history; see :meth:`all_notifications`.
        """
        raw = json.loads(self.dunstctl("history").stdout or '{"data": [[]]}')
        entries = raw.get("data", [[]])
        entries = entries[0] if entries and isinstance(entries[0], list) else entries
        flat = [{k: v.get("data") for k, v in entry.items()} for entry in entries]
        return sorted(flat, key=lambda e: (e.get("timestamp") or 0, e.get("id") or 0))

    def all_notifications(self) -> list[dict[str, Any]]:
        """Close everything on screen (moving it to history), then return the history."""
        for _ in range(50):
            if self.notification_count("displayed") == 0 and self.notification_count("waiting") == 0:
                break
            self.dunstctl("close-all")
            time.sleep(0.1)
        return self.notification_history()

    def wait_for_displayed(self, count: int, timeout: float = 20.0) -> int:
        """Wait until dunst shows (or queues) at least ``count`` notifications; returns how many."""
        def enough() -> int | None:
            total = self.notification_count("displayed") + self.notification_count("waiting")
            return total if total >= count else None

        try:
            return wait_for(enough, timeout, f"{count} notification(s) on screen", interval=0.2)
        except DesktopError as exc:
            raise DesktopError(f"{exc}; history: {self.notification_history()!r}") from None

    # ------------------------------------------------------------------ accessibility

    def accessibles(self, pid: int | None = None) -> list[dict[str, Any]]:
        """Every accessible object (role, name, screen extents, states) of the desktop's apps.

        Queried in a child process (AT-SPI binds a process to one bus for life). Needs
        ``with_accessibility=True`` and PyGObject with the Atspi typelib (gir1.2-atspi-2.0).
        """
        if not self.with_accessibility:
            raise DesktopError("this Desktop was started without accessibility")
        argv = [sys.executable, str(Path(__file__).resolve()), "accessibles"]
        if pid is not None:
            argv += ["--pid", str(pid)]
        out = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise DesktopError(f"AT-SPI query failed: {out.stderr.strip()[-1500:]}")
        return json.loads(out.stdout)

    def find_menu_item(self, label: str, pid: int | None = None) -> dict[str, Any] | None:
        """The showing menu item called ``label`` (in an open menu), or None."""
        for node in self.accessibles(pid):
            if (
                node["name"] == label
                and node["role"] in MENU_ITEM_ROLES
                and node["showing"]
                and node["width"] > 0
                and node["height"] > 0
            ):
                return node
        return None

    def open_menu_items(self, pid: int | None = None) -> list[str]:
        """Labels of the menu items currently shown on screen, top to bottom."""
        items = [
            n for n in self.accessibles(pid)
            if n["role"] in MENU_ITEM_ROLES and n["showing"] and n["width"] > 0 and n["name"]
        ]
        return [n["name"] for n in sorted(items, key=lambda n: (n["x"], n["y"]))]

    def click_menu_item(self, label: str, pid: int | None = None, timeout: float = 10.0) -> Geometry:
        """Click the open menu's item ``label`` with the real pointer; returns where it was.

        AT-SPI only *locates* the item; the click itself is X input (XTEST via xdotool), so
        the toolkit sees exactly what a user's click would produce. The point clicked must lie
        inside a mapped popup (menu) window, or this raises.
        """
        node = wait_for(
            lambda: self.find_menu_item(label, pid), timeout, f"menu item {label!r} on screen"
        )
        where = Geometry(node["x"], node["y"], node["width"], node["height"])
        if not node["sensitive"]:
            raise DesktopError(f"menu item {label!r} is disabled")
        cx, cy = where.center
        inside = [
            p for p in self.popup_windows()
            if p.geometry.x <= cx < p.geometry.x + p.geometry.width
            and p.geometry.y <= cy < p.geometry.y + p.geometry.height
        ]
        if not inside:
            raise DesktopError(f"menu item {label!r} at {where} is not inside any open menu window")
        self.click(cx, cy, button=1)
        return where


#: AT-SPI role names of clickable menu entries.
MENU_ITEM_ROLES = frozenset({"menu item", "check menu item", "radio menu item", "menu"})

_TAG_RE = re.compile(r"<[^>]*>")


def visible_text(markup: str) -> str:
    """What a Pango-markup string displays: tags dropped, entities decoded."""
    return html.unescape(_TAG_RE.sub("", markup))


def _dump_accessibles(pid: int | None) -> list[dict[str, Any]]:
    """Walk the AT-SPI tree of every application (or just ``pid``'s)."""
    import gi

    gi.require_version("Atspi", "2.0")
    from gi.repository import Atspi  # type: ignore[attr-defined]

    out: list[dict[str, Any]] = []

    def walk(acc: Any, app_pid: int, depth: int) -> None:
        if depth > 40:
            return
        try:
            role = acc.get_role_name()
            name = acc.get_name() or ""
            states = acc.get_state_set()
            count = acc.get_child_count()
        except Exception:  # noqa: BLE001 - objects die while we walk; skip them
            return
        x = y = width = height = -1
        if role != "application":  # applications have no extents (asking logs a CRITICAL)
            try:
                ext = acc.get_extents(Atspi.CoordType.SCREEN)
                x, y, width, height = ext.x, ext.y, ext.width, ext.height
            except Exception:  # noqa: BLE001 - not a component: no position, still walk it
                pass
        out.append(
            {
                "pid": app_pid,
                "role": role,
                "name": name,
                "x": x,
                "y": y,
                "width": width,
                "height": height,
                "showing": bool(states.contains(Atspi.StateType.SHOWING)),
                "sensitive": bool(states.contains(Atspi.StateType.SENSITIVE)),
            }
        )
        for i in range(count):
            child = acc.get_child_at_index(i)
            if child is not None:
                walk(child, app_pid, depth + 1)

    desktop = Atspi.get_desktop(0)
    for i in range(desktop.get_child_count()):
        app = desktop.get_child_at_index(i)
        if app is None:
            continue
        try:
            app_pid = app.get_process_id()
        except Exception:  # noqa: BLE001 - an app that just quit
            continue
        if pid is None or app_pid == pid:
            walk(app, app_pid, 0)
    return out


def _main(argv: Sequence[str]) -> int:
    """``python desktop.py accessibles [--pid N]``: print the AT-SPI tree as JSON."""
    import argparse

    parser = argparse.ArgumentParser(prog="desktop.py")
    sub = parser.add_subparsers(dest="cmd", required=True)
    acc = sub.add_parser("accessibles")
    acc.add_argument("--pid", type=int)
    args = parser.parse_args(argv)
    if args.cmd == "accessibles":
        json.dump(_dump_accessibles(args.pid), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
