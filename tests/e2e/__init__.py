"""End-to-end tests: the real agent on a headless X desktop (Xvfb + dunst + trayer)."""
