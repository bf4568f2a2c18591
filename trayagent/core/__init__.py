"""The pure core: what a transfer is, how its state reads, and the one rule set for following downloads.

Nothing here does I/O or imports from the rest of trayagent.
"""
