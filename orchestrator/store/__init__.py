"""The database: schema, queries, connections.

One SQL idiom. Every statement is SQL text, named once in a query file
(``store/sql/queries.sql``; a plugin keeps its own, as ``twilio/queries.sql``), read once
with ``importlib.resources``, converted for psycopg when it is read, and run on the DB-API
cursor of the caller's connection by ``store/sql`` only; no module builds SQLAlchemy Core
expressions. A statement whose shape depends on its arguments (an ``IN`` list, the
columns a save changed, a multi-row insert, the console's optional filters) is a template
in the same file: its ``{slots}`` are filled with parameter marks and fragments from the
file, never with values (see ``store/sql/__init__.py``).

The column lists are those of ``tables.py`` (SQLAlchemy tables, kept for alembic's
autogenerate and ``alembic check``); the query files name them as ``{tasks.columns}``.

One module per table or concern runs its section of the file: ``tasks``, ``callbacks``,
``effects``, ``conversations``, ``processes``, ``apikeys``, ``sessions``, ``kv``,
``senders``, ``gauges``, ``retention``, ``vaulted``, ``notify``. ``db`` holds connections and
transactions (its BEGIN, SAVEPOINT, PRAGMA and ping statements manage connections; they
are not queries), ``group_commit`` SQLite's batched commits, ``sqlcount`` the bench's counts.
"""
