"""The config schema engine: key lists, defaults, limits, checks and TOML all come from the dataclasses."""

from __future__ import annotations

import dataclasses
import os
import stat
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import tomli_w

from trayagent.config import Config, SlskdConfig, load_config, save_config
from trayagent.config_schema import (
    Fail,
    Origin,
    env_overrides,
    masked_repr,
    one_of,
    read_sections,
    secret_keys,
    section_fields,
    section_keys,
    sections_to_toml,
    setting,
    some_of,
)
from trayagent.core.tracker import Rules, Tracker
from trayagent.errors import EXIT_USAGE, ConfigError, one_line
from trayagent.logs import clear_secrets
from trayagent.paths import write_private_file


@pytest.fixture(autouse=True)
def _forget_secrets() -> None:
    clear_secrets()
    yield
    clear_secrets()


# ----------------------------------------------------------------------------- a toy schema


def _even(value: int, origin: Origin) -> int:
    if value % 2:
        raise origin.fail(f"must be even (got {value})")
    return value


@dataclass(slots=True)
class Engine:
    """A section written only as a dataclass: nothing else in the engine names its keys."""

    name: str = setting("v8", env="CAR_ENGINE")
    cylinders: int = setting(8, minimum=2, maximum=16, check=_even)
    litres: float = setting(4.0, maximum=10)
    turbo: bool = False
    fuels: tuple[str, ...] = setting(("petrol",), check=some_of(("petrol", "diesel")))
    gearbox: str = setting("manual", check=one_of(("manual", "auto")))
    code: str = setting("", secret=True, omit_empty=True)

    __repr__ = masked_repr

    def check_section(self, fail: Fail) -> None:
        if self.turbo and self.litres > 5:
            raise fail("turbo", "is only fitted to engines up to 5 litres")


@dataclass(slots=True)
class Car:
    engine: Engine = field(default_factory=Engine)
    rules: Rules = field(default_factory=Rules)
    note: str = ""  # not a section: never read from or written to TOML


def read(raw: dict[str, object], env: dict[str, str] | None = None) -> Car:
    return read_sections(Car, raw, "car.toml", env or {})


