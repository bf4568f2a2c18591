"""Playlist sync: read a playlist, search once per track, rank, enqueue, and follow to the end."""
