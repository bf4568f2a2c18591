"""`trayagent init` against the real simulator over HTTP: verify first, then write 0600."""

from __future__ import annotations

import io
import socket
import stat
from pathlib import Path

import pytest
from conftest import API_KEY

from trayagent.config import load_config
from trayagent.setup_wizard import normalize_url, run_init
from trayagent.slskd.simulator import Simulator

pytestmark = pytest.mark.integration

KEY = API_KEY  # the shared `sim` fixture (tests/conftest.py) uses this key



@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return tmp_path / "conf" / "config.toml"


def init(cfg: Path, *, env: dict[str, str] | None = None, stdin: str = "", url: str | None = None,
         interactive: bool = False, api_key_stdin: bool = False, force: bool = False,
         secret: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    prompts: list[str] = []

    def prompt_secret(prompt: str) -> str:
        prompts.append(prompt)
        if secret is None:
            raise AssertionError("no secret prompt expected")
        return secret

    code = run_init(cfg, env or {}, io.StringIO(stdin), out, url=url, interactive=interactive,
                    api_key_stdin=api_key_stdin, force=force, err=err, prompt_secret=prompt_secret)
    return code, out.getvalue(), err.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_url_flag_and_env_key_write_a_private_config(sim: Simulator, cfg: Path) -> None:
    code, out, err = init(cfg, env={"SLSKD_API_KEY": KEY}, url=sim.url)
    assert code == 0, err
    assert f"config written to {cfg}" in out
    assert "slskd 0.26.0.0" in out and "API key accepted (from SLSKD_API_KEY)" in out
    assert KEY not in out and err == ""
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    loaded = load_config(cfg, env={})
    assert loaded.slskd.url == sim.url and loaded.slskd.api_key == KEY
    # it did verify with the key before writing
    assert any(r.path == "/api/v0/session" and r.auth == "api-key" and r.status == 200 for r in sim.requests)


def test_key_from_stdin_and_url_from_env(sim: Simulator, cfg: Path) -> None:
    code, out, err = init(cfg, env={"SLSKD_URL": sim.url + "/"}, stdin=KEY + "\n", api_key_stdin=True)
    assert code == 0, err
    assert "from standard input" in out
    assert load_config(cfg, env={}).slskd.url == sim.url  # trailing slash normalised away


def test_interactive_prompts_for_url_and_hidden_key(sim: Simulator, cfg: Path) -> None:
    hostport = sim.url.removeprefix("http://")
    code, out, err = init(cfg, stdin=hostport + "\n", interactive=True, secret=KEY)
    assert code == 0, err
    assert "slskd URL [http://localhost:5030]: " in out
    assert load_config(cfg, env={}).slskd.api_key == KEY
    assert KEY not in out


def test_bad_key_is_bad_input_and_writes_nothing(sim: Simulator, cfg: Path) -> None:
    wrong = "definitely-not-the-key-42"
    code, out, err = init(cfg, env={"SLSKD_API_KEY": wrong}, url=sim.url)
    assert code == 2
    assert err.startswith("trayagent init: slskd rejected the API key (401)")
    assert err.count("\n") == 1
    assert wrong not in out + err
    assert not cfg.exists()


def test_unreachable_is_exit_1(cfg: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = init(cfg, env={"SLSKD_API_KEY": KEY}, url=url)
    assert code == 1
    assert err == f"trayagent init: cannot reach slskd at {url}: connection refused — is slskd running? " \
                  "check the URL (--url)\n"
    assert not cfg.exists()


def test_wrong_url_base_is_bad_input(sim: Simulator, cfg: Path) -> None:
    # A base slskd does not have: slskd answers with its web page (HTML), not its API.
    code, _, err = init(cfg, env={"SLSKD_API_KEY": KEY}, url=sim.url + "/slskd")
    assert code == 2 and "URL base" in err and not cfg.exists()
    with Simulator(api_key=KEY, url_base="/slskd") as based:
        code, _, err = init(cfg, env={"SLSKD_API_KEY": KEY}, url=based.url + "/api/v0/")
        assert code == 0, err
        assert load_config(cfg, env={}).slskd.url == based.url


def test_invalid_url_is_bad_input(cfg: Path) -> None:
    code, _, err = init(cfg, env={"SLSKD_API_KEY": KEY}, url="ftp://example")
    assert code == 2 and "not an http(s) URL" in err and "(--url)" in err
    code, _, err = init(cfg, env={"SLSKD_API_KEY": KEY}, url="http://user:pw@127.0.0.1:5030")
    assert code == 2 and "user name or password" in err and "pw" not in err


def test_existing_config_needs_force_and_force_keeps_other_settings(sim: Simulator, cfg: Path) -> None:
    cfg.parent.mkdir()
    cfg.write_text('[slskd]\nurl = "http://127.0.0.1:9"\napi_key = "old-key-0000000000000"\n'
                   "[poll]\nidle_interval = 42.0\nmax_backoff = 60.0\n")
    before = cfg.read_text()
    code, _, err = init(cfg, env={"SLSKD_API_KEY": KEY}, url=sim.url)
    assert code == 2 and "--force" in err
    assert cfg.read_text() == before

    code, out, err = init(cfg, env={"SLSKD_API_KEY": KEY}, url=sim.url, force=True)
    assert code == 0, err
    loaded = load_config(cfg, env={})
    assert loaded.slskd.url == sim.url and loaded.slskd.api_key == KEY
    assert loaded.poll.idle_interval == 42.0
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600


def test_no_key_non_interactive_is_bad_input(sim: Simulator, cfg: Path) -> None:
    code, _, err = init(cfg, url=sim.url)
    assert code == 2 and "SLSKD_API_KEY" in err and "--api-key-stdin" in err
    assert not cfg.exists()


def test_empty_stdin_key_is_bad_input(sim: Simulator, cfg: Path) -> None:
    code, _, err = init(cfg, url=sim.url, stdin="\n", api_key_stdin=True)
    assert code == 2 and "standard input" in err


def test_key_with_spaces_is_rejected_before_any_request(sim: Simulator, cfg: Path) -> None:
    code, _, err = init(cfg, url=sim.url, stdin="two words\n", api_key_stdin=True)
    assert code == 2 and "spaces" in err
    assert sim.requests == []


def test_auth_disabled_needs_no_key(cfg: Path) -> None:
    with Simulator(api_key=None) as open_sim:
        code, out, err = init(cfg, url=open_sim.url)
        assert code == 0, err
        assert "authentication disabled" in out
        assert load_config(cfg, env={}).slskd.api_key == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost:5030", "http://localhost:5030"),
        ("http://127.0.0.1:5030/", "http://127.0.0.1:5030"),
        ("HTTPS://host/slskd/api/v0", "https://host/slskd"),
        ("  http://[::1]:5030  ", "http://[::1]:5030"),
    ],
)
def test_normalize_url(text: str, expected: str) -> None:
    assert normalize_url(text) == expected


@pytest.mark.parametrize("text", ["", "http://", "http://host:99999", "http://h/?q=1", "mailto:x@y"])
def test_normalize_url_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        normalize_url(text)


def test_cli_has_no_api_key_argument_and_reads_stdin(sim: Simulator, cfg: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from trayagent.cli import build_parser, main

    init_parser = build_parser()._subparsers._group_actions[0].choices["init"]  # type: ignore[union-attr]
    options = {o for a in init_parser._actions for o in a.option_strings}
    assert "--api-key-stdin" in options
    assert not any(o.startswith("--api-key") and o != "--api-key-stdin" for o in options)

    monkeypatch.delenv("SLSKD_API_KEY", raising=False)
    monkeypatch.delenv("SLSKD_URL", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY + "\n"))
    code = main(["init", "--config", str(cfg), "--url", sim.url, "--api-key-stdin"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert KEY not in captured.out + captured.err
    assert load_config(cfg, env={}).slskd.api_key == KEY
