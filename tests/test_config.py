"""Config: defaults, round trips, env overrides, one-line errors and private, atomic saves."""

from __future__ import annotations

import os
import stat
import sys
import tomllib
from datetime import datetime, time
from pathlib import Path

import pytest

from trayagent import config as config_mod
from trayagent.config import (
    CleanupConfig,
    Config,
    NotificationsConfig,
    PollConfig,
    SlskdConfig,
    SyncConfig,
    load_config,
    save_config,
)
from trayagent.core.tracker import Rules
from trayagent.errors import ConfigError
from trayagent.paths import default_config_path, log_dir, state_dir
from trayagent.logs import clear_secrets, redact

NO_ENV: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _forget_secrets() -> None:
    clear_secrets()
    yield
    clear_secrets()


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    return load_config(write(tmp_path, text), env=env if env is not None else NO_ENV)


def error_for(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text, env)
    message = str(info.value)
    assert "\n" not in message, message
    return message


MINIMAL = '[slskd]\nurl = "http://127.0.0.1:5030"\n'


# ----------------------------------------------------------------------------- defaults


def test_minimal_file_gives_documented_defaults(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL)
    assert cfg.slskd == SlskdConfig(url="http://127.0.0.1:5030")
    assert cfg.slskd.verify_tls is True and cfg.slskd.timeout == 10.0
    assert cfg.slskd.ui_url == "http://127.0.0.1:5030"
    assert cfg.slskd.download_path is None
    assert cfg.poll == PollConfig(1.0, 10.0, 60.0)
    assert cfg.tracking == Rules(3, 60.0, 300.0)
    assert cfg.cleanup == CleanupConfig(True, 300.0, ("succeeded", "cancelled"), 0.0)
    assert cfg.notifications == NotificationsConfig(True, True, True, False, True, 3.0, 6, "")
    assert cfg.sync == SyncConfig((), "", 6.0, 5, 30.0, ("flac", "mp3"), 192)
    assert cfg.path == tmp_path / "config.toml"
    assert cfg.env_overrides == frozenset()


def test_all_sections_parsed_with_ints_for_floats_and_fractions(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        """
[slskd]
url = "https://host.example:5031/slskd/"
api_key = "0123456789abcdef"
verify_tls = false
timeout = 2
web_url = "http://ui.example/"
download_dir = "~/Downloads/slskd"

[poll]
active_interval = 0.25
idle_interval = 5
max_backoff = 30

[tracking]
grace_polls = 2
failure_settle = 0.5
restart_window = 120

[cleanup]
enabled = false
interval = 60
remove = ["Failed", "succeeded", "failed"]
min_age = 1.5

[notifications]
enabled = true
on_completed = false
on_failed = true
on_cancelled = true
on_connection = false
batch_window = 0
max_per_minute = 1
quiet_hours = "22:00 - 07:30"

[sync]
playlists = ["/music/a.m3u", "b.m3u8"]
music_dir = "/music"
searches_per_minute = 0.5
max_attempts = 2
queue_timeout = 12.5
preferred_formats = [".FLAC", "ogg"]
min_bitrate = 0
max_in_progress = 4
stall_timeout = 2.5
long_queue = 50
search_timeout = 4.5
""",
    )
    assert cfg.slskd.timeout == 2.0 and isinstance(cfg.slskd.timeout, float)
    assert cfg.slskd.base_url == "https://host.example:5031/slskd"
    assert cfg.slskd.ui_url == "http://ui.example/"
    assert cfg.slskd.download_path == Path("~/Downloads/slskd").expanduser()
    assert cfg.poll == PollConfig(0.25, 5.0, 30.0)
    assert cfg.tracking == Rules(2, 0.5, 120.0)
    assert cfg.cleanup == CleanupConfig(False, 60.0, ("failed", "succeeded"), 1.5)
    assert cfg.notifications.quiet_range == (time(22, 0), time(7, 30))
    assert cfg.notifications.on_cancelled is True and cfg.notifications.on_completed is False
    assert cfg.notifications.max_per_minute == 1
    assert cfg.sync == SyncConfig(("/music/a.m3u", "b.m3u8"), "/music", 0.5, 2, 12.5, ("flac", "ogg"), 0, 4, 2.5, 50, 4.5)


