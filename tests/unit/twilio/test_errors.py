from __future__ import annotations

import copy
import pickle

import pytest

from orchestrator.twilio.errors import (
    API_ERROR_ANSWERS,
    ASYNC_ERROR_MESSAGES,
    ERROR_DESCRIPTIONS,
    HTTP_STATUS_NAMES,
    TwilioError,
    describe_error_code,
    error_name,
)
from orchestrator.twilio.simulator import rules
from orchestrator.twilio.simulator.records import MessageRecord, Step


@pytest.mark.parametrize(
    ("status", "code", "name"),
    [
        (400, 21211, "INVALID_TO_PHONE_NUMBER_ERROR"),
        (400, 21214, "INVALID_TO_PHONE_NUMBER_ERROR"),
        (400, 21216, "INVALID_TO_PHONE_NUMBER_ERROR"),
        (400, 21217, "INVALID_TO_PHONE_NUMBER_ERROR"),
        (400, 21604, "INVALID_TO_PHONE_NUMBER_ERROR"),
        (400, 21612, "INVALID_TO_PHONE_NUMBER_ERROR"),
        (400, 21614, "INVALID_TO_PHONE_NUMBER_ERROR"),
        (400, 21210, "INVALID_FROM_PHONE_NUMBER_ERROR"),
        (400, 21212, "INVALID_FROM_PHONE_NUMBER_ERROR"),
        (400, 21603, "INVALID_FROM_PHONE_NUMBER_ERROR"),
        (400, 21606, "INVALID_FROM_PHONE_NUMBER_ERROR"),
        (400, 21408, "INVALID_REGION_TO_PHONE_NUMBER_ERROR"),
        (400, 21215, "INVALID_REGION_TO_PHONE_NUMBER_ERROR"),
        (401, 20003, "AUTHENTICATION_CONNECTION_ERROR"),
        (401, 20151, "AUTHENTICATION_CONNECTION_ERROR"),
        (403, 20008, "PERMISSION_DENIED_ERROR"),
        (403, 12345, "PERMISSION_DENIED_ERROR"),
        (400, 21608, "PERMISSION_DENIED_ERROR"),
        (400, 21602, "INVALID_REQUEST_ERROR"),
        (400, 21605, "INVALID_REQUEST_ERROR"),
        (400, 21610, "INVALID_REQUEST_ERROR"),
        (400, 21617, "INVALID_REQUEST_ERROR"),
        (400, 21699, "INVALID_REQUEST_ERROR"),
        (422, 99999, "INVALID_REQUEST_ERROR"),
        (429, 20429, "TOO_MANY_REQUESTS"),
        (429, 21611, "TOO_MANY_REQUESTS"),
        (404, 20404, "NOT_FOUND"),
        (500, 20500, "INTERNAL_SERVER_ERROR"),
        (503, 20503, "SERVICE_UNAVAILABLE"),
        (None, 21211, "INVALID_TO_PHONE_NUMBER_ERROR"),
        (None, 30003, "UNKNOWN_ERROR"),
        (None, None, "UNKNOWN_ERROR"),
        (418, None, "INVALID_REQUEST_ERROR"),
        (599, None, "UNKNOWN_ERROR"),
        (200, None, "UNKNOWN_ERROR"),
    ],
)
def test_error_name(status: int | None, code: int | None, name: str) -> None:
    assert error_name(status, code) == name


@pytest.mark.parametrize(("status", "name"), sorted(HTTP_STATUS_NAMES.items()))
def test_error_name_without_code_is_http_status_name(status: int, name: str) -> None:
    assert error_name(status, None) == name


