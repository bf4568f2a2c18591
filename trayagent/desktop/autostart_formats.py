"""The text formats of login entries: a Desktop Entry file with its Exec key, a Windows command line.

Autostart writes an argv into a .desktop file's Exec= (XDG) or a Run registry value (Windows)
and reads it back to tell whether what is installed still runs this trayagent, so each format
has a writer and a parser that undoes it exactly (paths with spaces, quotes, % and $ included).
"""

from __future__ import annotations

from typing import Sequence


class _Words:
    """The arguments being split out of a command line: characters gather into the current one."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self._current: list[str] = []
        self._started = False

    def add(self, text: str) -> None:
        self._current.append(text)
        self._started = True

    def start(self) -> None:
        """An argument begins even if nothing is added to it (an empty quoted "")."""
        self._started = True

    def end(self) -> None:
        """Unquoted whitespace: the current argument, if one began, is complete."""
        if self._started:
            self.args.append("".join(self._current))
            self._current, self._started = [], False

    def plain(self, ch: str, separators: str) -> None:
        """A character with no special meaning here: a separator ends the argument, others join it."""
        if ch in separators:
            self.end()
        else:
            self.add(ch)


# --------------------------------------------------------------------------- Desktop Entry Exec

#: Characters that force quoting of an Exec argument (Desktop Entry spec, "The Exec key").
_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def quote_exec_arg(arg: str) -> str:
    """Quote one argument for an Exec= value, before the string-level escaping.

    Inside double quotes the spec requires a backslash before ", `, $ and \\; a literal %
    is always written %% because % starts a field code.
    """
    arg = arg.replace("%", "%%")
    if arg and not (set(arg) & _EXEC_RESERVED):
        return arg
    out = ['"']
    for ch in arg:
        if ch in '"`$\\':
            out.append("\\")
        out.append(ch)
    out.append('"')
    return "".join(out)


def _escape_string(value: str) -> str:
    """Desktop Entry 'string' escaping, applied after quoting (so \\ becomes \\\\)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def _unescape_string(value: str) -> str:
    out: list[str] = []
    i = 0
    table = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value) and value[i + 1] in table:
            out.append(table[value[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def format_exec(argv: Sequence[str]) -> str:
    """The full Exec= value (without 'Exec=') for an argv."""
    return _escape_string(" ".join(quote_exec_arg(a) for a in argv))


def parse_exec(value: str) -> list[str]:
    """Split an Exec= value back into argv; field codes (%f, %U, ...) are dropped.

    Raises ValueError on an unterminated quote.
    """
    text = _unescape_string(value)
    words = _Words()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            i = _read_exec_quoted(text, i + 1, words)
        else:
            words.plain(ch, " \t\n")
            i += 1
    words.end()
    return [a.replace("%%", "%") for a in words.args if not _is_field_code(a)]


def _read_exec_quoted(text: str, i: int, words: _Words) -> int:
    """Read a quoted Exec argument from just after its opening quote; where reading goes on."""
    words.start()
    while True:
        if i >= len(text):
            raise ValueError("unterminated quote in Exec")
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in '"`$\\':
            words.add(text[i + 1])
            i += 2
        elif ch == '"':
            return i + 1
        else:
            words.add(ch)
            i += 1


def _is_field_code(arg: str) -> bool:
    return len(arg) == 2 and arg[0] == "%" and arg[1] in "fFuUdDnNickvm"


def desktop_entry(argv: Sequence[str]) -> str:
    """The autostart .desktop file for argv."""
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Version=1.5\n"
        "Name=trayagent\n"
        "GenericName=slskd tray agent\n"
        "Comment=Tray icon and notifications for slskd downloads\n"
        f"Exec={format_exec(argv)}\n"
        "Terminal=false\n"
        "StartupNotify=false\n"
        "Categories=Network;FileTransfer;\n"
        "X-GNOME-Autostart-enabled=true\n"
        "X-GNOME-Autostart-Delay=5\n"
        "X-KDE-autostart-after=panel\n"
    )


def read_desktop_entry(text: str) -> dict[str, str]:
    """Keys of the [Desktop Entry] group (first occurrence wins, localised keys kept as-is)."""
    out: dict[str, str] = {}
    in_group = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            in_group = line == "[Desktop Entry]"
            continue
        if in_group and "=" in line:
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), value.strip())
    return out


# --------------------------------------------------------------------------- Windows


def parse_windows_command(line: str) -> list[str]:
    """Split a command line the way CommandLineToArgvW / the MS C runtime does."""
    words = _Words()
    in_quotes = False
    i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        if ch == "\\":
            i = _read_backslashes(line, i, words)
        elif ch == '"' and in_quotes and i + 1 < n and line[i + 1] == '"':
            words.add('"')  # "" inside quotes: a literal quote
            i += 2
        elif ch == '"':
            in_quotes = not in_quotes
            words.start()
            i += 1
        else:
            words.plain(ch, "" if in_quotes else " \t")
            i += 1
    words.end()
    return words.args


def _read_backslashes(line: str, i: int, words: _Words) -> int:
    """A run of backslashes: halved before a quote (an odd one escapes it), literal otherwise."""
    j = i
    while j < len(line) and line[j] == "\\":
        j += 1
    count = j - i
    if j < len(line) and line[j] == '"':
        words.add("\\" * (count // 2))
        if count % 2:
            words.add('"')
            return j + 1
        return j
    words.add("\\" * count)
    return j
