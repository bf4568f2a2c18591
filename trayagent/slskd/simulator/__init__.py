"""A loopback HTTP server that speaks slskd 0.26's REST dialect, for demos, tests and benchmarks.

Why it exists: the agent must be exercised against the exact wire format slskd produces
(camelCase, omitted nulls, flag-string states, mixed `Z`/no-`Z` timestamps, empty-bodied 4xx,
JSON-string 500s) and against the awkward things slskd does (restarts that error every
in-flight transfer and re-enqueue them under new ids, supersede-on-re-request, soft removal).
Every behaviour follows /work/shared/slskd-api.md; where that reference is silent the choice
is documented at the spot.

The package, by job:
  server.py           `Simulator`: lifecycle, restart, the Python API tests script it with
  state.py            what a running slskd knows (settings, session, books), under one lock
  httpd.py            the loopback listener (Kestrel's ways on the socket)
  routes.py           URL base, faults, route table, auth order, application/server routes
  transfer_routes.py  /transfers/downloads: binding and status codes
  search_routes.py    /searches: SearchRequest binding and status codes
  transfers.py        the download list and slskd's transfer rules
  records.py          one download record and how a state change rewrites it
  plans.py            scripted transfer lives, played by the clock
  searches.py         searches and which peers answer them with what
  faults.py           injected faults
  auth.py             API key, logins, JWTs
  wire.py             slskd's wire format: dates, TimeSpans, numbers, flags, GUIDs, answers
  scenarios.py        the demo session (data)
  cli.py              `python -m trayagent.slskd.simulator`

Stdlib only: `ThreadingHTTPServer` in a daemon thread, one clock thread for time-driven plans.
"""

from trayagent.slskd.simulator.server import Simulator
from trayagent.slskd.simulator.state import DEFAULT_API_KEY, RequestRecord, SimulatorError
from trayagent.slskd.simulator.wire import VERSION, dotnet_number, format_time, format_timespan

__all__ = [
    "DEFAULT_API_KEY", "VERSION", "RequestRecord", "Simulator", "SimulatorError",
    "dotnet_number", "format_time", "format_timespan",
]
