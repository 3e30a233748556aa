-- The Twilio plugin's statements, run by orchestrator/twilio/messages_store.py (notation:
-- orchestrator/store/sql/__init__.py). Its tables are declared in store/tables.py with
-- the others, for the migrations.

-- track_message --
INSERT INTO twilio_messages (sid, account_sid, process_id, node_id, status, final,
  created_at, check_at)
VALUES (:sid, :account_sid, :process_id, :node_id, :status, :final, :now, :check_at)
ON CONFLICT DO NOTHING

-- track_messages_unnest --
-- PostgreSQL only: the messages an optimistic batch's steps sent, deferred to its COMMIT
-- (store/savepoint.py), in one statement, in order; each parameter an array.
INSERT INTO twilio_messages (sid, account_sid, process_id, node_id, status, final,
  created_at, check_at)
SELECT sid, account_sid, process_id, node_id, status, final, now, check_at
FROM unnest(CAST(:sid AS text[]), CAST(:account_sid AS text[]), CAST(:process_id AS int[]),
  CAST(:node_id AS text[]), CAST(:status AS text[]), CAST(:final AS int[]),
  CAST(:now AS float8[]), CAST(:check_at AS float8[]))
  WITH ORDINALITY AS m (sid, account_sid, process_id, node_id, status, final, now, check_at, n)
ORDER BY n
ON CONFLICT DO NOTHING

-- message_sender --
SELECT account_sid FROM twilio_messages WHERE sid = :sid

-- close_message --
UPDATE twilio_messages SET status = :status, final = 1 WHERE sid = :sid AND final = 0

-- due_messages --
-- PostgreSQL: another sweep's rows are skipped.
SELECT {twilio_messages.columns} FROM twilio_messages WHERE final = 0 AND check_at <= :now
ORDER BY check_at LIMIT :limit {FOR UPDATE SKIP LOCKED}

-- recheck_messages_at --
-- {sids}: the messages' parameters.
UPDATE twilio_messages SET check_at = :check_at WHERE sid IN ({sids})

-- set_message_status --
UPDATE twilio_messages SET status = :status, final = :final WHERE sid = :sid

-- message_created_at --
SELECT created_at FROM twilio_messages WHERE sid = :sid

-- message --
SELECT {twilio_messages.columns} FROM twilio_messages WHERE sid = :sid

-- recheck_open_messages --
UPDATE twilio_messages SET check_at = :at
WHERE final = 0 AND created_at >= :created_from AND created_at < :created_before
  AND check_at > :at

-- closed_message_sids --
SELECT sid FROM twilio_messages WHERE final = 1 AND created_at < :before LIMIT :limit

-- delete_messages --
DELETE FROM twilio_messages WHERE sid IN ({sids})
