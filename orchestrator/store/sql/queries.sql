-- The core store's statements (see orchestrator/store/sql/__init__.py for the notation).
-- Each is run by the store module named in its section, and only there.

-- ---------------------------------------------------------------- tasks (store/tasks.py)

-- insert_task --
INSERT INTO tasks ({tasks.columns}) VALUES ({tasks.values})

-- get_task --
SELECT {tasks.columns} FROM tasks WHERE id = :task_id {FOR UPDATE}

-- task_by_ref --
-- The unfinished task with this ref, else the most recent finished one.
SELECT {tasks.columns} FROM tasks WHERE process_id = :process_id AND ref = :ref
ORDER BY active_ref IS NULL, created_at DESC LIMIT 1 {FOR UPDATE}

-- active_ref_taken --
SELECT id FROM tasks WHERE process_id = :process_id AND active_ref = :ref

-- chain_size --
SELECT count(*) FROM (SELECT id FROM tasks WHERE root_id = :root_id LIMIT :limit) AS chain

-- save_task --
-- {sets}: "column = :column, ..." for the columns that changed. held_callbacks as it is
-- now (a delivery may have set it since the task was read: see hold_callbacks).
UPDATE tasks SET {sets} WHERE id = :w_id AND rev = :w_rev RETURNING held_callbacks

-- hold_callbacks --
-- A callback is kept pending for the task (whose row the caller has locked). Not a
-- change of the task (rev stays): a step running meanwhile commits, and reads it back.
UPDATE tasks SET held_callbacks = 1 WHERE id = :task_id

-- lock_ref --
-- Serializes, until the transaction ends, a task with this ref being created at its
-- wait node (which then looks for callbacks held for the ref) and a delivery that found
-- no task for the ref (which looks again once it has the lock): engine/early.py.
SELECT pg_advisory_xact_lock(:process_id, :ref_key)

-- callbacks_settled --
-- None is held any more (the caller has the row locked, and looked).
UPDATE tasks SET held_callbacks = 0 WHERE id = :task_id

-- claimable --
-- Whether a claim would find a due timer, a runnable task (no locks: see tasks.claimable).
SELECT
  (SELECT id FROM tasks WHERE state = 'waiting' AND wake_at <= :now ORDER BY wake_at LIMIT 1),
  (SELECT id FROM tasks WHERE state = 'active' AND (lease_until IS NULL OR lease_until < :now)
   ORDER BY updated_at LIMIT 1)

-- claim_runnable --
-- Runnable tasks leased in one statement (expired leases of dead workers taken over).
-- Several workers share PostgreSQL: each skips rows another one is claiming.
UPDATE tasks SET lease_owner = :lease_owner, lease_until = :lease_until, rev = rev + 1
WHERE id IN (
  SELECT id FROM tasks WHERE state = 'active' AND (lease_until IS NULL OR lease_until < :now)
  ORDER BY updated_at LIMIT :limit {FOR UPDATE SKIP LOCKED}
) RETURNING {tasks.columns}

-- claim_due --
-- Waiting tasks whose time limit has passed, leased and marked to take the timeout exit.
UPDATE tasks SET lease_owner = :lease_owner, lease_until = :lease_until, state = 'active',
  entry = 'timeout', wake_at = NULL, rev = rev + 1
WHERE id IN (
  SELECT id FROM tasks WHERE state = 'waiting' AND wake_at <= :now
  ORDER BY wake_at LIMIT :limit {FOR UPDATE SKIP LOCKED}
) RETURNING {tasks.columns}

-- release_all_leases --
UPDATE tasks SET lease_owner = NULL, lease_until = NULL
WHERE lease_owner = :owner AND state = 'active'

-- release_leases --
UPDATE tasks SET lease_owner = NULL, lease_until = NULL
WHERE lease_owner = :owner AND state = 'active' AND id IN ({ids})

-- renew_leases --
UPDATE tasks SET lease_until = :until
WHERE id IN ({ids}) AND lease_owner = :owner AND state = 'active'

-- defer_task --
UPDATE tasks SET lease_until = :until WHERE id = :task_id AND lease_owner = :owner

