from trayagent.cli import main

raise SystemExit(main())
