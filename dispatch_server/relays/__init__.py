"""Relays run apart from the dispatch server (R18): the grant key they verify with, their reports."""
