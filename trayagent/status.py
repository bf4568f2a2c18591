"""`trayagent status`: one read of slskd's list, its active downloads and the recent ends.

It reads the state database read-only, so it works beside a running agent; a state that
cannot be read only leaves out the recent downloads (slskd's list is still shown).
"""

from __future__ import annotations

import json
import logging
from typing import Sequence, TextIO

from trayagent.config import Config
from trayagent.core.model import Finished, Transfer, iso
from trayagent.errors import EXIT_FAIL, EXIT_OK
from trayagent.slskd.client import SlskdClient
from trayagent.slskd.errors import SlskdError
from trayagent.errors import StoreError
from trayagent.store import Store, existing_state

log = logging.getLogger(__name__)


def show_status(config: Config, as_json: bool, out: TextIO, err: TextIO) -> int:
    """Print the status (a table, or JSON); EXIT_FAIL when slskd cannot be read."""
    client = SlskdClient(config.slskd)
    try:
        transfers = client.list_downloads()
    except SlskdError as exc:
        print(f"trayagent: {exc}", file=err)
        return EXIT_FAIL
    finally:
        client.close()
    recent = _recent(config, 10)
    active = [t for t in transfers if not t.status.terminal]
    if as_json:
        report = {
            "active": [_transfer_json(t) for t in active],
            "recent": [_finished_json(f) for f in recent],
            "total_listed": len(transfers),
        }
        print(json_text(report, getattr(out, "encoding", None) or "utf-8"), file=out)
        return EXIT_OK
    print(_status_table(active, recent, len(transfers)), file=out)
    return EXIT_OK


def _recent(config: Config, limit: int) -> list[Finished]:
    path = existing_state(config.state_path)
    if path is None:
        return []
    try:
        store = Store(path, readonly=True)
        try:
            return store.recent(limit)
        finally:
            store.close()
    except StoreError as exc:
        log.warning("%s (recent downloads not shown)", exc)
        return []


def json_text(obj: object, encoding: str) -> str:
    """Indented JSON in plain characters where `encoding` can take them, escapes elsewhere."""
    text = json.dumps(obj, ensure_ascii=False, indent=2)
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        text = json.dumps(obj, indent=2)
    return text


def _transfer_json(t: Transfer) -> dict[str, object]:
    return {"id": t.id, "username": t.username, "filename": t.filename, "state": t.state,
            "size": t.size, "bytes_transferred": t.bytes_transferred, "speed": t.average_speed}


def _finished_json(f: Finished) -> dict[str, object]:
    return {"id": f.transfer_id, "username": f.username, "filename": f.filename,
            "outcome": f.outcome.value, "reason": f.reason, "state": f.state, "size": f.size,
            "finished_at": iso(f.finished_at)}


def _status_table(active: Sequence[Transfer], recent: Sequence[Finished], total: int) -> str:
    from trayagent.desktop.labels import sanitize, track_label

    lines = [f"{len(active)} active of {total} listed by slskd"]
    for t in active:
        pct = f"{100 * t.bytes_transferred / t.size:5.1f}%" if t.size else "    ? "
        lines.append(f"  {pct}  {human_size(t.size):>9}  {sanitize(t.state, 18):<18}  "
                     f"{sanitize(t.username, 20):<20}  {track_label(t.filename, 60)}")
    if recent:
        lines.append("recently finished:")
        for f in recent:
            what = f.outcome.value + (f" ({f.reason})" if f.reason else "")
            lines.append(f"  {what:<20}  {sanitize(f.username, 20):<20}  {track_label(f.filename, 60)}")
    return "\n".join(lines)


def human_size(n: float) -> str:
    """A byte count as people read it (decimal units, as slskd's web UI shows them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
