"""The runtime: what every part of the engine shares (database, secrets, definitions,
plugins and what they keep per runtime) and the small helpers around it."""

from __future__ import annotations

import asyncio
import functools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any, Protocol, TypeVar, cast, runtime_checkable

import httpx
from sqlalchemy import Connection

from orchestrator.config import Settings
from orchestrator.crypto import Vault, hash_matches, new_secret, node_hash
from orchestrator.engine.definition import ProcessDefinition, parse_definition
from orchestrator.engine.plugins import DEFAULT_PLUGINS, CallbackForm, Plugin, Plugins, load
from orchestrator.metrics import Metrics
from orchestrator.store import kv
from orchestrator.store import processes as process_store
from orchestrator.store.db import Database
from orchestrator.store.group_commit import GroupCommit
from orchestrator.store.records import ProcessRecord

T = TypeVar("T")
E = TypeVar("E")


@runtime_checkable
class Closable(Protocol):
    async def aclose(self) -> None: ...


PROCESS_CACHE_SECONDS = 1.0
# The forms of a wait node's callback URL (``callback_urls``).
CALLBACK_URL_FORMS = ("json", "twilio", "nvp")


class NotFound(LookupError):
    pass


def new_task_id() -> str:
    """24 hex characters, like Corezoid's obj_id: 4 bytes of time, 8 random."""
    return f"{int(time.time()):08x}{os.urandom(8).hex()}"


