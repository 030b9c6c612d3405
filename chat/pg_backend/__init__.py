"""Django's PostgreSQL backend with pgchat's pool check (see base.py)."""
