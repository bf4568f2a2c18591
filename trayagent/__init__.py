"""trayagent: a system-tray companion for slskd."""

__version__ = "0.1.0"
