"""The open-messages table behind the reconciliation sweep: claiming, closing, purging."""

from __future__ import annotations

from orchestrator.store.db import Database
from orchestrator.store.retention import purge_batch
from orchestrator.twilio import messages_store as store


def _track(conn: object, sid: str, status: str, at: float) -> None:
    store.track(
        conn,  # type: ignore[arg-type]
        sid=sid,
        account_sid="AC1",
        process_id=1,
        node_id="wait",
        status=status,
        now=at,
        check_at=at + 10,
    )


def test_claim_close_and_purge(db_url: str) -> None:
    db = Database(db_url)
    try:
        with db.write() as conn:
            _track(conn, "SM1", "queued", 100.0)
            _track(conn, "SM2", "delivered", 100.0)  # an adopted final message stays open
            _track(conn, "SM3", "queued", 200.0)
            _track(conn, "SM1", "sent", 100.0)  # tracked once
        with db.write() as conn:
            assert store.claim_due(conn, 105.0, 10, 500.0) == []  # not due yet
            due = store.claim_due(conn, 111.0, 10, 500.0)
            assert sorted(m.sid for m in due) == ["SM1", "SM2"]
            assert store.get(conn, "SM1").status == "queued"  # type: ignore[union-attr]
            # Claimed rows wait until the recheck time: another sweep gets nothing.
            assert store.claim_due(conn, 111.0, 10, 500.0) == []
            store.note_status(conn, "SM1", "sent")  # not final: stays open
            store.note_status(conn, "SM2", "delivered")  # a callback closes it
            store.set_status(conn, "SM3", "sent", final=True)  # given up
        with db.write() as conn:
            assert [m.sid for m in store.claim_due(conn, 600.0, 10, 900.0)] == ["SM1"]
            purge_batch(conn, 1000.0, 100)
            assert store.get(conn, "SM2") is None
            assert store.get(conn, "SM3") is None
            assert store.get(conn, "SM1") is not None  # still open: kept
    finally:
        db.dispose()
