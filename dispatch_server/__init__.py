"""The dispatch server: people, directives, streams and the command room's pages (FastAPI).

One folder per domain, each with ``models.py`` (SQL), ``schemas.py`` (what crosses HTTP and the
websocket), ``service.py`` (the rules; no HTTP) and ``views.py`` (thin routes).
"""