def test_quiet_hours_cross_midnight() -> None:
    n = NotificationsConfig(quiet_hours="22:00-07:00")
    assert n.is_quiet(datetime(2026, 1, 1, 23, 30))
    assert n.is_quiet(datetime(2026, 1, 1, 6, 59))
    assert not n.is_quiet(datetime(2026, 1, 1, 7, 0))
    assert not n.is_quiet(datetime(2026, 1, 1, 12, 0))
    day = NotificationsConfig(quiet_hours="09:00-17:00")
    assert day.is_quiet(datetime(2026, 1, 1, 9, 0)) and not day.is_quiet(datetime(2026, 1, 1, 17, 0))
    assert not NotificationsConfig().is_quiet(datetime(2026, 1, 1, 3, 0))


# ----------------------------------------------------------------------------- round trip


def full_config() -> Config:
    return Config(
        slskd=SlskdConfig(
            url="http://127.0.0.1:5030/slskd", username="me", password="pa55word!", verify_tls=False,
            timeout=3.5, web_url="http://127.0.0.1:5030/slskd/ui", download_dir="/data/dl",
        ),
        poll=PollConfig(0.5, 7.0, 45.0),
        tracking=Rules(4, 10.0, 30.0),
        cleanup=CleanupConfig(False, 99.0, ("cancelled", "failed"), 2.0),
        notifications=NotificationsConfig(False, False, False, True, False, 1.25, 3, "23:00-06:00"),
        sync=SyncConfig(("p1.m3u", "dir/p2.m3u"), "/m", 2.0, 9, 45.0, ("opus",), 256),
    )


def test_save_then_load_round_trips_every_section(tmp_path: Path) -> None:
    cfg = full_config()
    path = save_config(cfg, tmp_path / "config.toml")
    loaded = load_config(path, env=NO_ENV)
    assert loaded == cfg
    for section in ("slskd", "poll", "tracking", "cleanup", "notifications", "sync"):
        assert getattr(loaded, section) == getattr(cfg, section), section
    assert loaded.to_toml_dict() == cfg.to_toml_dict()


def test_defaults_round_trip_and_to_toml_dict_is_valid_toml(tmp_path: Path) -> None:
    cfg = Config(slskd=SlskdConfig(url="http://127.0.0.1:5030"))
    path = save_config(cfg, tmp_path / "c.toml")
    text = path.read_text()
    assert tomllib.loads(text)["poll"]["active_interval"] == 1.0
    assert "api_key" not in text and "password" not in text  # empty credentials are omitted
    assert load_config(path, env=NO_ENV) == cfg


def test_save_uses_config_path_when_no_path_given(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL)
    cfg.poll.idle_interval = 20.0
    assert save_config(cfg) == tmp_path / "config.toml"
    assert load_config(tmp_path / "config.toml", env=NO_ENV).poll.idle_interval == 20.0


# ----------------------------------------------------------------------------- env


def test_env_overrides_file_values(tmp_path: Path) -> None:
    env = {
        "SLSKD_URL": "http://127.0.0.1:6000",
        "SLSKD_API_KEY": "env-key-0123456789",
        "SLSKD_USERNAME": "envuser",
        "SLSKD_PASSWORD": "envpass",
    }
    cfg = load_text(tmp_path, MINIMAL + 'api_key = "file-key-0123456789"\n', env)
    assert cfg.slskd.url == "http://127.0.0.1:6000"
    assert cfg.slskd.api_key == "env-key-0123456789"
    assert (cfg.slskd.username, cfg.slskd.password) == ("envuser", "envpass")
    assert cfg.env_overrides == {"slskd.url", "slskd.api_key", "slskd.username", "slskd.password"}


