"""Set-up tooling, not the app: what gets a development machine to a running server.

``devtools.embedded_pg`` runs the project's own PostgreSQL (``make db``, ``manage.py``, the
tests, the benchmark) when no ``DATABASE_URL`` is set; the settings only read its address
from it. ``devtools.serve`` is ``make run``'s launcher: it checks HOST and PORT, then
becomes hypercorn.
"""