class Runtime:
    def __init__(
        self,
        settings: Settings,
        db: Database | None = None,
        plugins: list[Plugin[Runtime]] | None = None,
    ) -> None:
        self.settings = settings
        # Step handlers and callback forms (engine/plugins.py): Twilio, api_call, ….
        self.plugins: Plugins[Runtime] = Plugins(
            plugins if plugins is not None else load(DEFAULT_PLUGINS)
        )
        self.db = db or Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            wal_limit=settings.sqlite_wal_limit,
        )
        self._secret: str | None = None
        self._previous: tuple[str, ...] = ()
        self._vault: Vault | None = None
        self._definitions: dict[int, tuple[int, int, ProcessDefinition]] = {}
        self._processes: dict[str, tuple[float, ProcessRecord]] = {}
        self._wait_hashes: dict[int, dict[str, str]] = {}
        self._lock = threading.Lock()
        self._extensions: dict[Callable[[Runtime], object], object] = {}
        self._http: httpx.AsyncClient | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Group commit (store/group_commit.py). SQLite: every database job. PostgreSQL:
        # the hot jobs that may start over (run_db_grouped).
        self.group_commit: GroupCommit | None = None
        self.pg_group_commit: GroupCommit | None = None
        self._batch_executor: ThreadPoolExecutor | None = None
        if settings.group_commit > 1:
            if self.db.is_sqlite:
                self.group_commit = GroupCommit(
                    self.db, settings.group_commit, settings.group_commit_spacing
                )
            else:
                threads = max(1, settings.group_commit_batches)
                self._batch_executor = ThreadPoolExecutor(threads, thread_name_prefix="db-batch")
                self.pg_group_commit = GroupCommit(
                    self.db,
                    settings.group_commit,
                    executor=self._batch_executor,
                    max_batches=threads,
                )
        # Callbacks from the HTTP side (same process) that wake the engine at once.
        self.wake_listeners: list[Callable[[], None]] = []
        self.metrics = Metrics()

    def callback_form(self, name: str) -> CallbackForm:
        """The plugin's form of callback ``name`` (the generic one if none claims it)."""
        return self.plugins.form(self, name)

    # -- secrets -------------------------------------------------------------------
    @property
    def secret(self) -> str:
        if self._secret is None:
            if self.settings.secret:
                # A secret generated before ORCH_SECRET was set still opens what it sealed.
                with self.db.read() as conn:
                    generated = kv.get_setting(conn, "server_secret")
                self._previous = tuple(
                    dict.fromkeys(
                        s
                        for s in (*self.settings.previous_secrets, generated)
                        if s and s != self.settings.secret
                    )
                )
                self._secret = self.settings.secret
            else:
                with self.db.write() as conn:
                    self._secret = kv.set_setting_if_absent(conn, "server_secret", new_secret())
                self._previous = tuple(
                    s for s in self.settings.previous_secrets if s != self._secret
                )
        return self._secret

    @property
    def previous_secrets(self) -> tuple[str, ...]:
        """Earlier server secrets: they decrypt and match callback hashes, nothing more."""
        _ = self.secret
        return self._previous

    @property
    def vault(self) -> Vault:
        if self._vault is None:
            self._vault = Vault(self.secret, self.previous_secrets)
        return self._vault

    # -- processes -----------------------------------------------------------------
    def definition(
        self, version_id: int, conn: Connection | None = None
    ) -> tuple[int, int, ProcessDefinition]:
        """(process_id, version, definition) of a deployed version; versions never change,
        so they are cached forever."""
        cached = self._definitions.get(version_id)
        if cached is not None:
            return cached
        if conn is None:
            with self.db.read() as c:
                found = process_store.get_version(c, version_id)
        else:
            found = process_store.get_version(conn, version_id)
        if found is None:
            raise NotFound(f"process version {version_id}")
        process_id, version, raw = found
        entry = (process_id, version, parse_definition(raw))
        with self._lock:
            self._definitions[version_id] = entry
        return entry

    def process(self, conn: Connection, key: str | int) -> ProcessRecord:
        """The process and its current version. Cached briefly: a deploy made by another
        process is seen within PROCESS_CACHE_SECONDS; one made here, at once."""
        cached = self.cached_process(key)
        if cached is not None:
            return cached
        now = time.monotonic()
        record = process_store.get_process(conn, key)
        if record is None:
            raise NotFound(f"process {key!r}")
        with self._lock:
            self._processes[str(record.id)] = self._processes[record.slug] = (now, record)
        return record

    def cached_process(self, key: str | int) -> ProcessRecord | None:
        """``process`` from memory only (None: not cached, or cached too long ago), so a
        caller with no transaction open yet opens none when the answer is known."""
        cached = self._processes.get(str(key))
        if cached is not None and time.monotonic() - cached[0] < PROCESS_CACHE_SECONDS:
            return cached[1]
        return None

    def forget_processes(self) -> None:
        with self._lock:
            self._processes.clear()
            self._wait_hashes.clear()

    def cached_wait_node(self, conv_id: int, given: str) -> str | None:
        """The wait node whose hash is ``given``, from memory only (None: not known yet)."""
        table = self._wait_hashes.get(conv_id)
        if table is not None:
            for known, node_id in table.items():
                if hash_matches(known, given):
                    return node_id
        return None

    def wait_node_for_hash(self, conn: Connection, conv_id: int, given: str) -> str | None:
        """The wait node (or start node: incoming SMS) whose callback hash is ``given``
        (any version of the process)."""
        table = self._wait_hashes.get(conv_id)
        if table is None or given not in table:
            # URLs handed out under a previous secret keep working while it is configured.
            table = {
                node_hash(secret, conv_id, n): n
                for secret in (*reversed(self.previous_secrets), self.secret)
                for n in process_store.wait_node_ids(conn, conv_id)
            }
            with self._lock:
                self._wait_hashes[conv_id] = table
        for known, node_id in table.items():
            if hash_matches(known, given):
                return node_id
        return None

    # -- callback URLs -------------------------------------------------------------
    def node_hash(self, conv_id: int, node_id: str) -> str:
        return node_hash(self.secret, conv_id, node_id)

    def callback_urls(self, conv_id: int, node_id: str) -> dict[str, str]:
        """The three callback URL forms of a wait node (SPEC §5). The NVP form ends in
        the task id, left as the template ``{{root.task_id}}``."""
        base = self.settings.public_url.rstrip("/")
        h = self.node_hash(conv_id, node_id)
        return {
            "json": f"{base}/api/1/json/callback/{conv_id}/{h}",
            "twilio": f"{base}/api/1/json/plugins/twilio/{conv_id}/{h}",
            "nvp": f"{base}/api/1/nvp/callback/{conv_id}/{h}/{{{{root.task_id}}}}",
        }

    # -- what plugins keep per runtime ----------------------------------------------
    def extension(self, build: Callable[[Runtime], E]) -> E:
        """The object ``build`` makes for this runtime, made once (a plugin's client,
        say: ``twilio/context.twilio_of``); closed by ``aclose`` if it has ``aclose``."""
        with self._lock:
            found = self._extensions.get(build)
            if found is None:
                found = self._extensions[build] = build(self)
        return cast(E, found)

    @property
    def http(self) -> httpx.AsyncClient:
        """The client of ``api_call`` logics: no redirects followed, no cookies kept
        between tasks (each request's own headers only)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                follow_redirects=False,
                # A jar that accepts nothing: one task's cookies never reach another's call.
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
        return self._http

    # -- plumbing ------------------------------------------------------------------
    def wake(self) -> None:
        for listener in list(self.wake_listeners):
            listener()

    def prepare(self) -> None:
        """Load what later code reads inside transactions (the server secret), so that
        nothing opens a second write transaction while one is open."""
        _ = self.vault

    async def run_db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run database work. SQLite's transactions are local and take well under a
        millisecond, and it has one writer anyway: they run on this event loop, which is
        cheaper than a thread hop, and the jobs ready together share one COMMIT (see
        store/group_commit.py). PostgreSQL's wait on the network: they run in a thread."""
        if self.db.is_sqlite:
            if self.group_commit is not None:
                return await self.group_commit.run(fn, *args, **kwargs)
            return fn(*args, **kwargs)
        if self._executor is None:
            # One thread per pooled connection: more would only queue for a connection.
            self._executor = ThreadPoolExecutor(
                max_workers=self.settings.db_pool_size, thread_name_prefix="db"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def run_db_grouped(self, fn: Callable[..., T], *args: Any) -> T:
        """``run_db`` for the hot jobs (the engine's claims, step commits and deliveries,
        a send's intent, a task's creation, a callback's receipt): on PostgreSQL too,
        those ready together share one transaction, one thread hop and one COMMIT for a
        batch instead of one each. Such a job may run more than once (a batch that meets
        another process's row lock, or a failing block, starts over), so it must keep no
        state of a first run: it copies what it changes, or reads it anew. (On SQLite
        every job is grouped.)"""
        if self.pg_group_commit is not None:
            return await self.pg_group_commit.run(fn, *args)
        return await self.run_db(fn, *args)

    async def aclose(self) -> None:
        extensions, self._extensions = list(self._extensions.values()), {}
        for extension in extensions:
            if isinstance(extension, Closable):
                await extension.aclose()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        for executor in (self._executor, self._batch_executor):
            if executor is not None:
                executor.shutdown(wait=False)
        self._executor = self._batch_executor = self.pg_group_commit = None
