"""The Twilio context's senders (twilio/context.py): which account sent a sid is asked of
the database once, and not at all for a message this engine has just created."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from deployed import runtime
from sqlalchemy import Connection

from orchestrator.engine.runtime import Runtime
from orchestrator.twilio import context
from orchestrator.twilio import messages_store as message_store
from orchestrator.twilio.context import twilio_of


@pytest.fixture
def rt(db_url: str) -> Iterator[Runtime]:
    made = runtime(db_url)
    try:
        yield made
    finally:
        made.db.dispose()


@pytest.fixture
def queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sids whose sender was asked of the database."""
    asked: list[str] = []
    real = message_store.sender

    def sender(conn: Connection, sid: str) -> str | None:
        asked.append(sid)
        return real(conn, sid)

    monkeypatch.setattr(context.message_store, "sender", sender)
    return asked


def _record(rt: Runtime, sid: str, account: str) -> None:
    with rt.db.write() as conn:
        message_store.track(
            conn,
            sid=sid,
            account_sid=account,
            process_id=1,
            node_id="wait",
            status="queued",
            now=1.0,
            check_at=2.0,
        )


def test_a_created_messages_sender_is_known_without_a_query(
    rt: Runtime, queries: list[str]
) -> None:
    twilio = twilio_of(rt)
    twilio.note_sender("SM1", "AC1")  # before the step's commit records it
    with rt.db.read() as conn:
        assert twilio.sender(conn, "SM1") == "AC1"
    assert queries == []


def test_a_recorded_sender_is_asked_once_an_unknown_one_every_time(
    rt: Runtime, queries: list[str]
) -> None:
    twilio = twilio_of(rt)
    _record(rt, "SM2", "AC2")
    with rt.db.read() as conn:
        assert [twilio.sender(conn, "SM2") for _ in range(3)] == ["AC2"] * 3
        assert twilio.sender(conn, "SM3") is None
    _record(rt, "SM3", "AC3")  # recorded later (its step committed after a callback)
    with rt.db.read() as conn:
        assert twilio.sender(conn, "SM3") == "AC3"
    assert queries == ["SM2", "SM3", "SM3"]


def test_the_senders_kept_are_bounded(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "SENDERS_KEPT", 2)
    twilio = twilio_of(rt)
    for n in range(5):
        twilio.note_sender(f"SM{n}", f"AC{n}")
    assert len(twilio._senders) <= 2
    assert twilio._senders["SM4"] == "AC4"


def test_the_first_sender_known_stays(rt: Runtime, queries: list[str]) -> None:
    # As in the database, whose record of a sid is inserted once and never replaced.
    twilio = twilio_of(rt)
    twilio.note_sender("SM5", "AC5")
    twilio.note_sender("SM5", "AC6")
    with rt.db.read() as conn:
        assert twilio.sender(conn, "SM5") == "AC5"
