"""Logging: handlers, levels, private rotating file, idempotence and secret redaction."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from trayagent import logs, paths
from trayagent.logs import (
    RedactingFilter,
    clear_secrets,
    redact,
    register_secret,
    remove_handlers,
    setup_logging,
)

app = logging.getLogger("trayagent.test")


@pytest.fixture(autouse=True)
def _restore_logging() -> None:
    root = logging.getLogger()
    saved = (root.level, logging.getLogger("trayagent").level, logging.getLogger("urllib3").level,
             logging.getLogger("apscheduler").level)
    clear_secrets()
    yield
    remove_handlers()
    clear_secrets()
    logging.captureWarnings(False)
    root.setLevel(saved[0])
    logging.getLogger("trayagent").setLevel(saved[1])
    logging.getLogger("urllib3").setLevel(saved[2])
    logging.getLogger("apscheduler").setLevel(saved[3])


def ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_trayagent_handler", False)]


def file_handler() -> logging.handlers.RotatingFileHandler:
    (handler,) = [h for h in ours() if isinstance(h, logging.handlers.RotatingFileHandler)]
    return handler


def flush() -> None:
    for h in ours():
        h.flush()


def test_returns_path_and_installs_rotating_file(tmp_path: Path) -> None:
    path = setup_logging(log_dir=tmp_path / "logs", stream=io.StringIO())
    assert path == tmp_path / "logs" / "trayagent.log"
    handler = file_handler()
    assert handler.maxBytes == 1_000_000 and handler.backupCount == 3
    assert Path(handler.baseFilename) == path
    assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in ours())


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_file_0600_and_new_dir_0700_even_with_loose_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = setup_logging(log_dir=tmp_path / "a" / "logs", stream=io.StringIO())
        assert path is not None
        app.warning("hello")
        flush()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        # rotation creates the new file 0600 too
        file_handler().doRollover()
        app.warning("after rollover")
        flush()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert (path.parent / "trayagent.log.1").exists()
    finally:
        os.umask(old)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_existing_loose_file_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "trayagent.log"
    path.write_text("old\n")
    os.chmod(path, 0o644)
    setup_logging(log_dir=tmp_path, stream=io.StringIO())
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text().startswith("old\n")  # appended, not truncated


def test_rotation_happens_at_size(tmp_path: Path) -> None:
    path = setup_logging(log_dir=tmp_path, stream=io.StringIO())
    assert path is not None
    chunk = "x" * 10_000
    for _ in range(250):  # ~2.5 MB
        app.info(chunk)
    flush()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["trayagent.log", "trayagent.log.1", "trayagent.log.2"]
    assert all(p.stat().st_size <= 1_000_000 + 20_000 for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    ("verbosity", "stderr_level", "file_level"),
    [(0, logging.WARNING, logging.INFO), (1, logging.INFO, logging.DEBUG), (2, logging.DEBUG, logging.DEBUG),
     (-1, logging.ERROR, logging.INFO)],
)
def test_levels(tmp_path: Path, verbosity: int, stderr_level: int, file_level: int) -> None:
    stream = io.StringIO()
    setup_logging(verbosity=verbosity, log_dir=tmp_path, stream=stream)
    (console,) = [h for h in ours() if not isinstance(h, logging.handlers.RotatingFileHandler)]
    assert console.level == stderr_level
    assert file_handler().level == file_level
    assert logging.getLogger("trayagent").getEffectiveLevel() == min(stderr_level, file_level)


def test_what_reaches_stderr_and_file(tmp_path: Path) -> None:
    stream = io.StringIO()
    path = setup_logging(verbosity=0, log_dir=tmp_path, stream=stream)
    assert path is not None
    app.debug("dbg-line")
    app.info("info-line")
    app.warning("warn-line")
    flush()
    err = stream.getvalue()
    text = path.read_text()
    assert "warn-line" in err and "info-line" not in err and "dbg-line" not in err
    assert "warn-line" in text and "info-line" in text and "dbg-line" not in text


def test_verbose_puts_debug_in_file_and_info_on_stderr(tmp_path: Path) -> None:
    stream = io.StringIO()
    path = setup_logging(verbosity=1, log_dir=tmp_path, stream=stream)
    assert path is not None
    app.debug("dbg-line")
    app.info("info-line")
    flush()
    assert "info-line" in stream.getvalue() and "dbg-line" not in stream.getvalue()
    assert "dbg-line" in path.read_text()


def test_noisy_libraries_quiet_unless_vv(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging(verbosity=1, log_dir=tmp_path, stream=stream)
    assert logging.getLogger("urllib3").level == logging.WARNING
    assert logging.getLogger("apscheduler").level == logging.WARNING
    logging.getLogger("urllib3.connectionpool").info("Starting new HTTP connection")
    flush()
    assert "Starting new HTTP connection" not in stream.getvalue()
    setup_logging(verbosity=2, log_dir=tmp_path, stream=stream)
    assert logging.getLogger("urllib3").level == logging.DEBUG
    logging.getLogger("urllib3.connectionpool").debug("Starting new HTTP connection")
    flush()
    assert "Starting new HTTP connection" in stream.getvalue()


def test_idempotent(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging(log_dir=tmp_path, stream=stream)
    setup_logging(log_dir=tmp_path, stream=stream)
    setup_logging(verbosity=2, log_dir=tmp_path, stream=stream)
    assert len(ours()) == 2
    app.warning("once")
    flush()
    assert stream.getvalue().count("once") == 1
    assert (tmp_path / "trayagent.log").read_text().count("once") == 1


def test_unwritable_log_dir_falls_back_to_stderr(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    stream = io.StringIO()
    assert setup_logging(log_dir=blocker / "logs", stream=stream) is None
    assert "cannot write the log file" in stream.getvalue()
    assert len(ours()) == 1


def test_json_mode(tmp_path: Path) -> None:
    stream = io.StringIO()
    register_secret("json-secret-value")
    setup_logging(log_dir=tmp_path, stream=stream, json_mode=True)
    app.error("bad %s", "json-secret-value")
    line = stream.getvalue().strip().splitlines()[-1]
    obj = json.loads(line)
    assert obj["level"] == "error" and obj["logger"] == "trayagent.test" and obj["message"] == "bad ***"
    assert obj["at"].endswith("Z")


# ----------------------------------------------------------------------------- redaction


def test_registered_secrets_redacted_everywhere(tmp_path: Path) -> None:
    stream = io.StringIO()
    path = setup_logging(verbosity=1, log_dir=tmp_path, stream=stream)
    assert path is not None
    register_secret("my-api-key-1234567890")
    register_secret("hunter2-password")
    app.warning("key=%s pw=%s", "my-api-key-1234567890", "hunter2-password")
    try:
        raise RuntimeError("failed with my-api-key-1234567890")
    except RuntimeError:
        app.exception("boom")
    logging.getLogger("urllib3").warning("header hunter2-password")  # third-party loggers too
    flush()
    for text in (stream.getvalue(), path.read_text()):
        assert "my-api-key-1234567890" not in text and "hunter2-password" not in text
        assert "key=*** pw=***" in text
        assert "RuntimeError: failed with ***" in text
        assert "header ***" in text


def test_secret_registered_after_setup_is_still_redacted(tmp_path: Path) -> None:
    stream = io.StringIO()
    setup_logging(log_dir=tmp_path, stream=stream)
    app.warning("before late-token-abcdef")
    register_secret("late-token-abcdef")
    app.warning("after late-token-abcdef")
    assert "before late-token-abcdef" in stream.getvalue()
    assert "after ***" in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("X-API-Key: abc123def", "X-API-Key: ***"),
        ("x-api-key=abc123def; other", "x-api-key=***; other"),
        ("{'X-API-Key': 'abc123def', 'Accept': '*/*'}", "{'X-API-Key': '***', 'Accept': '*/*'}"),
        ("Authorization: Bearer eyJhbGci.eyJzdWIi.sig-_x=", "Authorization: Bearer ***"),
        ("{'Authorization': 'Bearer eyJ.abc.def123'}", "{'Authorization': 'Bearer ***'}"),
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic ***"),
        ('{"username": "me", "password": "p\\"w"}', '{"username": "me", "password": "***"}'),
        ('{"token": "eyJ.x.y", "tokenType": "Bearer"}', '{"token": "***", "tokenType": "Bearer"}'),
        ("nothing secret here", "nothing secret here"),
        ("basic setup done; Bearer token missing", "basic setup done; Bearer token missing"),
    ],
)
def test_header_patterns_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_longest_secret_wins_and_short_values_ignored() -> None:
    register_secret("abcd")
    register_secret("abcdefgh")
    register_secret("ab")  # too short to redact safely
    register_secret("")
    register_secret(None)
    assert redact("abcdefgh abcd ab") == "*** *** ab"


def test_filter_handles_bad_format_args() -> None:
    record = logging.LogRecord("trayagent.x", logging.WARNING, __file__, 1, "%d items secret-abcdef", ("x",), None)
    register_secret("secret-abcdef")
    assert RedactingFilter().filter(record) is True
    assert "secret-abcdef" not in record.getMessage()


def test_default_log_dir_uses_platformdirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("XDG layout")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert paths.log_dir() == tmp_path / "trayagent" / "log"
    path = setup_logging(stream=io.StringIO())
    assert path == tmp_path / "trayagent" / "log" / "trayagent.log"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_log_file_is_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Created 0600 by os.open itself, not chmod-ed afterwards."""
    modes: list[int] = []
    real_open = os.open

    def spy(path: object, flags: int, mode: int = 0o777, *args: object, **kwargs: object) -> int:
        if str(path).endswith("trayagent.log"):
            modes.append(mode)
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(logs.os, "open", spy)
    setup_logging(log_dir=tmp_path, stream=io.StringIO())
    assert modes == [0o600]


def test_a_key_shorter_than_slskd_allows_is_redacted_only_as_a_whole_word() -> None:
    register_secret("lskd")  # slskd keys have 16+ characters; this one cannot be real
    assert redact("slskd at http://h answered; key lskd, X lskd.") == "slskd at http://h answered; key ***, X ***."
    register_secret("k")  # far too short to hide anywhere
    assert redact("slskd ok k") == "slskd ok k"
    register_secret("0123456789abcdef0123")  # a real key length: hidden even inside other text
    assert redact("url?x=pre0123456789abcdef0123post") == "url?x=pre***post"


def test_the_client_scrubs_its_errors_with_the_same_floor(sim: Any) -> None:
    from trayagent.config import SlskdConfig
    from trayagent.slskd.client import SlskdClient
    from trayagent.slskd.errors import SlskdUnauthorized

    assert logs.scrub("slskd said lskd", ["lskd", None, ""]) == "slskd said ***"
    with SlskdClient(SlskdConfig(url=sim.url, api_key="lskd")) as client:
        with pytest.raises(SlskdUnauthorized) as err:
            client.list_downloads()
    assert str(err.value).startswith("slskd rejected our credentials (401)")
    assert "[slskd] api_key" in str(err.value) and "s***" not in str(err.value)
