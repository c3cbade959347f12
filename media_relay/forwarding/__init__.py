"""Forwarding: encoded frames from one publisher track to many viewer tracks, never decoded."""
