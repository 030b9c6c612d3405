"""The fan-out benchmark (``make bench``, ``python -m bench --help``).

```
bench/__main__.py        the command line and the default schedule            (entry)
bench/runner.py          per target and size: fresh server, one measurement    (schedule)
bench/servers.py         the four targets as real processes on loopback ports (processes)
bench/harness.py         subscribers, the window, the accounting               (measurement)
bench/writer.py          plain SQL INSERTs at a fixed rate, stamped at COMMIT  (load)
bench/probes.py          server RSS/CPU/threads (psutil), its PostgreSQL sessions
bench/report.py          the result record, the table, the JSON line
bench/per_connection.py  reference 1: a LISTEN connection per subscriber (the blog's design)
bench/ceiling.py         reference 2: raw asyncio, one LISTEN, encode once (the floor)
bench/hypercorn_floor.py reference 3: the same fan-out as a bare ASGI app under hypercorn
bench/sse_client.py      the cheap raw-asyncio SSE client (also used by the tests)
```
"""
