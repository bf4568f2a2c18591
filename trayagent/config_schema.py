"""The config schema engine: settings sections read from and written to TOML by their dataclasses.

Each section of the config is a dataclass, and its fields are the whole schema: the key names,
the types, the defaults, and in ``field(metadata=...)`` (see `setting`) the limits, a check and
whether the value is secret. Reading a TOML table, listing the valid keys for a "did you mean",
and serialising back all walk those fields, so none of them can drift from the dataclass.
Every mistake becomes one ConfigError line that names the key and says what to fix.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, TypeVar, cast, get_type_hints

from trayagent.errors import ConfigError, one_line

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MASK = "***"
#: Upper bounds of the config's numbers, in seconds unless the key says otherwise.
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
WEEK, YEAR = 7 * DAY, 365 * DAY
_SPANS = ((YEAR, "a year"), (WEEK, "a week"), (DAY, "a day"), (HOUR, "an hour"))

T = TypeVar("T")
S = TypeVar("S", bound="DataclassInstance")  # a settings section: a dataclass
#: A value as TOML holds it (tuples become lists on the way out).
TomlValue = str | int | float | bool | list[str]
TomlTable = dict[str, TomlValue]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one setting came from, so a message says 'config.toml: [poll] x' or 'SLSKD_URL'."""

    source: str
    section: str
    key: str
    env_name: str | None = None

    def fail(self, problem: str) -> ConfigError:
        if self.env_name:
            return ConfigError(one_line(f"{self.env_name} {problem}"))
        return ConfigError(one_line(f"{self.source}: [{self.section}] {self.key} {problem}"))


#: A field's own check: normalise the value read, or raise origin.fail("what to fix").
Check = Callable[[T, Origin], T]
#: Fails one key of the section being checked: fail(key, problem).
Fail = Callable[[str, str], ConfigError]


class CrossChecked(Protocol):
    """A section with a rule across its keys (checked after each key passed its own)."""

    def check_section(self, fail: Fail) -> None: ...


def setting(default: T, *, minimum: float = 0.0, maximum: float | None = None, inclusive: bool = False,
            secret: bool = False, omit_empty: bool = False, check: Check[T] | None = None, env: str = "",
            help: str = "") -> T:
    """A field of a settings section with its validation in the field's metadata.

    Numbers must be finite, above `minimum` (or equal with `inclusive`, always for whole
    numbers) and at most `maximum` (a year, or 1,000,000 for whole numbers, when not given):
    a timeout of 1e10 s overflows the socket layer long after the config was accepted.
    `secret` keeps the value out of messages and repr; `omit_empty` leaves an empty value
    out of the TOML written; `check` normalises the value or fails with the reason; `env`
    names an environment variable that overrides the file.
    """
    meta = {"minimum": minimum, "maximum": maximum, "inclusive": inclusive, "secret": secret,
            "omit_empty": omit_empty, "check": check, "env": env, "help": help}
    return cast(T, field(default=default, repr=not secret, metadata=meta))


def show(value: object) -> str:
    """A short, one-line rendering of a bad value for an error message."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, (list, tuple)):
        text = json.dumps([v if isinstance(v, (str, int, float, bool)) else str(v) for v in value], ensure_ascii=False)
    else:
        text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def one_of(choices: tuple[str, ...]) -> Check[str]:
    """A check: the value, stripped and lower-cased, must be one of `choices`."""
    def check(value: str, origin: Origin) -> str:
        chosen = value.strip().lower()
        if chosen not in choices:
            raise origin.fail(f"must be one of {', '.join(choices)} (got {show(chosen)})")
        return chosen
    return check


def some_of(choices: tuple[str, ...]) -> Check[tuple[str, ...]]:
    """A check: each value, stripped and lower-cased, must be one of `choices` (repeats dropped)."""
    def check(value: tuple[str, ...], origin: Origin) -> tuple[str, ...]:
        lowered = tuple(dict.fromkeys(v.strip().lower() for v in value))
        bad = [v for v in lowered if v not in choices]
        if bad:
            raise origin.fail(f"may only contain {', '.join(choices)} (got {show(bad[0])})")
        return lowered
    return check


def _span(seconds: float) -> str:
    """' (a day)' after a bound that is a well-known duration, so the range reads plainly."""
    for value, words in _SPANS:
        if seconds == value:
            return f" ({words})"
    return ""


# --------------------------------------------------------------------------- typed readers


def _number(value: object, origin: Origin, meta: Mapping[str, object]) -> float:
    minimum, inclusive = cast(float, meta.get("minimum", 0.0)), bool(meta.get("inclusive", False))
    maximum = cast("float | None", meta.get("maximum")) or YEAR
    op = ">=" if inclusive else ">"
    # Compared as read, not as a float: TOML integers are unbounded and 10**400 has no float.
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    if not (number >= minimum if inclusive else number > minimum) or number == math.inf:  # nan fails both
        raise origin.fail(f"must be a number {op} {minimum:g} (got {show(value)})")
    if number > maximum:
        raise origin.fail(f"must be a number {op} {minimum:g} and at most {maximum:.10g}{_span(maximum)} "
                          f"(got {show(value)})")
    return float(number)


def _integer(value: object, origin: Origin, meta: Mapping[str, object]) -> int:
    minimum = int(cast(float, meta.get("minimum", 0)))
    maximum = int(cast("float | None", meta.get("maximum")) or 1_000_000)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise origin.fail(f"must be a whole number >= {minimum} (got {show(value)})")
    if value > maximum:
        raise origin.fail(f"must be a whole number >= {minimum} and at most {maximum} (got {show(value)})")
    return value


def _boolean(value: object, origin: Origin, meta: Mapping[str, object]) -> bool:
    if not isinstance(value, bool):
        raise origin.fail(f"must be true or false (got {show(value)})")
    return value


def _string(value: object, origin: Origin, meta: Mapping[str, object]) -> str:
    if not isinstance(value, str):
        shown = "a non-string value" if meta.get("secret") else show(value)
        raise origin.fail(f"must be a string in quotes (got {shown})")
    return value


def _strings(value: object, origin: Origin, meta: Mapping[str, object]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise origin.fail(f'must be a list of non-empty strings, e.g. ["a", "b"] (got {show(value)})')
    return tuple(value)


_READERS: dict[object, Callable[[object, Origin, Mapping[str, object]], object]] = {
    float: _number, int: _integer, bool: _boolean, str: _string, tuple[str, ...]: _strings,
}


# --------------------------------------------------------------------------- sections


def read_toml_file(path: Path) -> dict[str, object] | None:
    """Parse the file; None if it does not exist. Every failure is a one-line ConfigError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, expected a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(one_line(f"{path}: invalid TOML: {exc}")) from None