-- insert_events --
-- {rows}: "(:task_id0, :at0, ...), ..." (one statement for a step's few events).
INSERT INTO task_events (task_id, at, kind, node_id, to_node_id, detail) VALUES {rows}

-- insert_events_unnest --
-- PostgreSQL only: any number of events in one statement of one shape (the events an
-- optimistic batch deferred to its COMMIT: store/savepoint.py). Each parameter is an
-- array, one element per event.
INSERT INTO task_events (task_id, at, kind, node_id, to_node_id, detail)
SELECT task_id, at, kind, node_id, to_node_id, detail
FROM unnest(CAST(:task_id AS text[]), CAST(:at AS float8[]), CAST(:kind AS text[]),
  CAST(:node_id AS text[]), CAST(:to_node_id AS text[]), CAST(:detail AS text[]))
  WITH ORDINALITY AS e (task_id, at, kind, node_id, to_node_id, detail, n)
ORDER BY n

-- history --
SELECT id, at, kind, node_id, to_node_id, detail FROM task_events
WHERE task_id = :task_id AND id > :after_id ORDER BY id LIMIT :limit

-- last_source --
SELECT node_id FROM task_events
WHERE task_id = :task_id AND kind = 'transition' AND to_node_id = :node_id
ORDER BY id DESC LIMIT 1

-- list_tasks --
-- {filters}: list_tasks_* conditions below, each starting with AND; {newest}: the order
-- column (see tasks.list_tasks for why it is sometimes "created_at + 0").
SELECT {tasks.columns} FROM tasks WHERE process_id = :process_id {filters}
ORDER BY {newest} DESC, id DESC LIMIT :limit

-- list_tasks_since --
AND created_at >= :since

-- list_tasks_until --
AND created_at <= :until

-- list_tasks_ids --
AND id IN ({ids})

-- list_tasks_data_has --
-- {any}: data_contains conditions joined by OR.
AND ({any})

-- list_tasks_ref --
AND ref = :ref

-- list_tasks_node --
AND node_id = :node

-- list_tasks_state --
AND state = :state

-- list_tasks_outcome --
AND outcome = :outcome

-- list_tasks_before --
-- The leading "<=" is a plain range an index can seek to; the OR alone is not.
AND created_at <= :before_at
AND (created_at < :before_at OR (created_at = :before_at AND id < :before_id))

-- data_contains --
-- {pattern}: a parameter holding a LIKE pattern escaped with "/" (see tasks.like_pattern).
data LIKE {pattern} ESCAPE '/'

-- tasks_with_data_text --
SELECT {tasks.columns} FROM tasks WHERE data LIKE :pattern ESCAPE '/'
ORDER BY created_at DESC, id DESC LIMIT :limit

-- node_counts --
SELECT node_id, count(*) FROM tasks WHERE process_id = :process_id GROUP BY node_id

-- state_counts --
SELECT state, outcome, count(*) FROM tasks WHERE process_id = :process_id
GROUP BY state, outcome

-- children --
SELECT {tasks.columns} FROM tasks WHERE parent_task_id = :parent_task_id
ORDER BY created_at LIMIT :limit

-- ------------------------------------------------------- callbacks (store/callbacks.py)

-- insert_callback --
-- Usually 'new'; a step's modify_task stores its callback as its delivery settled it.
INSERT INTO callbacks (process_id, node_id, form, ref, task_id, dedupe_key, idem_token,
  payload, source_ip, received_at, status, applied_at, applied_task_id)
VALUES (:process_id, :node_id, :form, :ref, :task_id, :dedupe_key, :idem_token,
  :payload, :source_ip, :received_at, :status, :applied_at, :applied_task_id)
ON CONFLICT DO NOTHING RETURNING id

-- set_callback_status --
UPDATE callbacks SET status = :status, applied_at = :applied_at,
  applied_task_id = :applied_task_id
WHERE id = :w_id AND status IN ('new', 'pending')

-- new_callback --
SELECT {callbacks.columns} FROM callbacks WHERE id = :callback_id AND status = 'new'

-- new_callbacks --
SELECT {callbacks.columns} FROM callbacks WHERE status = 'new' ORDER BY id LIMIT :limit

-- unsettled_by_task --
-- A task without a ref.
SELECT {callbacks.columns} FROM callbacks
WHERE status IN ('new', 'pending') AND task_id = :task_id
ORDER BY id

-- unsettled_for_task --
-- A UNION, so each half uses its own index (an OR made SQLite scan every unsettled
-- callback).
SELECT {callbacks.columns} FROM callbacks
WHERE status IN ('new', 'pending') AND task_id = :task_id
UNION
SELECT {callbacks.columns} FROM callbacks
WHERE status IN ('new', 'pending') AND process_id = :process_id AND ref = :ref
ORDER BY id

-- callback_counts --
SELECT status, count(*) FROM callbacks GROUP BY status

-- lock_new_callback --
SELECT id FROM callbacks WHERE id = :callback_id AND status = 'new' {FOR UPDATE}

-- readdress_callback --
UPDATE callbacks SET form = :form, task_id = :task_id, node_id = '*', payload = :payload
WHERE id = :callback_id

-- old_orphan_ids --
-- An orphan: a callback that found no task (pending, never matched to one).
SELECT id FROM callbacks
WHERE status = 'pending' AND task_id IS NULL AND applied_task_id IS NULL
  AND received_at < :received_before
ORDER BY id LIMIT :limit

-- newest_dropped_orphan --
SELECT id FROM callbacks
WHERE status = 'pending' AND task_id IS NULL AND applied_task_id IS NULL
ORDER BY id DESC LIMIT 1 OFFSET :keep

-- orphan_ids_up_to --
SELECT id FROM callbacks
WHERE status = 'pending' AND task_id IS NULL AND applied_task_id IS NULL AND id <= :newest
ORDER BY id LIMIT :limit

-- orphan_count --
SELECT count(*) FROM callbacks
WHERE status = 'pending' AND task_id IS NULL AND applied_task_id IS NULL

-- delete_callbacks --
DELETE FROM callbacks WHERE id IN ({ids})

-- ----------------------------------------------------------- effects (store/effects.py)

-- effect --
SELECT status, result, created_at, request FROM effects
WHERE task_id = :task_id AND step = :step AND logic_index = :logic_index

-- start_effect --
INSERT INTO effects (task_id, step, logic_index, kind, status, request, created_at, updated_at)
VALUES (:task_id, :step, :logic_index, :kind, 'started', :request, :now, :now)
ON CONFLICT DO NOTHING

-- finish_effect --
UPDATE effects SET status = 'done', result = :result, updated_at = :now
WHERE task_id = :task_id AND step = :step AND logic_index = :logic_index

-- effects_at_step --
SELECT kind, status, request, result FROM effects WHERE task_id = :task_id AND step = :step

-- done_effect_results --
-- {kinds}: the effect kinds' parameters.
SELECT result FROM effects WHERE task_id = :task_id AND status = 'done' AND kind IN ({kinds})
ORDER BY step, logic_index

-- ------------------------------------------------- conversations (store/conversations.py)

-- listener_of_task --
SELECT from_number, to_number FROM reply_listeners WHERE task_id = :task_id

-- delete_listener --
DELETE FROM reply_listeners WHERE task_id = :task_id

-- insert_listener --
INSERT INTO reply_listeners (task_id, from_number, to_number, created_at)
VALUES (:task_id, :from_number, :to_number, :now)

-- oldest_listeners --
SELECT task_id FROM reply_listeners WHERE from_number = :from_number AND to_number = :to_number
ORDER BY created_at, task_id LIMIT :limit

-- take_listener --
DELETE FROM reply_listeners
WHERE task_id = :task_id AND from_number = :from_number AND to_number = :to_number

-- insert_opt_out --
INSERT INTO sms_opt_outs (recipient, sender, source, created_at)
VALUES (:recipient, :sender, :source, :now)
ON CONFLICT DO NOTHING

-- delete_opt_out --
DELETE FROM sms_opt_outs WHERE recipient = :recipient AND sender = :sender

-- opted_out --
SELECT sender FROM sms_opt_outs WHERE recipient = :recipient AND sender IN (:a, :b)

-- list_opt_outs --
-- {filters}: list_opt_outs_* conditions below.
SELECT {sms_opt_outs.columns} FROM sms_opt_outs WHERE 1 = 1 {filters}
ORDER BY created_at DESC LIMIT :limit

-- list_opt_outs_recipient --
AND recipient = :recipient

-- list_opt_outs_sender --
AND sender = :sender

-- ----------------------------------------------------------- api keys (store/apikeys.py)

-- insert_api_key --
-- No row back: the login (or the secret) is taken.
INSERT INTO api_keys (login, secret_hash, secret_encrypted, created_at, role)
VALUES (:login, :secret_hash, :secret_encrypted, :now, :role)
ON CONFLICT DO NOTHING RETURNING login

-- api_keys --
SELECT {api_keys.columns} FROM api_keys ORDER BY created_at

-- api_key_by_login --
SELECT {api_keys.columns} FROM api_keys WHERE login = :login

-- api_key_by_hash --
SELECT {api_keys.columns} FROM api_keys WHERE secret_hash = :secret_hash

-- any_active_api_key --
SELECT login FROM api_keys WHERE revoked_at IS NULL LIMIT 1

-- any_api_key --
SELECT login FROM api_keys LIMIT 1

-- revoke_api_key --
UPDATE api_keys SET revoked_at = :now WHERE login = :login AND revoked_at IS NULL

-- reencrypt_api_key --
UPDATE api_keys SET secret_encrypted = :secret_encrypted WHERE login = :login

-- forget_seen_requests --
DELETE FROM seen_requests WHERE seen_at < :forget_before

-- insert_seen_request --
INSERT INTO seen_requests (key, seen_at) VALUES (:key, :now)
ON CONFLICT DO NOTHING RETURNING key

-- ------------------------------------------------------- sessions (store/sessions.py)

-- delete_expired_sessions --
DELETE FROM console_sessions WHERE expires_at < :now

-- insert_session --
INSERT INTO console_sessions (id_hash, login, created_at, expires_at)
VALUES (:id_hash, :login, :now, :expires_at)

-- session --
SELECT login, expires_at FROM console_sessions WHERE id_hash = :id_hash

-- delete_session --
DELETE FROM console_sessions WHERE id_hash = :id_hash

-- ------------------------------------------------------- processes (store/processes.py)

-- process_by_id --
SELECT {processes.columns p}, v.id AS version_id, v.definition
FROM processes p JOIN process_versions v ON v.process_id = p.id AND v.version = p.current_version
WHERE p.id = :id

-- process_by_slug --
SELECT {processes.columns p}, v.id AS version_id, v.definition
FROM processes p JOIN process_versions v ON v.process_id = p.id AND v.version = p.current_version
WHERE p.slug = :slug

-- processes --
SELECT {processes.columns p}, v.id AS version_id, v.definition
FROM processes p JOIN process_versions v ON v.process_id = p.id AND v.version = p.current_version
ORDER BY p.id

-- version --
SELECT process_id, version, definition FROM process_versions WHERE id = :version_id

-- versions --
SELECT id, version, checksum, source, created_at FROM process_versions
WHERE process_id = :process_id ORDER BY version

-- version_checksum --
SELECT checksum FROM process_versions WHERE id = :version_id

-- lock_deploys --
SELECT pg_advisory_xact_lock(:key)

-- insert_process --
INSERT INTO processes (slug, title, current_version, created_at, updated_at)
VALUES (:slug, :title, 0, :now, :now) RETURNING id

-- insert_version --
INSERT INTO process_versions (process_id, version, definition, checksum, source, created_at)
VALUES (:process_id, :version, :definition, :checksum, :source, :now) RETURNING id

-- insert_node --
INSERT INTO nodes (version_id, node_id, title, kind) VALUES (:version_id, :node_id, :title, :kind)

-- set_current_version --
UPDATE processes SET current_version = :version, title = :title, updated_at = :now
WHERE id = :process_id

-- callback_node_ids --
SELECT DISTINCT n.node_id FROM nodes n JOIN process_versions v ON v.id = n.version_id
WHERE v.process_id = :process_id AND n.kind IN ('wait', 'start')

-- --------------------------------------------------------------------- kv (store/kv.py)

-- setting --
SELECT value FROM settings WHERE key = :key

-- insert_setting --
INSERT INTO settings (key, value) VALUES (:key, :value) ON CONFLICT DO NOTHING

-- upsert_setting --
INSERT INTO settings (key, value) VALUES (:key, :value)
ON CONFLICT (key) DO UPDATE SET value = excluded.value

-- upsert_account_token --
INSERT INTO twilio_accounts (account_sid, token_encrypted, updated_at)
VALUES (:account_sid, :token_encrypted, :now)
ON CONFLICT (account_sid) DO UPDATE
SET token_encrypted = excluded.token_encrypted, updated_at = excluded.updated_at

-- account_token --
SELECT token_encrypted FROM twilio_accounts WHERE account_sid = :account_sid

-- ------------------------------------------------------------- gauges (store/gauges.py)

-- process_slugs --
SELECT id, slug FROM processes

-- task_state_counts --
SELECT process_id, state, outcome, count(*) FROM tasks GROUP BY process_id, state, outcome

-- runnable_by_process --
SELECT process_id, count(*) FROM tasks WHERE state = 'active' GROUP BY process_id

-- unsettled_callbacks_by_process --
SELECT process_id, count(*) FROM callbacks WHERE status IN ('new', 'pending')
GROUP BY process_id

-- ------------------------------------------------------------- notify (store/notify.py)

-- notify --
SELECT pg_notify(:channel, '')

-- ------------------------------------------------------- retention (store/retention.py)

-- finished_task_ids --
SELECT id FROM tasks WHERE state = 'done' AND finished_at < :before
ORDER BY finished_at LIMIT :limit

-- delete_events_of_tasks --
DELETE FROM task_events WHERE task_id IN ({ids})

-- delete_effects_of_tasks --
DELETE FROM effects WHERE task_id IN ({ids})

-- delete_callbacks_applied_to_tasks --
DELETE FROM callbacks WHERE applied_task_id IN ({ids})

-- delete_callbacks_of_tasks --
DELETE FROM callbacks WHERE task_id IN ({ids})

-- delete_tasks --
DELETE FROM tasks WHERE id IN ({ids})

-- stray_callback_ids --
-- Callbacks that never found a task (stray or forged sids) age out like tasks.
SELECT id FROM callbacks WHERE status = 'pending' AND received_at < :before LIMIT :limit

-- --------------------------------------------------------------- senders (store/senders.py)

-- insert_sender_slot --
INSERT INTO sender_slots (sender, next_at, queued_until) VALUES (:sender, 0, 0)
ON CONFLICT DO NOTHING

-- sender_slot --
SELECT next_at, queued_until FROM sender_slots WHERE sender = :sender {FOR UPDATE}

-- set_sender_next_at --
UPDATE sender_slots SET next_at = :next_at WHERE sender = :sender

-- set_sender_queued_until --
UPDATE sender_slots SET queued_until = :queued_until WHERE sender = :sender

-- ------------------------------------------------------------ vaulted (store/vaulted.py)

-- sealed_account_tokens --
SELECT account_sid, token_encrypted FROM twilio_accounts WHERE token_encrypted IS NOT NULL

-- sealed_api_key_secrets --
SELECT login, secret_encrypted FROM api_keys WHERE secret_encrypted IS NOT NULL

-- sealed_task_secrets --
SELECT id, secrets FROM tasks WHERE secrets IS NOT NULL

-- sealed_callback_payloads --
-- Only callbacks still to be applied are read again; applied ones are history.
SELECT id, payload FROM callbacks
WHERE status IN ('new', 'pending') AND payload LIKE :pattern ESCAPE '/'

-- sealed_effect_results --
SELECT task_id, step, logic_index, result FROM effects WHERE result LIKE :pattern ESCAPE '/'

-- replace_account_token --
UPDATE twilio_accounts SET token_encrypted = :new WHERE account_sid = :key AND token_encrypted = :old

-- replace_api_key_secret --
UPDATE api_keys SET secret_encrypted = :new WHERE login = :key AND secret_encrypted = :old

-- replace_task_secrets --
UPDATE tasks SET secrets = :new WHERE id = :key AND secrets = :old

-- replace_callback_payload --
UPDATE callbacks SET payload = :new WHERE id = :id AND payload = :old

-- replace_effect_result --
UPDATE effects SET result = :new
WHERE task_id = :task_id AND step = :step AND logic_index = :logic_index AND result = :old
