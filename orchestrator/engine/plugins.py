"""The two interfaces a plugin fills in, and the registry of plugins.

- A **step handler** runs one logic ``type`` of a node (``api_call``, ``twilio``,
  ``set_param``…): it reads the rendered context, adds to the step's ``StepResult`` and
  says which node comes next (or ``None``: the next logic of the node runs), or raises
  ``LogicFailure`` for the node's error path.
- A **callback form** is one kind of callback a wait node receives (``twilio``, the
  generic ``json`` one, ``modify``, ``sms``…): how it is verified on receipt, which task
  it addresses and its dedupe key, whether it may still be refused when applied, and
  whether it advances the task (a provider's status must never go backwards).

A ``Plugin`` names its handlers and forms (each built with the runtime), any background
jobs it needs (Twilio's reconciliation sweep) and the logic types it adds to the process
format (engine/logic_types.py). The engine looks handlers and forms up by name only; it
imports no plugin. The default set is named by module in ``DEFAULT_PLUGINS`` (each module
has a ``plugin`` attribute), so a test or a deployment can pass another set to
``Runtime`` without touching the core.

The process format is one per Python process: parsing and the deploy-time schema know
the core's logic types, the default plugins' and those of every plugin a ``Runtime`` was
given (``known_logic_types``), since a file is parsed where no runtime is at hand (a
deploy from the command line, a test).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Connection

from orchestrator.engine.logic_types import CORE_LOGIC_TYPES, LogicType
from orchestrator.engine.process_model import Logic
from orchestrator.engine.steps import StepResult
from orchestrator.store.records import CallbackRecord, TaskRecord

R = TypeVar("R")  # the runtime plugins are built with (engine.runtime.Runtime)
T = TypeVar("T")

DEFAULT_PLUGINS = (
    "orchestrator.engine.logics",
    "orchestrator.engine.api_call",
    "orchestrator.engine.two_way",
    "orchestrator.twilio.plugin",
)


class StepHandler(Protocol):
    async def run(
        self,
        task: TaskRecord,
        process_id: int,
        logic: Logic,
        ctx: dict[str, Any],
        result: StepResult,
    ) -> str | None:
        """Run ``logic``; the next node, or None to go on with the node's next logic."""
        ...