def section_keys(cls: type) -> tuple[str, ...]:
    """The keys a section accepts, in the order they are written."""
    return tuple(f.name for f in fields(cls))


def section_fields(cls: type) -> dict[str, type]:
    """The fields of a whole config that are sections: name -> section dataclass."""
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls) if is_dataclass(hints[f.name])}


def _default(f: Field[object]) -> object:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return ""  # a required setting (slskd's url) reads as empty; its check says what to set


def read_section(cls: type[S], name: str, table: Mapping[str, object], source: str,
                 env: Mapping[str, str]) -> S:
    """One TOML table as the section dataclass `cls`: unknown keys, types, limits, checks."""
    known = section_keys(cls)
    for key in table:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
            tail = f"did you mean {', '.join(hint)}?" if hint else f"valid keys: {', '.join(known)}"
            raise ConfigError(one_line(f"{source}: unknown key [{name}] {key} ({tail})"))
    hints = get_type_hints(cls)
    values: dict[str, object] = {}
    for f in fields(cls):
        origin = Origin(source, name, f.name, env.get(f"{name}.{f.name}"))
        value = _default(f)
        if f.name in table:
            value = _READERS[hints[f.name]](table[f.name], origin, f.metadata)
        check = f.metadata.get("check")
        values[f.name] = check(value, origin) if check is not None else value
    section = cls(**values)
    if hasattr(section, "check_section"):
        cast(CrossChecked, section).check_section(
            lambda key, problem: Origin(source, name, key, env.get(f"{name}.{key}")).fail(problem))
    return section


def read_sections(cls: type[S], raw: Mapping[str, object], source: str, env: Mapping[str, str]) -> S:
    """A whole config `cls` from parsed TOML: every section field read by `read_section`.

    `env` maps "section.key" to the environment variable that supplied it, so its message
    names the variable rather than the file.
    """
    sections = section_fields(cls)
    for name, value in raw.items():
        if name not in sections:
            if not isinstance(value, dict):
                raise ConfigError(
                    f"{source}: unknown top-level key {name} (settings belong in a section such as [slskd])"
                )
            hint = difflib.get_close_matches(name, list(sections), n=1, cutoff=0.6)
            tail = f"did you mean [{hint[0]}]?" if hint else f"valid sections: {', '.join(sections)}"
            raise ConfigError(f"{source}: unknown section [{name}] ({tail})")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {name} must be a section [{name}], not a value")
    return cls(**{name: read_section(section, name, cast(Mapping[str, object], raw.get(name, {})), source, env)
                  for name, section in sections.items()})


def section_to_toml(section: object) -> TomlTable:
    """A section as TOML-ready data, secrets included; `omit_empty` fields left out when empty."""
    out: TomlTable = {}
    for f in fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        if f.metadata.get("omit_empty") and not value:
            continue
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def sections_to_toml(config: object) -> dict[str, TomlTable]:
    """Every section of a whole config as TOML-ready data, in the order of its fields."""
    return {name: section_to_toml(getattr(config, name)) for name in section_fields(type(config))}


def secret_keys(cls: type) -> frozenset[str]:
    """The keys of a section marked `secret`."""
    return frozenset(f.name for f in fields(cls) if f.metadata.get("secret"))


def env_overrides(cls: type) -> dict[str, tuple[str, str]]:
    """Environment variable -> (section, key), for each field of a whole config that names one."""
    return {f.metadata["env"]: (name, f.name) for name, section in section_fields(cls).items()
            for f in fields(section) if f.metadata.get("env")}


def masked_repr(section: object) -> str:
    """repr of a section with its secrets shown as '***' ('' when empty): safe in any log."""
    parts = []
    for f in fields(section):  # type: ignore[arg-type]
        value = getattr(section, f.name)
        parts.append(f"{f.name}={(MASK if value else repr(value)) if f.metadata.get('secret') else repr(value)}")
    return f"{type(section).__name__}({', '.join(parts)})"


__all__ = [
    "DAY", "HOUR", "MASK", "MINUTE", "WEEK", "YEAR", "CrossChecked", "Fail", "Origin", "TomlTable", "TomlValue",
    "env_overrides", "masked_repr", "one_of", "read_section", "read_toml_file", "read_sections", "secret_keys", "section_fields", "section_keys",
    "section_to_toml", "sections_to_toml", "setting", "show", "some_of",
]
