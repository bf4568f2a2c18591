"""A minimal notification daemon on the session bus, for the one daemon dunst cannot play.

dunst always offers the `actions` capability; some daemons (and GNOME's lock screen, and most
minimal ones) do not. This one owns org.freedesktop.Notifications, offers exactly the
capabilities it is given, and appends every Notify call it receives to a JSON-lines file.

    python fake_notifyd.py RECORD_FILE CAP[,CAP...]

It prints "ready" once it owns the name.
"""

from __future__ import annotations

import json
import sys

from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection

NAME = "org.freedesktop.Notifications"
DO_NOT_QUEUE = 4
PRIMARY_OWNER = 1


def main(argv: list[str]) -> int:
    record, caps = argv[0], [c for c in argv[1].split(",") if c]
    conn = open_dbus_connection(bus="SESSION")
    if conn.send_and_get_reply(message_bus.RequestName(NAME, DO_NOT_QUEUE)).body[0] != PRIMARY_OWNER:
        print(f"could not own {NAME}", file=sys.stderr)
        return 1
    print("ready", flush=True)
    last_id = 0
    while True:
        msg = conn.receive()
        if msg.header.message_type is not MessageType.method_call:
            continue
        member = msg.header.fields.get(HeaderFields.member)
        if member == "GetCapabilities":
            conn.send(new_method_return(msg, "as", (caps,)))
        elif member == "GetServerInformation":
            conn.send(new_method_return(msg, "ssss", ("fake-notifyd", "trayagent tests", "1.0", "1.2")))
        elif member == "Notify":
            app, replaces, icon, summary, body, actions, hints, timeout = msg.body
            if not replaces:
                last_id += 1
            nid = replaces or last_id
            with open(record, "a", encoding="utf-8") as out:
                out.write(json.dumps({
                    "id": nid, "app": app, "replaces_id": replaces, "summary": summary, "body": body,
                    "actions": list(actions), "hints": {k: v[1] for k, v in hints.items()},
                }) + "\n")
            conn.send(new_method_return(msg, "u", (nid,)))
        elif member == "CloseNotification":
            conn.send(new_method_return(msg))
        else:
            conn.send(new_error(msg, "org.freedesktop.DBus.Error.UnknownMethod"))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