def test_empty_env_values_count_as_unset(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL, {"SLSKD_URL": "", "SLSKD_API_KEY": ""})
    assert cfg.slskd.url == "http://127.0.0.1:5030" and cfg.slskd.api_key == ""
    assert cfg.env_overrides == frozenset()


def test_missing_file_is_fine_when_env_gives_url(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "nope.toml", env={"SLSKD_URL": "http://127.0.0.1:5030"})
    assert cfg.slskd.url == "http://127.0.0.1:5030"
    assert cfg.path is None


def test_missing_file_and_no_env_names_both_fixes(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env=NO_ENV)
    assert str(info.value) == f"no slskd URL: set [slskd] url in {path} or SLSKD_URL"


def test_bad_env_url_names_the_env_var(tmp_path: Path) -> None:
    msg = error_for(tmp_path, MINIMAL, {"SLSKD_URL": "ftp://127.0.0.1"})
    assert msg.startswith("SLSKD_URL is not an http(s) URL"), msg


def test_env_secrets_are_not_persisted(tmp_path: Path) -> None:
    env = {"SLSKD_API_KEY": "env-key-0123456789", "SLSKD_PASSWORD": "env-password"}
    cfg = load_text(tmp_path, MINIMAL + 'username = "u"\n', env)
    out = save_config(cfg, tmp_path / "saved.toml")
    text = out.read_text()
    assert "env-key-0123456789" not in text and "env-password" not in text
    data = tomllib.loads(text)
    assert "api_key" not in data["slskd"] and "password" not in data["slskd"]
    assert data["slskd"]["username"] == "u"
    # and the saved file plus the same environment gives back the same config
    assert load_config(out, env=env) == cfg


def test_env_override_keeps_the_files_own_secret_on_save(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + 'api_key = "file-key-0123456789"\n')
    cfg = load_config(path, env={"SLSKD_API_KEY": "env-key-0123456789"})
    save_config(cfg)
    assert tomllib.loads(path.read_text())["slskd"]["api_key"] == "file-key-0123456789"


def test_secret_changed_in_code_after_env_load_is_persisted(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL, {"SLSKD_API_KEY": "env-key-0123456789"})
    cfg.slskd.api_key = "typed-in-0123456789"
    save_config(cfg)
    assert tomllib.loads((tmp_path / "config.toml").read_text())["slskd"]["api_key"] == "typed-in-0123456789"