def error(raw: dict[str, object], env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        read(raw, env)
    assert info.value.exit_code == EXIT_USAGE
    return str(info.value)


def test_keys_and_sections_come_from_the_fields() -> None:
    assert section_keys(Engine) == ("name", "cylinders", "litres", "turbo", "fuels", "gearbox", "code")
    assert section_fields(Car) == {"engine": Engine, "rules": Rules}
    assert secret_keys(Engine) == frozenset({"code"})
    assert env_overrides(Car) == {"CAR_ENGINE": ("engine", "name")}
    assert env_overrides(Config) == {"SLSKD_URL": ("slskd", "url"), "SLSKD_API_KEY": ("slskd", "api_key"),
                                     "SLSKD_USERNAME": ("slskd", "username"), "SLSKD_PASSWORD": ("slskd", "password")}
    assert "valid keys: name, cylinders, litres, turbo, fuels, gearbox, code" in error({"engine": {"wheels": 4}})
    assert error({"engine": {"cylinder": 4}}).endswith("(did you mean cylinders?)")
    assert error({"note": {}}) == "car.toml: unknown section [note] (valid sections: engine, rules)"


def test_missing_keys_take_the_dataclass_defaults() -> None:
    assert read({}) == Car()
    assert read({"engine": {"litres": 2}}).engine.litres == 2.0
    assert isinstance(read({"engine": {"litres": 2}}).engine.litres, float)


def test_limits_checks_and_cross_checks_from_the_metadata() -> None:
    assert error({"engine": {"cylinders": 1}}) == "car.toml: [engine] cylinders must be a whole number >= 2 (got 1)"
    assert error({"engine": {"cylinders": 18}}).endswith("at most 16 (got 18)")
    assert error({"engine": {"cylinders": 5}}) == "car.toml: [engine] cylinders must be even (got 5)"
    assert error({"engine": {"litres": 0}}) == "car.toml: [engine] litres must be a number > 0 (got 0)"
    assert error({"engine": {"fuels": ["Petrol", "hydrogen"]}}).endswith(
        'may only contain petrol, diesel (got "hydrogen")')
    assert read({"engine": {"fuels": [" Diesel", "diesel"]}}).engine.fuels == ("diesel",)
    assert read({"engine": {"gearbox": " AUTO "}}).engine.gearbox == "auto"
    assert error({"engine": {"turbo": True, "litres": 6}}) == (
        "car.toml: [engine] turbo is only fitted to engines up to 5 litres")
    assert error({"engine": {"code": 7}}) == "car.toml: [engine] code must be a string in quotes (got a non-string value)"


def test_an_integer_too_big_for_a_float_is_an_error_not_a_crash() -> None:
    assert error({"engine": {"litres": 10**400}}).startswith("car.toml: [engine] litres must be a number > 0 and "
                                                             "at most 10 (got 1000")
    assert error({"rules": {"grace_polls": 10**400}}).startswith("car.toml: [rules] grace_polls must be a whole")


def test_a_value_from_the_environment_is_blamed_on_its_variable() -> None:
    assert error({"engine": {"gearbox": "cvt"}}, {"engine.gearbox": "CAR_GEARBOX"}) == (
        'CAR_GEARBOX must be one of manual, auto (got "cvt")')


def test_core_rules_carry_their_own_limits_into_the_config() -> None:
    """[tracking] is the tracker's Rules: its limits live in core, as plain field metadata."""
    assert read({"rules": {"grace_polls": 5}}).rules == Rules(grace_polls=5)
    assert error({"rules": {"grace_polls": 0}}) == "car.toml: [rules] grace_polls must be a whole number >= 1 (got 0)"
    assert error({"rules": {"restart_window": 1e9}}).endswith("at most 604800 (a week) (got 1000000000.0)")


def test_to_toml_walks_the_same_fields_and_round_trips() -> None:
    car = Car(engine=Engine(name="i4", cylinders=4, litres=1.6, turbo=True, fuels=("diesel", "petrol"),
                            gearbox="auto", code="s3cret"), rules=Rules(2, 5.0, 50.0), note="kept out")
    data = sections_to_toml(car)
    assert list(data) == ["engine", "rules"]
    assert data["engine"]["fuels"] == ["diesel", "petrol"]
    again = read(tomllib.loads(tomli_w.dumps(data)))
    assert again.engine == car.engine and again.rules == car.rules
    assert "code" not in sections_to_toml(Car())["engine"]  # omit_empty


def test_masked_repr_hides_secrets_but_shows_they_are_set() -> None:
    assert "code=***" in repr(Engine(code="s3cret")) and "s3cret" not in repr(Engine(code="s3cret"))
    assert "code=''" in repr(Engine())
    assert repr(SlskdConfig(url="http://h", api_key="k" * 20)).startswith("SlskdConfig(url='http://h', api_key=***,")


def test_every_key_of_every_real_section_survives_save_and_load(tmp_path: Path) -> None:
    """Each field set away from its default: a key the writer or the reader missed would show."""
    cfg = Config(slskd=SlskdConfig(url="http://127.0.0.1:5030"))
    changed = {
        float: lambda v: v + 1.5, int: lambda v: v + 1, bool: lambda v: not v, str: lambda v: v,
    }
    for name in section_fields(Config):
        section = getattr(cfg, name)
        for f in dataclasses.fields(section):
            value = getattr(section, f.name)
            if type(value) in changed and f.name not in ("url", "web_url", "quiet_hours", "backend"):
                section = dataclasses.replace(section, **{f.name: changed[type(value)](value)})
        setattr(cfg, name, section)
    cfg.slskd.password, cfg.slskd.username = "pa55word!", "me"
    cfg.sync.playlists, cfg.cleanup.remove = ("a.m3u",), ("failed",)
    loaded = load_config(save_config(cfg, tmp_path / "config.toml"), env={})
    for name in section_fields(Config):
        assert getattr(loaded, name) == getattr(cfg, name), name


def test_the_config_tracking_section_is_what_the_tracker_takes(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[slskd]\nurl = "http://127.0.0.1:5030"\n[tracking]\ngrace_polls = 7\n', encoding="utf-8")
    tracking = load_config(path, env={}).tracking
    assert type(tracking) is Rules
    assert Tracker(tracking).rules.grace_polls == 7


# ----------------------------------------------------------------------------- errors, private files


def test_one_line_folds_every_kind_of_whitespace() -> None:
    assert one_line("a\n  b\r\n\tc ") == "a b c"
    assert one_line(ValueError("x\ny")) == "x y"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_write_private_file_is_0600_in_a_0700_directory_whatever_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "new" / "secret.toml"
    old = os.umask(0)
    try:
        write_private_file(target, b"key = 1\n")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"key = 1\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700


def test_write_private_file_failing_keeps_the_old_file_and_no_temporary(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "c.toml"
    target.write_bytes(b"old")

    def boom(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_private_file(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]