class CallbackRefused(Exception):
    """A callback is refused on receipt (nothing is stored): ``code`` names why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Addressee:
    """Which task a callback is for, and the key that makes its retry a duplicate."""

    ref: str | None
    dedupe_key: str | None = None


class CallbackForm:
    """One kind of callback. The defaults are those of the generic form: no signature,
    the task named by ``task_id`` or ``ref`` in the body, no dedupe key, always applied."""

    # What the addressee's ref is called in an INVALID_INPUT message.
    ref_name = "the callback's ref or sid"

    def verify(
        self,
        conn: Connection,
        payload: dict[str, Any],
        *,
        url: str | None,
        signature: str | None,
        pairs: list[tuple[str, str]],
    ) -> bool:
        """Check the callback on receipt (CallbackRefused when it fails). True when it was
        checked as fully as it can be (its sender is known)."""
        return False

    def addressee(self, payload: dict[str, Any]) -> Addressee | None:
        """The task a callback is for, when the form itself names it (None: the body's
        ``task_id`` or ``ref`` does)."""
        return None

    def accepted(
        self, conn: Connection, ref: str | None, payload: dict[str, Any], confirmed: bool
    ) -> None:
        """The callback is about to be stored: note what the form keeps of it."""

    def rejection(self, conn: Connection, cb: CallbackRecord) -> str | None:
        """Why a stored callback must not be applied after all (None: it may be)."""
        return None

    def advances(self, payload: dict[str, Any], data: dict[str, Any]) -> bool:
        """Whether the callback moves the task on (False: it is recorded, not applied)."""
        return True

    def status(self, payload: dict[str, Any]) -> str | None:
        """The status the callback reports, for the log."""
        return None

    def deliver(
        self, conn: Connection, cb: CallbackRecord, owner: str | None, now: float
    ) -> list[TaskRecord] | None:
        """Apply the callback in a way of the form's own (None: the engine's usual way,
        merging it into the task it addresses)."""
        return None

    def hidden_fields(self) -> tuple[str, ...]:
        """Payload keys never merged into task data or shown in history."""
        return ()


GENERIC_FORM = CallbackForm()


class JobHost(Protocol):
    """What a background job sees of the engine that runs it (engine.worker.Worker)."""

    @property
    def stopping(self) -> bool:
        """True once the engine is stopping: the job returns soon."""
        ...

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """Database work the engine waits for when it stops."""
        ...


BackgroundJob = Callable[[R, JobHost], Coroutine[Any, Any, None]]


@dataclass
class Plugin(Generic[R]):
    """What one plugin adds to the engine. ``jobs`` run beside the engine loop while it
    runs; each is given the runtime and the engine (to know when to stop)."""

    name: str
    steps: Callable[[R], Mapping[str, StepHandler]] = lambda _rt: {}
    forms: Callable[[R], Mapping[str, CallbackForm]] = lambda _rt: {}
    jobs: Sequence[BackgroundJob[R]] = ()
    # The logic types this plugin adds to the process format, with their fields' checks.
    logic_types: Sequence[LogicType] = ()


@dataclass
class Plugins(Generic[R]):
    """The plugins of one runtime, with their callback forms (built once)."""

    plugins: list[Plugin[R]]
    _forms: dict[str, CallbackForm] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        register_logic_types(self.plugins)

    def step_handlers(self, rt: R) -> dict[str, StepHandler]:
        """Fresh handlers for one worker (a handler may keep per-worker state)."""
        handlers: dict[str, StepHandler] = {}
        for plugin in self.plugins:
            for kind, handler in plugin.steps(rt).items():
                if kind in handlers:
                    raise ValueError(f"two plugins handle the logic type {kind!r}")
                handlers[kind] = handler
        return handlers

    def form(self, rt: R, name: str) -> CallbackForm:
        if self._forms is None:
            forms: dict[str, CallbackForm] = {}
            for plugin in self.plugins:
                forms.update(plugin.forms(rt))
            self._forms = forms
        return self._forms.get(name, GENERIC_FORM)

    def hidden_fields(self, rt: R) -> tuple[str, ...]:
        """Payload keys of any form that are never merged into task data or shown."""
        self.form(rt, "")
        assert self._forms is not None
        return tuple(k for form in self._forms.values() for k in form.hidden_fields())

    def jobs(self) -> list[BackgroundJob[R]]:
        return [job for plugin in self.plugins for job in plugin.jobs]


def load(names: Iterable[str]) -> list[Plugin[Any]]:
    """The plugins of the named modules (each module's ``plugin`` attribute)."""
    found: list[Plugin[Any]] = []
    for name in names:
        plugin = importlib.import_module(name).plugin
        if not isinstance(plugin, Plugin):
            raise TypeError(f"{name}.plugin is not a Plugin")
        found.append(plugin)
    return found


class _LogicTypeRegistry:
    """The logic types the process format knows (see the module's docstring)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._types: dict[str, LogicType] = {}
        self._defaults_loaded = False
        # Bumped on each change: what is built from the types (the schema) is rebuilt.
        self.generation = 0

    def known(self) -> dict[str, LogicType]:
        with self._lock:
            if not self._defaults_loaded:
                self.add(default_logic_types())
                self._defaults_loaded = True
            return dict(self._types)

    def add(self, types: Iterable[LogicType]) -> None:
        with self._lock:
            for declared in types:
                found = self._types.get(declared.name)
                if found is declared:
                    continue
                if found is not None:
                    raise ValueError(f"two plugins declare the logic type {declared.name!r}")
                self._types[declared.name] = declared
                self.generation += 1


_registry = _LogicTypeRegistry()


def known_logic_types() -> dict[str, LogicType]:
    """Every logic type the process format knows now, by name."""
    return _registry.known()


def default_logic_types() -> list[LogicType]:
    """The core's logic types and the default plugins' (what ``process.schema.json``,
    the published schema, describes)."""
    return [*CORE_LOGIC_TYPES, *(t for plugin in load(DEFAULT_PLUGINS) for t in plugin.logic_types)]


def logic_types_generation() -> int:
    """A number that changes whenever ``known_logic_types`` does."""
    _registry.known()
    return _registry.generation


def register_logic_types(plugins: Iterable[Plugin[Any]]) -> None:
    """Add the plugins' logic types to the process format (``Plugins`` does, for the
    plugins of each runtime)."""
    _registry.known()  # the core's and the defaults' first: a clash names the newcomer
    _registry.add(t for plugin in plugins for t in plugin.logic_types)