def test_secrets_are_registered_for_log_redaction(tmp_path: Path) -> None:
    load_text(tmp_path, MINIMAL + 'api_key = "file-key-0123456789"\n', {"SLSKD_PASSWORD": "pw-from-env", "SLSKD_USERNAME": "u"})
    assert redact("key file-key-0123456789 pw pw-from-env") == "key *** pw ***"


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('[poll]\nactive_interval = "fast"', '[poll] active_interval must be a number > 0 (got "fast")'),
        ("[poll]\nactive_interval = 0", "[poll] active_interval must be a number > 0 (got 0)"),
        ("[poll]\nidle_interval = -1.5", "[poll] idle_interval must be a number > 0 (got -1.5)"),
        ("[poll]\nmax_backoff = true", "[poll] max_backoff must be a number > 0 (got true)"),
        ("[poll]\nactive_interval = inf", "[poll] active_interval must be a number > 0 (got inf)"),
        ("[poll]\nactive_interval = nan", "[poll] active_interval must be a number > 0 (got nan)"),
        ("[poll]\nidle_interval = 90", "[poll] max_backoff must be >= active_interval and idle_interval (got 60 < 90)"),
        ("[poll]\nmax_peers = -1", "[poll] max_peers must be a whole number >= 0 (got -1)"),
        ("[poll]\nmax_peers = 2.5", "[poll] max_peers must be a whole number >= 0 (got 2.5)"),
        ("[poll]\nmax_peers = 101", "[poll] max_peers must be a whole number >= 0 and at most 100 (got 101)"),
        ("[tracking]\ngrace_polls = 0", "[tracking] grace_polls must be a whole number >= 1 (got 0)"),
        ("[tracking]\ngrace_polls = 2.5", "[tracking] grace_polls must be a whole number >= 1 (got 2.5)"),
        ("[tracking]\nfailure_settle = -1", "[tracking] failure_settle must be a number >= 0 (got -1)"),
        ("[cleanup]\nenabled = \"yes\"", '[cleanup] enabled must be true or false (got "yes")'),
        ('[cleanup]\nremove = ["done"]', '[cleanup] remove may only contain succeeded, cancelled, failed (got "done")'),
        ('[cleanup]\nremove = "failed"', '[cleanup] remove must be a list of non-empty strings'),
        ("[cleanup]\ninterval = 0", "[cleanup] interval must be a number > 0 (got 0)"),
        ("[notifications]\nmax_per_minute = 0", "[notifications] max_per_minute must be a whole number >= 1 (got 0)"),
        ('[notifications]\nquiet_hours = "late"', '[notifications] quiet_hours must look like "22:00-07:00"'),
        ('[notifications]\nquiet_hours = "25:00-07:00"', "[notifications] quiet_hours has an hour above 23"),
        ('[notifications]\nquiet_hours = "07:00-07:00"', "[notifications] quiet_hours has the same start and end"),
        ("[sync]\nmax_attempts = 0", "[sync] max_attempts must be a whole number >= 1 (got 0)"),
        ("[sync]\nmin_bitrate = 192.5", "[sync] min_bitrate must be a whole number >= 0 (got 192.5)"),
        ("[sync]\nplaylists = [1, 2]", "[sync] playlists must be a list of non-empty strings"),
        ("[sync]\nqueue_timeout = 0", "[sync] queue_timeout must be a number > 0 (got 0)"),
        ("[sync]\nmusic_dir = 5", "[sync] music_dir must be a string in quotes (got 5)"),
        ("[sync]\nmax_in_progress = 0", "[sync] max_in_progress must be a whole number >= 1 (got 0)"),
        ("[sync]\nstall_timeout = -1", "[sync] stall_timeout must be a number > 0 (got -1)"),
        ("[sync]\nlong_queue = 2.5", "[sync] long_queue must be a whole number >= 1 (got 2.5)"),
        ("[sync]\nsearch_timeout = 0", "[sync] search_timeout must be a number > 0 (got 0)"),
    ],
)
def test_value_errors_are_one_line_and_name_the_key(tmp_path: Path, body: str, expected: str) -> None:
    msg = error_for(tmp_path, MINIMAL + body + "\n")
    assert msg.startswith(f"{tmp_path / 'config.toml'}: "), msg
    assert expected in msg, msg


def test_spec_example_message_exactly(tmp_path: Path) -> None:
    msg = error_for(tmp_path, MINIMAL + '[poll]\nactive_interval = "fast"\n')
    assert msg.endswith('config.toml: [poll] active_interval must be a number > 0 (got "fast")')


def test_unknown_key_suggests_close_names(tmp_path: Path) -> None:
    msg = error_for(tmp_path, MINIMAL + "[poll]\nintervall = 3\n")
    assert "unknown key [poll] intervall (did you mean " in msg
    assert "idle_interval" in msg and "active_interval" in msg


def test_unknown_key_without_close_match_lists_valid_keys(tmp_path: Path) -> None:
    msg = error_for(tmp_path, MINIMAL + "[tracking]\nzzz = 3\n")
    assert "unknown key [tracking] zzz (valid keys: grace_polls, failure_settle, restart_window)" in msg


def test_unknown_key_in_slskd_section(tmp_path: Path) -> None:
    msg = error_for(tmp_path, MINIMAL + 'apikey = "x"\n')
    assert "unknown key [slskd] apikey (did you mean api_key?)" in msg


