"""A part of a transaction that is kept whole or not at all."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Connection


@contextlib.contextmanager
def all_or_nothing(conn: Connection) -> Iterator[None]:
    """What the block writes is undone if it raises (the transaction goes on); a savepoint."""
    with conn.begin_nested():
        yield
