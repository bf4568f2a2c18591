"""The one error hierarchy: every failure trayagent explains to the user in a single line.

The command line catches TrayagentError, prints its message (already free of secrets and
tracebacks) and exits with its ``exit_code``: 2 for what the user must fix in what they typed
(flags, the config file), 1 for what went wrong around them (slskd, the state database, disk).
Anything else escaping is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_OK = 0


class TrayagentError(Exception):
    """Base of every error whose message is fit to show the user as it is."""

    exit_code = EXIT_FAIL


class ConfigError(TrayagentError):
    """A configuration problem, described in one line that says what to fix."""

    exit_code = EXIT_USAGE


class StoreError(TrayagentError):
    """A state database cannot be opened, read or written; the message says which file, why and what to do."""


def one_line(text: object) -> str:
    """Text with every run of whitespace (newlines included) folded to one space.

    A message that reaches a terminal, a notification or a log line must stay one line, and a
    value from a file or from the network may carry its own line breaks.
    """
    return " ".join(str(text).split())


__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "ConfigError", "StoreError", "TrayagentError", "one_line"]