def test_unknown_section_and_top_level_key(tmp_path: Path) -> None:
    assert "unknown section [notification] (did you mean [notifications]?)" in error_for(
        tmp_path, MINIMAL + "[notification]\nenabled = true\n"
    )
    assert "unknown top-level key url" in error_for(tmp_path, 'url = "http://x"\n' + MINIMAL)


@pytest.mark.parametrize(
    "url",
    ["127.0.0.1:5030", "ftp://127.0.0.1", "http://", "http:///path", "http://host:99999", "http://ho st", "localhost"],
)
def test_bad_urls(tmp_path: Path, url: str) -> None:
    msg = error_for(tmp_path, f'[slskd]\nurl = "{url}"\n')
    assert "[slskd] url is not an http(s) URL: " in msg and url in msg


def test_url_with_credentials_is_rejected_without_echoing_them(tmp_path: Path) -> None:
    msg = error_for(tmp_path, '[slskd]\nurl = "http://me:hunter22@127.0.0.1:5030"\n')
    assert "[slskd] url must not contain a user name or password" in msg
    assert "hunter22" not in msg


def test_url_with_query_rejected(tmp_path: Path) -> None:
    assert "[slskd] url must not have a ?query" in error_for(tmp_path, '[slskd]\nurl = "http://h:1/?a=b"\n')


def test_bad_web_url(tmp_path: Path) -> None:
    assert "[slskd] web_url is not an http(s) URL" in error_for(tmp_path, MINIMAL + 'web_url = "nope"\n')


def test_empty_or_missing_url(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    assert error_for(tmp_path, '[slskd]\nurl = "  "\n') == f"no slskd URL: set [slskd] url in {path} or SLSKD_URL"
    assert error_for(tmp_path, "[poll]\nactive_interval = 1\n") == (
        f"no slskd URL: set [slskd] url in {path} or SLSKD_URL"
    )


def test_url_wrong_type(tmp_path: Path) -> None:
    assert "[slskd] url must be a string in quotes (got 5030)" in error_for(tmp_path, "[slskd]\nurl = 5030\n")


def test_broken_toml_reports_line(tmp_path: Path) -> None:
    msg = error_for(tmp_path, '[slskd]\nurl = "http://127.0.0.1:5030"\n[poll\n')
    assert "invalid TOML" in msg and "line 3" in msg


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[slskd]\nurl = "http://\xff"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path, env=NO_ENV)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    (tmp_path / "config.toml").mkdir()
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path / "config.toml", env=NO_ENV)


def test_section_that_is_a_value(tmp_path: Path) -> None:
    assert "poll must be a section [poll]" in error_for(tmp_path, 'poll = 3\n' + MINIMAL)


def test_username_without_password_and_vice_versa(tmp_path: Path) -> None:
    assert "[slskd] username is set but [slskd] password is not" in error_for(tmp_path, MINIMAL + 'username = "u"\n')
    msg = error_for(tmp_path, MINIMAL + 'password = "secretpw"\n')
    assert "[slskd] password is set but [slskd] username is not" in msg
    assert "secretpw" not in msg


def test_secret_type_errors_do_not_echo_value(tmp_path: Path) -> None:
    msg = error_for(tmp_path, MINIMAL + "api_key = 12345678901234567\n")
    assert "[slskd] api_key must be a string" in msg and "12345678901234567" not in msg


def test_secret_with_control_chars(tmp_path: Path) -> None:
    msg = error_for(tmp_path, MINIMAL + 'api_key = "abc\\ndef0123456789"\n')
    assert "[slskd] api_key must not contain control characters" in msg
    assert "def0123456789" not in msg


def test_max_backoff_below_active(tmp_path: Path) -> None:
    msg = error_for(tmp_path, MINIMAL + "[poll]\nactive_interval = 20\nidle_interval = 5\nmax_backoff = 10\n")
    assert "[poll] max_backoff must be >= active_interval and idle_interval (got 10 < 20)" in msg


