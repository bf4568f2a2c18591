"""What the user sees on the desktop: tray backends, icons, notification backends, autostart, labels.

Desktop code reads immutable `AgentState` snapshots and calls back into the agent only through the
actions it is handed; a failure here degrades the desktop and never stops polling.
"""
