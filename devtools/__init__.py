"""Development and set-up tooling: not imported by the running application.

``devtools.embedded_pg`` runs the project's own PostgreSQL (``make db``, ``manage.py``,
the tests, the benchmark) when no ``DATABASE_URL`` is set.
"""