def test_idle_may_be_below_active(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, MINIMAL + "[poll]\nactive_interval = 5\nidle_interval = 2\n")
    assert (cfg.poll.active_interval, cfg.poll.idle_interval) == (5.0, 2.0)


def test_validate_catches_bad_values_set_in_code(tmp_path: Path) -> None:
    cfg = Config(slskd=SlskdConfig(url="http://127.0.0.1:5030"))
    cfg.poll.active_interval = -1
    with pytest.raises(ConfigError, match=r"\[poll\] active_interval must be a number > 0"):
        save_config(cfg, tmp_path / "c.toml")
    assert not (tmp_path / "c.toml").exists()


# ----------------------------------------------------------------------------- saving


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_saved_file_is_0600_and_new_parent_0700(tmp_path: Path) -> None:
    old = os.umask(0o000)  # even a permissive umask must not widen it
    try:
        path = save_config(full_config(), tmp_path / "new" / "dir" / "config.toml")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_temp_file_is_created_0600(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret-bearing temp file must be private from the moment it exists."""
    seen: list[tuple[str, int, int]] = []
    real_open = os.open

    def spy(path: object, flags: int, mode: int = 0o777, *args: object, **kwargs: object) -> int:
        fd = real_open(path, flags, mode, *args, **kwargs)
        if str(path).endswith(".tmp"):
            seen.append((str(path), mode, stat.S_IMODE(os.fstat(fd).st_mode)))
        return fd

    monkeypatch.setattr(config_mod.os, "open", spy)
    old = os.umask(0o000)
    try:
        save_config(full_config(), tmp_path / "config.toml")
    finally:
        os.umask(old)
    assert len(seen) == 1
    _, mode, actual = seen[0]
    assert mode == 0o600 and actual == 0o600


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_overwrite_replaces_loose_existing_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    os.chmod(path, 0o644)
    save_config(full_config(), path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_config(path, env=NO_ENV).slskd.password == "pa55word!"


def test_save_leaves_no_temp_files(tmp_path: Path) -> None:
    save_config(full_config(), tmp_path / "config.toml")
    save_config(full_config(), tmp_path / "config.toml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_failed_write_cleans_up_and_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, MINIMAL)

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(config_mod.os, "replace", boom)
    with pytest.raises(ConfigError, match="cannot write: No space left on device"):
        save_config(full_config(), path)
    assert path.read_text() == MINIMAL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


# ----------------------------------------------------------------------------- display


def test_repr_and_str_hide_secrets() -> None:
    cfg = Config(slskd=SlskdConfig(url="http://127.0.0.1:5030", api_key="KEY-0123456789abcdef", username="u",
                                   password="PW-secret-value"))
    for text in (repr(cfg), str(cfg), repr(cfg.slskd), str(cfg.slskd), f"{cfg}", f"{cfg.slskd!r}"):
        assert "KEY-0123456789abcdef" not in text and "PW-secret-value" not in text
        assert "api_key=***" in text and "password=***" in text
    assert "api_key=''" in repr(SlskdConfig(url="http://x"))


def test_redacted_masks_secrets_and_keeps_the_rest() -> None:
    cfg = full_config()
    cfg.slskd.api_key = "KEY-0123456789abcdef"
    red = cfg.redacted()
    assert red["slskd"]["api_key"] == "***" and red["slskd"]["password"] == "***"
    assert red["slskd"]["username"] == "me" and red["poll"]["idle_interval"] == 7.0
    assert "KEY-0123456789abcdef" not in repr(red)
    assert cfg.to_toml_dict()["slskd"]["api_key"] == "KEY-0123456789abcdef"  # unchanged original


# ----------------------------------------------------------------------------- locations


def test_locations(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_config_path().name == "config.toml"
    assert default_config_path().parent.name == "trayagent"
    monkeypatch.delenv("TRAYAGENT_STATE_DIR", raising=False)
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
        assert state_dir() == tmp_path / "xdg" / "trayagent"
        assert log_dir().is_relative_to(tmp_path / "xdg" / "trayagent")
    monkeypatch.setenv("TRAYAGENT_STATE_DIR", str(tmp_path / "state"))
    cfg = Config(slskd=SlskdConfig(url="http://127.0.0.1:5030"))
    assert cfg.state_path.parent == tmp_path / "state"
    assert cfg.state_path.name.startswith("slskd-") and cfg.state_path.suffix == ".sqlite3"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_world_readable_file_with_secret_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, MINIMAL + 'api_key = "file-key-0123456789"\n')
    os.chmod(path, 0o644)
    load_config(path, env=NO_ENV)
    assert "readable by others (mode 644)" in caplog.text
    caplog.clear()
    os.chmod(path, 0o600)
    load_config(path, env=NO_ENV)
    assert "readable by others" not in caplog.text


@pytest.mark.parametrize("a,b,same", [
    ("http://LocalHost:5030", "http://localhost:5030/", True),
    ("http://localhost", "http://localhost:80", True),
    ("https://localhost", "https://localhost:443//", True),
    ("http://host:5030/slskd/", "http://host:5030//slskd", True),
    ("http://host:5030", "http://host:5031", False),
    ("http://host:5030/a", "http://host:5030/b", False),
    ("http://[::1]:5030", "http://[::1]:5030/", True),
])
def test_state_is_keyed_by_the_normalised_slskd_url(a: str, b: str, same: bool, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from trayagent.paths import instance_state_path

    monkeypatch.setenv("TRAYAGENT_STATE_DIR", str(tmp_path))
    assert (instance_state_path(a) == instance_state_path(b)) is same
    assert instance_state_path(a).parent == tmp_path


def test_private_dir_is_0700_under_any_umask(tmp_path: Path) -> None:
    from trayagent.paths import make_private_dir

    old = os.umask(0)
    try:
        make_private_dir(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "b").stat().st_mode & 0o777 == 0o700


def test_max_peers_defaults_to_4_and_0_turns_per_peer_polls_off(tmp_path: Path) -> None:
    assert load_text(tmp_path, 'slskd.url = "http://h:5030"').poll.max_peers == 4
    assert load_text(tmp_path, 'slskd.url = "http://h:5030"\n[poll]\nmax_peers = 0').poll.max_peers == 0


def test_tray_backend_setting(tmp_path: Path) -> None:
    base = '[slskd]\nurl = "http://127.0.0.1:5030"\n'
    assert load_text(tmp_path, base).tray.backend == "auto"
    for value in ("auto", "sni", "xembed", "none"):
        assert load_text(tmp_path, base + f'[tray]\nbackend = "{value}"\n').tray.backend == value
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, base + '[tray]\nbackend = "kde"\n')
    assert str(err.value).endswith('[tray] backend must be one of auto, sni, xembed, none (got "kde")')
    assert "\n" not in str(err.value)


def test_an_api_key_slskd_could_not_have_is_refused(tmp_path: Path) -> None:
    msg = error_for(tmp_path, MINIMAL + 'api_key = "short-key"\n')
    assert "[slskd] api_key is too short for slskd (9 characters; slskd's keys have 16 to 255)" in msg
    assert "short-key" not in msg
    msg = error_for(tmp_path, MINIMAL + f'api_key = "{"k" * 256}"\n')
    assert "[slskd] api_key is too long for slskd (256 characters" in msg
    assert load_text(tmp_path, MINIMAL + f'api_key = "{"k" * 16}"\n').slskd.api_key == "k" * 16


def test_enqueue_timeout_is_its_own_setting(tmp_path: Path) -> None:
    assert load_text(tmp_path, MINIMAL).slskd.enqueue_timeout == 60.0
    assert load_text(tmp_path, MINIMAL + "enqueue_timeout = 90\n").slskd.enqueue_timeout == 90.0
    assert "[slskd] enqueue_timeout must be a number > 0" in error_for(tmp_path, MINIMAL + "enqueue_timeout = 0\n")