def test_http_status_names_cover_seed_004() -> None:
    expected = {
        400: "BAD_REQUEST",
        401: "UNAUTHORIZED",
        403: "FORBIDDEN",
        404: "NOT_FOUND",
        405: "METHOD_NOT_ALLOWED",
        406: "NOT_ACCEPTABLE",
        408: "REQUEST_TIMEOUT",
        409: "CONFLICT",
        410: "GONE",
        422: "UNPROCESSABLE_ENTITY",
        423: "LOCKED",
        424: "FAILED_DEPENDENCY",
        429: "TOO_MANY_REQUESTS",
        500: "INTERNAL_SERVER_ERROR",
        501: "NOT_IMPLEMENTED",
        502: "BAD_GATEWAY",
        503: "SERVICE_UNAVAILABLE",
        504: "GATEWAY_TIMEOUT",
    }
    assert expected == HTTP_STATUS_NAMES
    assert set(HTTP_STATUS_NAMES.values()) <= set(ERROR_DESCRIPTIONS)


def test_twilio_error_attributes_and_task_data() -> None:
    err = TwilioError(
        "INVALID_TO_PHONE_NUMBER_ERROR",
        "The 'To' number +15005550001 is not a valid phone number.",
        code=21211,
        url_more_info="https://www.twilio.com/docs/errors/21211",
        http_status=400,
    )
    assert err.code == 21211
    assert err.http_status == 400
    assert err.retryable is False and err.outcome_unknown is False
    assert err.as_task_data() == {
        "error": "INVALID_TO_PHONE_NUMBER_ERROR",
        "code": 21211,
        "message": "The 'To' number +15005550001 is not a valid phone number.",
        "url_more_info": "https://www.twilio.com/docs/errors/21211",
        "statusCode": "400",
    }
    assert "21211" in str(err)


def test_twilio_error_code_defaults_to_name_and_no_more_info() -> None:
    err = TwilioError("MISSING_INPUT", "Number_to is required", field="Number_to")
    assert err.code == "MISSING_INPUT"
    assert err.field == "Number_to"
    assert err.as_task_data() == {
        "error": "MISSING_INPUT",
        "code": "MISSING_INPUT",
        "message": "Number_to is required",
    }


def test_twilio_error_is_frozen_but_still_raisable() -> None:
    err = TwilioError("UNKNOWN_ERROR", "boom")
    with pytest.raises(AttributeError):
        err.code = 1
    with pytest.raises(AttributeError):
        del err.message
    err.add_note("notes still work")  # __notes__ is not a field
    with pytest.raises(TwilioError) as info:
        raise err
    assert info.value is err


def test_twilio_error_pickles_and_copies() -> None:
    err = TwilioError("TWILIO_OUTCOME_UNKNOWN", "no answer", outcome_unknown=True, retryable=False)
    for clone in (pickle.loads(pickle.dumps(err)), copy.copy(err)):
        assert clone == err
        assert clone.outcome_unknown is True


def test_describe_error_code() -> None:
    assert describe_error_code(30003) == "Unreachable destination handset"
    assert describe_error_code("30007") == "Message filtered"
    assert describe_error_code(30034) == ASYNC_ERROR_MESSAGES[30034]
    assert describe_error_code(21211) == "Invalid 'To' Phone Number"
    assert describe_error_code(39999) == "Twilio error 39999"
    assert describe_error_code("TWILIO_CONNECTION_ERROR") == "Unable to connect to Twilio service."
    assert describe_error_code(None) == "No error code"


def test_async_messages_cover_common_delivery_codes() -> None:
    for code in (*range(30001, 30009), 30010, 30034):
        assert ASYNC_ERROR_MESSAGES[code]


def test_the_simulator_answers_from_the_clients_table() -> None:
    """One table: each magic number's answer is the text errors.py holds for its code, and
    a failed message's ``error_message`` is the client's title for its code."""
    magic = (rules.MESSAGE_FROM_MAGIC, rules.MESSAGE_TO_MAGIC)
    magic += (rules.CALL_FROM_MAGIC, rules.CALL_TO_MAGIC)
    for table in magic:
        for status, code in table.values():
            answer = rules._fail(status, code, "+1", "+2")
            assert answer.message == API_ERROR_ANSWERS[code].format(to="+1", from_="+2")
    record = MessageRecord("SM1", "AC1", "+1", "+2", "hi", None, [], None)
    record.advance(Step("undelivered", 30009))  # a code only errors.py's table knows
    assert record.to_json()["error_message"] == ASYNC_ERROR_MESSAGES[30009]
