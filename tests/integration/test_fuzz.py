"""Property-based tests (hypothesis): templates, callback parsing and signatures, the
process file format, and every webhook and the Corezoid API fed arbitrary requests.
Each property says what must always hold: a named error or a result, never a crash."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any
from unittest.mock import ANY
from urllib.parse import parse_qsl, urlencode

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from orchestrator.config import Settings
from orchestrator.crypto import Vault
from orchestrator.engine.definition import (
    NODE_KINDS,
    DefinitionError,
    ProcessDefinition,
    parse_definition,
)
from orchestrator.engine.plugins import known_logic_types
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.templates import TemplateError, render
from orchestrator.http.app import create_app
from orchestrator.http.webhooks import _flatten
from orchestrator.secretdata import seal, unseal
from orchestrator.services.corezoid import FormatError, parse_package, parse_time
from orchestrator.services.deploy import SHIPPED_DIR, ensure_shipped
from orchestrator.twilio.signature import compute_signature, validate_signature

# ORCH_FUZZ_SCALE=20 (say) runs a deeper search by hand; the suite stays bounded.
SCALE = float(os.environ.get("ORCH_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=int(150 * SCALE), deadline=None)
# Requests through the whole app cost more: fewer examples, still bounded.
FUZZ_APP = settings(
    max_examples=int(60 * SCALE),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

# Task data is JSON: no NaN or infinity (the API and templates refuse them).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.sampled_from(["a", "b", "Body", "items", "n", "missing", "root", "x.y"])
template_bits = st.sampled_from(
    [
        "{{",
        "}}",
        "{%",
        "%}",
        " ",
        "|",
        "(",
        ")",
        "[0]",
        ".",
        "+",
        "*",
        "'",
        "if",
        "for",
        "in",
        "endif",
        "endfor",
        "upper",
        "default",
        "__class__",
        "range(99999999)",
        "1/0",
        "~",
    ]
)
templates = st.lists(template_bits | names | st.text(max_size=4), max_size=12).map("".join)


# -- templates ---------------------------------------------------------------------
@FUZZ
@given(source=templates, data=st.dictionaries(names, json_values, max_size=4))
def test_templates_render_or_name_their_error(source: str, data: dict[str, Any]) -> None:
    try:
        result = render(source, data)
    except TemplateError as exc:
        assert exc.error.startswith("TEMPLATE_") and exc.message
        return
    if "{{" not in source and "{%" not in source:
        assert result == source
    json.dumps(result)  # whatever a template gives is task data: JSON


@FUZZ
@given(name=st.sampled_from(["a", "b", "n"]), value=json_values)
def test_a_single_expression_keeps_its_type(name: str, value: Any) -> None:
    assert render("{{ " + name + " }}", {name: value}) == value


# -- callback parsing and signatures -----------------------------------------------
form_pairs = st.lists(st.tuples(st.text(max_size=10), st.text(max_size=20)), max_size=8)


@FUZZ
@given(pairs=form_pairs)
def test_form_bodies_flatten_losslessly(pairs: list[tuple[str, str]]) -> None:
    assume(all(k for k, _ in pairs))
    parsed = parse_qsl(urlencode(pairs), keep_blank_values=True)
    assert parsed == pairs
    flat = _flatten(parsed)
    for key in {k for k, _ in pairs}:
        values = [v for k, v in pairs if k == key]
        assert flat[key] == (values[0] if len(values) == 1 else values)


@FUZZ
@given(
    pairs=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=20), max_size=8),
    path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/", max_size=20),
    token=st.text(min_size=1, max_size=32),
)
def test_signature_matches_twilio_and_detects_tampering(
    pairs: dict[str, str], path: str, token: str
) -> None:
    url = f"https://example.com/{path}"
    ours = compute_signature(url, pairs, token)
    assert ours == RequestValidator(token).compute_signature(url, pairs)
    assert validate_signature(url, pairs, ours, token)
    assert not validate_signature(url + "x", pairs, ours, token)
    assert not validate_signature(url, {**pairs, "Extra": "1"}, ours, token)


@FUZZ
@given(
    payload=st.dictionaries(
        st.sampled_from(["a", "AuthToken", "password", "api_secret", "b"]), json_values, max_size=5
    )
)
def test_seal_hides_secret_fields_and_unseal_restores_them(payload: dict[str, Any]) -> None:
    vault = Vault("fuzz-secret")
    sealed = seal(vault, payload)
    for key in ("AuthToken", "password", "api_secret"):
        assert key not in sealed
    assert unseal(vault, sealed) == payload
    assert unseal(Vault("another-secret"), sealed) == {
        k: v for k, v in payload.items() if k in ("a", "b")
    }


@FUZZ
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_corezoid_packages_parse_or_are_format_errors(raw: bytes) -> None:
    try:
        ops = parse_package(raw)
    except FormatError as exc:
        assert str(exc)
        return
    assert isinstance(ops, list) and 1 <= len(ops) <= 100


@FUZZ
@given(text=st.text(max_size=30))
def test_corezoid_times_are_plain_numbers(text: str) -> None:
    value = parse_time(text)
    if value is not None:
        assert text.replace(".", "", 1).isdigit() and text.isascii()


# -- the process file format ----------------------------------------------------------
node_ids = st.sampled_from(["start", "a", "b", "wait", "done", "failed"])
logics = st.fixed_dictionaries(
    {"type": st.sampled_from(sorted(known_logic_types())) | st.text(max_size=5)},
    optional={
        "to": node_ids,
        "on_error": node_ids,
        "if": st.lists(
            st.dictionaries(
                st.sampled_from(["param", "fun", "value", "cast"]), json_scalars, max_size=4
            ),
            max_size=2,
        ),
        "set": st.dictionaries(names, json_scalars | templates, max_size=2),
        "action": st.sampled_from(["send_sms", "send_mms", "fetch_message", "nope"]),
        "process": st.sampled_from(["sending-sms", "x"]),
        "ref": templates,
        "params": st.dictionaries(names, templates, max_size=2),
    },
)
nodes = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(NODE_KINDS) | st.text(max_size=4),
        "title": st.text(max_size=10),
        "logics": st.lists(logics, max_size=3) | json_scalars,
        "time_limit": st.fixed_dictionaries(
            {"after": st.sampled_from([30, "5 min", "x", -1]), "to": node_ids}
        )
        | json_scalars,
        "on_error": node_ids,
    },
)
process_files = st.fixed_dictionaries(
    {
        "slug": st.sampled_from(["fuzz", "Bad Slug", ""]) | st.text(max_size=5),
        "title": st.text(max_size=10),
        "nodes": st.dictionaries(node_ids, nodes, max_size=6) | json_values,
    },
    optional={
        "on_error": node_ids,
        "inputs": json_values,
        "description": json_values,
        "extra": json_values,
    },
)


SHIPPED = [yaml.safe_load(p.read_text()) for p in sorted(SHIPPED_DIR.glob("*.yaml"))]


@st.composite
def mutated_shipped(draw: st.DrawFn) -> Any:
    """A shipped (valid) process file with a few values replaced or keys removed: the
    near-valid files a person editing one produces."""
    raw = copy.deepcopy(draw(st.sampled_from(SHIPPED)))
    for _ in range(draw(st.integers(1, 3))):
        parent: Any = raw
        while True:
            keys = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            child = parent[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                parent = child
                continue
            if isinstance(parent, dict) and draw(st.booleans()):
                del parent[key]
            else:
                parent[key] = draw(json_values | node_ids | templates)
            break
    return raw


def test_shipped_process_files_parse() -> None:
    assert len(SHIPPED) >= 2
    for raw in SHIPPED:
        parse_definition(raw)


@FUZZ
@given(raw=mutated_shipped() | process_files | json_values)
def test_process_files_parse_or_name_their_error(raw: Any) -> None:
    try:
        definition = parse_definition(raw, file="fuzz.yaml")
    except DefinitionError as exc:
        assert str(exc)
        event("refused")
        return
    event("accepted")
    assert isinstance(definition, ProcessDefinition)
    assert definition.start in definition.nodes
    # The YAML form of an accepted file is accepted too, and means the same.
    again = parse_definition(yaml.safe_load(yaml.safe_dump(raw)))
    assert set(again.nodes) == set(definition.nodes) and again.start == definition.start


# -- whole requests through the app ---------------------------------------------------
KEY = "fuzz-key-0123456789abcdef"


@pytest.fixture
def app_client(sqlite_url: str) -> Iterator[tuple[Runtime, Any]]:
    settings_ = Settings(database_url=sqlite_url, api_keys=f"fz:{KEY}")
    rt = Runtime(settings_)
    ensure_shipped(rt)
    rt.prepare()
    app = create_app(settings_, runtime=rt, run_engine=False)
    yield rt, app
    rt.db.dispose()


def _post(app: Any, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://orch") as c:
            return await c.post(url, content=body, headers=headers)

    return asyncio.run(go())


content_types = st.sampled_from(
    [
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "",
        "multipart/form-data",
    ]
)
bodies = (
    st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | form_pairs.map(lambda p: urlencode(p).encode())
)


@FUZZ_APP
@given(
    form=st.sampled_from(["json", "twilio", "nvp"]),
    body=bodies,
    ctype=content_types,
    good_hash=st.booleans(),
    signature=st.text(max_size=30),
)
def test_webhooks_never_fail_on_any_request(
    app_client: tuple[Runtime, Any],
    form: str,
    body: bytes,
    ctype: str,
    good_hash: bool,
    signature: str,
) -> None:
    rt, app = app_client
    with rt.db.read() as conn:
        conv_id = rt.process(conn, "getting-callback").id
    urls = rt.callback_urls(conv_id, "waiting_for_callback")
    url = urls[form].replace("{{root.task_id}}", "0" * 24).removeprefix(rt.settings.public_url)
    if not good_hash:
        url = url.replace(rt.node_hash(conv_id, "waiting_for_callback"), "f" * 40)
    headers = {"Content-Type": ctype} if ctype else {}
    if signature.isascii() and signature.isprintable():
        headers["X-Twilio-Signature"] = signature
    r = _post(app, url, body, headers)
    assert r.status_code in (200, 400, 403, 404, 413, 415, 422), r.text
    assert "error" in r.json() or r.json()["status"] in ("accepted", "duplicate")


@FUZZ_APP
@given(
    ops=st.lists(
        json_values
        | logics.map(lambda lg: {**lg, "conv_id": "waiter"})
        | st.fixed_dictionaries(
            {
                "type": st.sampled_from(["create", "modify", "show", "x"]),
                "obj": st.sampled_from(["task", "node"]),
                "conv_id": st.sampled_from(
                    [1, 2, "1", "sending-sms", 99999999999, True, None, [1]]
                ),
            },
            optional={
                "ref": json_values,
                "obj_id": json_values,
                "data": json_values,
                "id": json_values,
            },
        ),
        min_size=1,
        max_size=4,
    )
)
def test_corezoid_api_answers_every_op(app_client: tuple[Runtime, Any], ops: list[Any]) -> None:
    _rt, app = app_client
    body = json.dumps({"ops": ops}).encode()
    at = str(time.time())
    sig = hashlib.sha1((at + KEY).encode() + body + KEY.encode()).hexdigest()
    r = _post(app, f"/api/2/json/fz/{at}/{sig}", body, {})
    assert r.status_code == 200, r.text
    answer = r.json()
    try:
        json.dumps(ops, allow_nan=False)
    except ValueError:  # Infinity or NaN somewhere: not JSON, refused as a whole
        assert answer == {"request_proc": "format_error", "description": ANY, "ops": []}
        return
    assert answer["request_proc"] == "ok" and len(answer["ops"]) == len(ops)
    assert all(isinstance(op["proc"], str) for op in answer["ops"])


# -- hostile text and field counts (issue 15) ---------------------------------------------
unstorable = st.tuples(st.text(max_size=6), st.sampled_from(["\x00", "\ud800", "\udfff"]))
hostile_text = unstorable.map(lambda t: t[0] + t[1]) | st.text(max_size=8)


@FUZZ_APP
@given(ref=hostile_text, value=hostile_text, key=hostile_text, where=st.integers(0, 4))
def test_nul_and_lone_surrogates_are_never_a_server_error(
    app_client: tuple[Runtime, Any], ref: str, value: str, key: str, where: int
) -> None:
    from urllib.parse import quote

    rt, app = app_client
    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    body = json.dumps({"ref": ref, "data": {key: value}}).encode()  # \\u escapes
    tasks = "/api/v1/processes/sending-sms/tasks"
    quoted = quote(ref.encode("utf-8", "surrogatepass"), safe="")
    if where == 0:
        r = _post(app, tasks, body, auth)
    elif where == 1:
        r = _request(app, "GET", f"{tasks}?ref={quoted}", auth)
    elif where == 2:
        r = _request(app, "GET", f"/api/v1/tasks/{quoted}", auth)
    elif where == 3:
        r = _request(app, "PATCH", f"{tasks}/{quoted or 'x'}", auth, body)
    else:
        with rt.db.read() as conn:
            conv_id = rt.process(conn, "getting-callback").id
        url = rt.callback_urls(conv_id, "waiting_for_callback")["json"]
        r = _post(app, url.removeprefix(rt.settings.public_url), body, auth)
    assert r.status_code < 500, r.text
    if any(c in ref + value + key for c in "\ud800\udfff") and where in (0, 4):
        assert r.status_code == 400 and r.json()["error"]["code"] == "MALFORMED_JSON"


@FUZZ_APP
@given(fields=st.integers(0, 3000), signed=st.booleans())
def test_form_callbacks_are_refused_above_the_field_cap(
    app_client: tuple[Runtime, Any], fields: int, signed: bool
) -> None:
    from orchestrator.http.webhooks import MAX_FORM_FIELDS

    rt, app = app_client
    with rt.db.read() as conn:
        conv_id = rt.process(conn, "getting-callback").id
    url = rt.callback_urls(conv_id, "waiting_for_callback")["twilio"]
    body = b"&".join(b"k=%d" % i for i in range(fields))
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signed:
        headers["X-Twilio-Signature"] = "x" * 28
    r = _post(app, url.removeprefix(rt.settings.public_url), body, headers)
    if fields > MAX_FORM_FIELDS:
        assert r.status_code == 413 and r.json()["error"]["code"] == "TOO_MANY_FIELDS"
    else:
        assert r.status_code == 403, r.text  # no account token to check it with


def _request(
    app: Any, method: str, url: str, headers: dict[str, str], body: bytes = b""
) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://orch") as c:
            return await c.request(method, url, content=body, headers=headers)

    return asyncio.run(go())
