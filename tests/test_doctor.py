"""`trayagent doctor` against the real simulator over HTTP, one check per line with its fix."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest
from conftest import API_KEY

from trayagent import doctor
from trayagent.doctor import run_doctor
from trayagent.slskd.simulator import Simulator

pytestmark = pytest.mark.integration

KEY = API_KEY  # the shared `sim` fixture (tests/conftest.py) uses this key



@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # log_dir() follows XDG_STATE_HOME; keep the log check inside the test's directory.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))


def write_config(path: Path, url: str, key: str = KEY, extra: str = "") -> Path:
    path.write_text(f'[slskd]\nurl = "{url}"\napi_key = "{key}"\n{extra}')
    path.chmod(0o600)
    return path


def doctor_run(tmp_path: Path, config: Path | None, env: dict[str, str] | None = None,
               notify: bool = False) -> tuple[int, list[str], str]:
    out = io.StringIO()
    code = run_doctor(config, env or {}, out, notify=notify, home=tmp_path / "home", platform="linux")
    text = out.getvalue()
    return code, text.splitlines(), text


def line(lines: list[str], name: str) -> str:
    found = [ln for ln in lines if ln[5:].startswith(name + ":")]
    assert len(found) == 1, lines
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthy_setup(sim: Simulator, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", sim.url)
    code, lines, text = doctor_run(tmp_path, cfg)
    assert code == 0, text
    assert line(lines, "config") == f"OK   config: {cfg} (valid)"
    assert line(lines, "slskd reachable").startswith(f"OK   slskd reachable: {sim.url}")
    assert line(lines, "auth") == "OK   auth: authentication enabled, API key accepted"
    assert line(lines, "soulseek server").startswith("OK   soulseek server: connected and logged in")
    assert line(lines, "slskd version") == "OK   slskd version: 0.26.0.0"
    for name in ("tray", "notifications", "autostart", "log file"):
        line(lines, name)
    assert str(tmp_path / "state") in line(lines, "log file")
    assert KEY not in text
    assert lines[-1].startswith("all checks passed")
    # slskd was really asked, with the key
    seen = {(r.path, r.auth, r.status) for r in sim.requests}
    assert ("/health", None, 200) in seen
    assert ("/api/v0/session", "api-key", 200) in seen


def test_bad_key_fails_naming_api_key(sim: Simulator, tmp_path: Path) -> None:
    wrong = "not-the-right-key-987654321"
    cfg = write_config(tmp_path / "config.toml", sim.url, key=wrong)
    code, lines, text = doctor_run(tmp_path, cfg)
    assert code == 1
    auth = line(lines, "auth")
    assert auth.startswith("FAIL auth: slskd rejected the API key (401)")
    assert "[slskd] api_key" in auth
    assert line(lines, "soulseek server").startswith("SKIP")
    assert wrong not in text and KEY not in text
    assert lines[-1].startswith("1 problem(s) to fix")


def test_bad_key_from_environment_names_the_variable(sim: Simulator, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", sim.url)
    wrong = "env-key-that-is-wrong-000000"
    code, lines, text = doctor_run(tmp_path, cfg, env={"SLSKD_API_KEY": wrong})
    assert code == 1
    assert "overridden by SLSKD_API_KEY" in line(lines, "config")
    assert "SLSKD_API_KEY (set in the environment)" in line(lines, "auth")
    assert wrong not in text


def test_unreachable_port(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    cfg = write_config(tmp_path / "config.toml", url)
    code, lines, _ = doctor_run(tmp_path, cfg)
    assert code == 1
    reach = line(lines, "slskd reachable")
    assert reach == f"FAIL slskd reachable: connection refused at {url} — is slskd running? check [slskd] url"
    for name in ("auth", "soulseek server", "slskd version"):
        assert line(lines, name).startswith("SKIP")
    for name in ("tray", "notifications", "autostart", "log file"):  # the rest still ran
        line(lines, name)


def test_url_base_slskd_does_not_have(sim: Simulator, tmp_path: Path) -> None:
    # slskd answers an unknown path with its web page (200, HTML), /health included: the body tells.
    cfg = write_config(tmp_path / "config.toml", sim.url + "/slskd")
    code, lines, _ = doctor_run(tmp_path, cfg)
    assert code == 1
    reach = line(lines, "slskd reachable")
    assert reach.startswith("FAIL") and "URL base" in reach and "not slskd's JSON" in reach

    write_config(cfg, sim.url)
    code, lines, text = doctor_run(tmp_path, cfg)
    assert code == 0, text


def test_url_base_left_out_still_works_as_with_slskd(tmp_path: Path) -> None:
    with Simulator(api_key=KEY, url_base="/slskd") as based:  # UsePathBase serves both spellings
        cfg = write_config(tmp_path / "config.toml", based.url[: -len("/slskd")])
        code, lines, text = doctor_run(tmp_path, cfg)
        assert code == 0, text


def test_logged_out_of_soulseek_is_a_warning(sim: Simulator, tmp_path: Path) -> None:
    sim.set_logged_in(False)
    cfg = write_config(tmp_path / "config.toml", sim.url)
    code, lines, text = doctor_run(tmp_path, cfg)
    assert code == 0, text
    server = line(lines, "soulseek server")
    assert server.startswith("WARN soulseek server: not connected") or server.startswith(
        "WARN soulseek server: connected but not logged in")


def test_auth_disabled_on_localhost_is_ok(tmp_path: Path) -> None:
    with Simulator(api_key=None) as open_sim:
        cfg = write_config(tmp_path / "config.toml", open_sim.url, key="")
        code, lines, text = doctor_run(tmp_path, cfg)
        assert code == 0, text
        assert line(lines, "auth").startswith("OK   auth: slskd has authentication disabled")


def test_missing_config(tmp_path: Path) -> None:
    code, lines, _ = doctor_run(tmp_path, tmp_path / "nope.toml")
    assert code == 1
    assert line(lines, "config") == (
        f"FAIL config: no config file at {tmp_path / 'nope.toml'} — run `trayagent init` "
        "(or set SLSKD_URL and SLSKD_API_KEY)"
    )
    assert line(lines, "slskd reachable").startswith("SKIP")


def test_invalid_config_names_the_key(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", "http://127.0.0.1:5030", extra="[poll]\nidle_interval = -1\n")
    code, lines, text = doctor_run(tmp_path, cfg)
    assert code == 1
    cfg_line = line(lines, "config")
    assert cfg_line.startswith("FAIL config:") and "idle_interval" in cfg_line and "init --force" in cfg_line
    assert KEY not in text


def test_env_only_config_is_a_warning(sim: Simulator, tmp_path: Path) -> None:
    code, lines, text = doctor_run(tmp_path, tmp_path / "absent.toml",
                                   env={"SLSKD_URL": sim.url, "SLSKD_API_KEY": KEY})
    assert code == 0, text
    assert line(lines, "config").startswith("WARN config: no file at")
    assert line(lines, "auth").startswith("OK")
    assert KEY not in text


def test_world_readable_config_with_key_warns(sim: Simulator, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "config.toml", sim.url)
    cfg.chmod(0o644)
    _, lines, _ = doctor_run(tmp_path, cfg)
    assert f"chmod 600 {cfg}" in line(lines, "config permissions")


def test_a_crashing_check_is_isolated(sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trayagent.desktop import traybackend

    def boom(*args: object, **kwargs: object) -> list[object]:
        raise ImportError("the tray module is broken")

    monkeypatch.setattr(traybackend, "plan", boom)
    monkeypatch.setattr(doctor._Doctor, "check_version", lambda self: 1 / 0)
    cfg = write_config(tmp_path / "config.toml", sim.url)
    code, lines, _ = doctor_run(tmp_path, cfg, env={"DISPLAY": ":99"})
    assert code == 1
    assert line(lines, "tray").startswith("FAIL tray: check crashed (ImportError: the tray module is broken)")
    assert line(lines, "slskd version").startswith("FAIL slskd version: check crashed (ZeroDivisionError")
    for name in ("notifications", "autostart", "log file"):
        assert line(lines, name).startswith("OK")


def fake_probe(problems: dict[str, str | None]) -> object:
    return lambda name, env=None: problems.get(name, f"{name} is not here")


def test_tray_names_the_backend_in_use_and_why_not_the_others(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trayagent.desktop import traybackend

    cfg = write_config(tmp_path / "config.toml", sim.url)
    env = {"DISPLAY": ":0", "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent"}
    monkeypatch.setattr(traybackend, "probe", fake_probe({"sni": None, "gtk": None, "xorg": None}))
    _, lines, _ = doctor_run(tmp_path, cfg, env=env)
    assert line(lines, "tray") == ("OK   tray: sni in use (StatusNotifierItem over D-Bus, with its menu); "
                                   "fallback if it fails: gtk, xorg")

    monkeypatch.setattr(traybackend, "probe", fake_probe({"sni": "no StatusNotifierItem host", "gtk": "no PyGObject",
                                                          "xorg": None}))
    _, lines, _ = doctor_run(tmp_path, cfg, env=env)
    tray_line = line(lines, "tray")
    assert tray_line.startswith("WARN tray: xorg in use (XEmbed tray icon through python-xlib, no menu: a click "
                                "opens slskd); not used: sni: no StatusNotifierItem host; gtk: no PyGObject — ")
    assert "trayagent[gtk]" in tray_line

    monkeypatch.setattr(traybackend, "probe", fake_probe({"sni": "no host", "gtk": "no gi", "xorg": "no X"}))
    code, lines, _ = doctor_run(tmp_path, cfg, env=env)
    assert line(lines, "tray").startswith("FAIL tray: no tray backend works here (sni: no host; gtk: no gi; xorg: no X)")
    assert code == 1


def test_tray_honours_the_backend_setting(sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trayagent.desktop import traybackend

    monkeypatch.setattr(traybackend, "probe", fake_probe({"sni": None, "gtk": None, "xorg": None}))
    env = {"DISPLAY": ":0"}
    cfg = write_config(tmp_path / "config.toml", sim.url, extra='[tray]\nbackend = "xembed"\n')
    _, lines, _ = doctor_run(tmp_path, cfg, env=env)
    assert line(lines, "tray") == ("OK   tray: gtk in use (XEmbed tray icon through PyGObject, with its menu); "
                                   "fallback if it fails: xorg")
    cfg = write_config(tmp_path / "config.toml", sim.url, extra='[tray]\nbackend = "none"\n')
    _, lines, _ = doctor_run(tmp_path, cfg, env=env)
    assert line(lines, "tray").startswith('OK   tray: [tray] backend = "none": no tray icon')


def test_notify_sends_a_test_notification(sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import trayagent.desktop.notify_backends as backends
    from trayagent.desktop.notification import Notification, NotificationError

    sent: list[Notification] = []

    class Recorder:
        name = "recorder"
        markup = False

        def send(self, note: Notification) -> None:
            sent.append(note)

    class Broken(Recorder):
        name = "broken"

        def send(self, note: Notification) -> None:
            raise NotificationError("no daemon on the bus")

    cfg = write_config(tmp_path / "config.toml", sim.url)
    monkeypatch.setattr(backends, "choose_backend", lambda *a, **k: Recorder())
    code, lines, _ = doctor_run(tmp_path, cfg, notify=False)
    assert sent == [] and "doctor --notify" in line(lines, "notifications")
    code, lines, _ = doctor_run(tmp_path, cfg, notify=True)
    assert code == 0 and len(sent) == 1 and sent[0].title == "trayagent test"
    assert line(lines, "notifications").startswith("OK   notifications: backend recorder: test notification sent")

    monkeypatch.setattr(backends, "choose_backend", lambda *a, **k: Broken())
    code, lines, _ = doctor_run(tmp_path, cfg, notify=True)
    assert code == 1
    assert "no daemon on the bus" in line(lines, "notifications")

    monkeypatch.setattr(backends, "choose_backend", lambda *a, **k: backends.MissingBackend("install notify-send"))
    code, lines, _ = doctor_run(tmp_path, cfg)
    assert line(lines, "notifications") == "WARN notifications: install notify-send"


def test_autostart_state_is_reported(sim: Simulator, tmp_path: Path) -> None:
    from trayagent.desktop import autostart

    cfg = write_config(tmp_path / "config.toml", sim.url)
    home = tmp_path / "home"
    exe = tmp_path / "gone" / "trayagent"
    exe.parent.mkdir()
    exe.write_text("")
    autostart.enable("linux", home, exe, args=autostart.run_args(cfg), env={})
    exe.unlink()
    code, lines, text = doctor_run(tmp_path, cfg)
    auto = line(lines, "autostart")
    assert auto.startswith("WARN autostart: entry points to a missing executable")
    assert "trayagent autostart enable" in auto
    assert code == 0, text

    autostart.enable("linux", home, args=autostart.run_args(cfg), env={})
    _, lines, _ = doctor_run(tmp_path, cfg)
    assert line(lines, "autostart").startswith("OK   autostart: enabled (")


def test_cli_doctor_wiring(sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trayagent.cli import main

    cfg = write_config(tmp_path / "config.toml", sim.url)
    code = main(["doctor", "--config", str(cfg)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"OK   config: {cfg} (valid)" in out


@pytest.mark.parametrize("where", ["file", "env"])
def test_a_key_too_short_for_slskd_is_named_as_such(sim: Simulator, tmp_path: Path, where: str) -> None:
    short = "lskd"  # slskd accepts keys of 16 to 255 characters: it cannot have this one
    if where == "file":
        cfg = write_config(tmp_path / "config.toml", sim.url, key=short)
        code, lines, text = doctor_run(tmp_path, cfg)
    else:
        cfg = write_config(tmp_path / "config.toml", sim.url)
        code, lines, text = doctor_run(tmp_path, cfg, env={"SLSKD_API_KEY": short})
    assert code == 1
    config = line(lines, "config")
    assert config.startswith("FAIL config:") and "too short for slskd (4 characters" in config, config
    assert "16 to 255" in config and "s***" not in text


def test_state_database_is_checked_and_a_damaged_one_named_with_its_fix(
        sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trayagent.config import load_config
    from trayagent.store import Store

    monkeypatch.setenv("TRAYAGENT_STATE_DIR", str(tmp_path / "st"))
    cfg = write_config(tmp_path / "config.toml", sim.url)
    path = load_config(cfg).state_path
    _, lines, _ = doctor_run(tmp_path, cfg)
    assert line(lines, "state database") == f"OK   state database: {path} (created on the first `trayagent run`)"
    Store(path).close()
    code, lines, _ = doctor_run(tmp_path, cfg)
    assert code == 0 and line(lines, "state database") == f"OK   state database: {path}"
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    code, lines, _ = doctor_run(tmp_path, cfg)
    assert code == 1
    found = line(lines, "state database")
    assert found.startswith(f"FAIL state database: cannot open the state database {path}: it is damaged"), found
    assert "move it aside" in found
