"""`python -m trayagent.slskd.simulator` runs the simulator in the foreground (see cli.py)."""

from trayagent.slskd.simulator.cli import main

raise SystemExit(main())
