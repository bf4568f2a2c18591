"""Talking to slskd: the HTTP client and its parsing, and the bundled simulator of slskd's REST dialect."""
