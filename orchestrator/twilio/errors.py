"""Twilio errors: one exception type, symbolic names (seed 004) and Twilio code titles.

A :class:`TwilioError` carries the symbolic ``error`` name used by the processes, Twilio's
numeric ``code`` when Twilio gave one (else the symbolic name), Twilio's ``message`` and
``more_info`` link, and two flags for the engine: ``retryable`` (a later retry may work)
and ``outcome_unknown`` (a create may have happened; reconcile, never re-send blindly).

``error_name(http_status, twilio_code)`` picks the name, first match wins:

==================================  =====================================================
name                                Twilio code / HTTP status
==================================  =====================================================
INVALID_TO_PHONE_NUMBER_ERROR       21211 invalid 'To'; 21214 'To' cannot be reached
                                    (calls); 21216 call blocked by Twilio; 21217 'To'
                                    not a valid number (calls); 21604 'To' required;
                                    21612 'To' not reachable via SMS; 21614 'To' not a
                                    mobile number
INVALID_FROM_PHONE_NUMBER_ERROR     21210 'From' not verified (calls); 21212 invalid
                                    'From'; 21213 'From' required (calls); 21603 'From'
                                    or MessagingServiceSid required; 21606 'From' not a
                                    message-capable Twilio number
INVALID_REGION_TO_PHONE_NUMBER_     21408 SMS not enabled for the 'To' region; 21215 geo
ERROR                               permissions do not allow the call
AUTHENTICATION_CONNECTION_ERROR     20003 authenticate / permission denied (bad
                                    credentials); any other code on an HTTP 401
PERMISSION_DENIED_ERROR             20005 account not active; 20008 resource not
                                    accessible with test credentials; 21608 / 21219
                                    trial account, 'To' not verified; any code on an
                                    HTTP 403
TOO_MANY_REQUESTS                   20429 API concurrency limit; 21611 'From' queue full;
                                    any code on an HTTP 429
NOT_FOUND                           20404 resource not found
INVALID_REQUEST_ERROR               21602 body required; 21605 body too long (old API);
                                    21610 recipient unsubscribed (STOP); 21617 body over
                                    1600 characters; 21619 body/media/content required;
                                    21620 invalid media URL; any other code on a 4xx
<HTTP status name>                  a code on a 5xx, or no code at all: 400 BAD_REQUEST,
                                    401 UNAUTHORIZED, 403 FORBIDDEN, 404 NOT_FOUND,
                                    405 METHOD_NOT_ALLOWED, 406 NOT_ACCEPTABLE,
                                    408 REQUEST_TIMEOUT, 409 CONFLICT, 410 GONE,
                                    422 UNPROCESSABLE_ENTITY, 423 LOCKED,
                                    424 FAILED_DEPENDENCY, 429 TOO_MANY_REQUESTS,
                                    500 INTERNAL_SERVER_ERROR, 501 NOT_IMPLEMENTED,
                                    502 BAD_GATEWAY, 503 SERVICE_UNAVAILABLE,
                                    504 GATEWAY_TIMEOUT
INVALID_REQUEST_ERROR               any other 4xx status without a name
UNKNOWN_ERROR                       anything else (no status, 2xx/3xx, unnamed 5xx, a
                                    code Twilio never sends on an API response)
==================================  =====================================================

So an HTTP 401/403 with a Twilio code is AUTHENTICATION_CONNECTION_ERROR /
PERMISSION_DENIED_ERROR, while a bare 401/403 (no code, e.g. a proxy) keeps the HTTP
name UNAUTHORIZED / FORBIDDEN. The client adds MISSING_INPUT / INVALID_INPUT (our own
validation, with ``field``), TWILIO_CONNECTION_ERROR (no connection after all retries)
and TWILIO_OUTCOME_UNKNOWN (a create whose answer never arrived). Full table with
explanations: ``docs/twilio-errors.md``.
"""

from __future__ import annotations

from typing import Any, NoReturn

MISSING_INPUT = "MISSING_INPUT"
INVALID_INPUT = "INVALID_INPUT"
TWILIO_CONNECTION_ERROR = "TWILIO_CONNECTION_ERROR"
TWILIO_OUTCOME_UNKNOWN = "TWILIO_OUTCOME_UNKNOWN"
AUTHENTICATION_CONNECTION_ERROR = "AUTHENTICATION_CONNECTION_ERROR"
INVALID_REQUEST_ERROR = "INVALID_REQUEST_ERROR"
INVALID_TO_PHONE_NUMBER_ERROR = "INVALID_TO_PHONE_NUMBER_ERROR"
INVALID_FROM_PHONE_NUMBER_ERROR = "INVALID_FROM_PHONE_NUMBER_ERROR"
PERMISSION_DENIED_ERROR = "PERMISSION_DENIED_ERROR"
INVALID_REGION_TO_PHONE_NUMBER_ERROR = "INVALID_REGION_TO_PHONE_NUMBER_ERROR"
UNKNOWN_ERROR = "UNKNOWN_ERROR"

HTTP_STATUS_NAMES: dict[int, str] = {
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

_CODE_NAMES: dict[int, str] = {
    **dict.fromkeys(
        (21211, 21214, 21216, 21217, 21604, 21612, 21614), INVALID_TO_PHONE_NUMBER_ERROR
    ),
    **dict.fromkeys((21210, 21212, 21213, 21603, 21606), INVALID_FROM_PHONE_NUMBER_ERROR),
    **dict.fromkeys((21408, 21215), INVALID_REGION_TO_PHONE_NUMBER_ERROR),
    20003: AUTHENTICATION_CONNECTION_ERROR,
    **dict.fromkeys((20005, 20008, 21219, 21608), PERMISSION_DENIED_ERROR),
    **dict.fromkeys((20429, 21611), "TOO_MANY_REQUESTS"),
    20404: "NOT_FOUND",
    **dict.fromkeys((21602, 21605, 21610, 21617, 21619, 21620), INVALID_REQUEST_ERROR),
}

# Symbolic names (seed 004 plus our own) and what they mean.
ERROR_DESCRIPTIONS: dict[str, str] = {
    MISSING_INPUT: "A mandatory input variable was not provided.",
    INVALID_INPUT: "The input variable has an invalid type or value.",
    TWILIO_CONNECTION_ERROR: "Unable to connect to Twilio service.",
    TWILIO_OUTCOME_UNKNOWN: "Twilio did not answer a create request; it may have been done.",
    AUTHENTICATION_CONNECTION_ERROR: "Unable to authenticate to Twilio.",
    INVALID_REQUEST_ERROR: "Invalid request.",
    INVALID_TO_PHONE_NUMBER_ERROR: "Invalid 'to' phone number.",
    INVALID_FROM_PHONE_NUMBER_ERROR: "Invalid 'from' phone number.",
    PERMISSION_DENIED_ERROR: "Lack of permission to the resource and method requested.",
    INVALID_REGION_TO_PHONE_NUMBER_ERROR: (
        "Permission to send an SMS has not been enabled for the region indicated by the "
        "'To' number."
    ),
    "TEMPLATE_READ_ERROR": "Cannot read the template.",
    "TEMPLATE_METADATA_ERROR": "The template references non-existing metadata.",
    "TEMPLATE_SYNTAX_ERROR": "Invalid template syntax.",
    UNKNOWN_ERROR: "Unexpected runtime error.",
    "BAD_REQUEST": "The server could not understand the request due to invalid syntax.",
    "UNAUTHORIZED": "The request lacks valid authentication.",
    "FORBIDDEN": "The server understood the request but refuses to authorize it.",
    "NOT_FOUND": "The server could not find what was requested.",
    "METHOD_NOT_ALLOWED": "The request method is known by the server but is not supported.",
    "NOT_ACCEPTABLE": "The server cannot produce a response matching the acceptable values.",
    "REQUEST_TIMEOUT": "The server would like to shut down this unused connection.",
    "CONFLICT": "The request conflicts with current state of the server.",
    "GONE": "No longer available.",
    "UNPROCESSABLE_ENTITY": "The server was unable to process the contained instructions.",
    "LOCKED": "The resource that is being accessed is locked.",
    "FAILED_DEPENDENCY": "The request failed due to failure of a previous request.",
    "TOO_MANY_REQUESTS": "Too many requests; back off and retry later.",
    "INTERNAL_SERVER_ERROR": "The server has encountered a situation it cannot handle.",
    "NOT_IMPLEMENTED": "The request method is not supported by the server.",
    "BAD_GATEWAY": "The server got an invalid response.",
    "SERVICE_UNAVAILABLE": "The server is not ready to handle the request.",
    "GATEWAY_TIMEOUT": "The server is acting as a gateway and cannot get a response in time.",
}

# Delivery errors: they never come back from the API, only as ``ErrorCode`` in status
# callbacks and ``error_code`` on a failed/undelivered Message.
ASYNC_ERROR_MESSAGES: dict[int, str] = {
    30001: "Queue overflow",
    30002: "Account suspended",
    30003: "Unreachable destination handset",
    30004: "Message blocked",
    30005: "Unknown destination handset",
    30006: "Landline or unreachable carrier",
    30007: "Message filtered",
    30008: "Unknown error",
    30009: "Missing inbound segment",
    30010: "Message price exceeds max price",
    30011: "MMS not supported by the receiving phone number in this region",
    30019: "Content size exceeds carrier limit",
    30022: "US A2P 10DLC - Rate Limits Exceeded",
    30032: "Toll-Free Number Has Not Been Verified",
    30034: "US A2P 10DLC - Message from an Unregistered Number",
    30036: "Validity Period Expired",
    30043: "International SMS via Domestic Gateway",
}

# Synchronous API error titles (Twilio's error dictionary).
API_ERROR_MESSAGES: dict[int, str] = {
    20003: "Permission Denied",
    20404: "Not Found",
    20429: "Too Many Requests",
    21210: "'From' phone number not verified",
    21211: "Invalid 'To' Phone Number",
    21212: "Invalid From Number (caller ID)",
    21215: "Geo Permission configuration is not permitting call",
    21216: "Call blocked by Twilio",
    21408: (
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number"
    ),
    21602: "Message body is required",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message",
    21604: "The destination 'To' phone number is required to send an SMS",
    21605: "Maximum body length is 160 characters (old API endpoint)",
    21606: "'From' is not a valid message-capable Twilio number for this destination",
    21608: "The 'To' phone number provided is not yet verified for this account",
    21610: "Attempt to send to unsubscribed recipient",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    21612: "The 'To' phone number is not currently reachable via SMS",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit",
    21619: "A Message Body, Media URL or Content SID is required",
}

# What Twilio's API answers with (the ``message`` of an error body) for a code, with the
# request's numbers in ``{to}`` / ``{from_}``; the simulator answers with these, a client
# matches on the code, never on the text. 21623 is our reading of Twilio's dictionary
# ("Number of media files exceeds allowed limit"), not verified against the live API.
API_ERROR_ANSWERS: dict[int, str] = {
    20003: "Authenticate",
    20005: "Account not active",
    20008: "Resource not accessible with Test Account Credentials",
    20404: "The requested resource was not found",
    20500: "Internal Server Error",
    21201: "No 'To' number is specified",
    21205: "Url parameter is required.",
    21211: "The 'To' number {to} is not a valid phone number.",
    21212: "The 'From' number {from_} is not a valid phone number, shortcode, or "
    "alphanumeric sender ID.",
    21213: "No 'From' number is specified",
    21214: "'To' phone number cannot be reached",
    21215: "Account not authorized to call {to}. Perhaps you need to enable some "
    "international permissions.",
    21216: "Call blocked by Twilio blocklist",
    21217: "Phone number {to} does not appear to be valid",
    21408: "Permission to send an SMS has not been enabled for the region indicated by "
    "the 'To' number: {to}.",
    21602: "Message body is required.",
    21603: "A 'From' or 'MessagingServiceSid' parameter is required to send a message.",
    21604: "A 'To' phone number is required.",
    21606: "The From phone number {from_} is not a valid, SMS-capable inbound phone "
    "number or short code for your account.",
    21608: "The number is unverified. Trial accounts cannot send messages to unverified numbers",
    21610: "Attempt to send to unsubscribed recipient",
    21611: "This 'From' number has exceeded the maximum number of queued messages",
    21612: "The 'To' phone number: {to}, is not currently reachable using the 'From' "
    "phone number: {from_} via SMS.",
    21614: "'To' number {to} is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
    21623: "Number of media files exceeds allowed limit",
}

_FIELDS = (
    "error",
    "code",
    "message",
    "url_more_info",
    "http_status",
    "field",
    "retryable",
    "outcome_unknown",
)


class TwilioError(Exception):
    """A failed Twilio call or input check; attributes are read-only after creation."""

    error: str
    code: int | str
    message: str
    url_more_info: str | None
    http_status: int | None
    field: str | None
    retryable: bool
    outcome_unknown: bool

    def __init__(
        self,
        error: str,
        message: str,
        *,
        code: int | str | None = None,
        url_more_info: str | None = None,
        http_status: int | None = None,
        field: str | None = None,
        retryable: bool = False,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        values: dict[str, object] = {
            "error": error,
            "code": error if code is None else code,
            "message": message,
            "url_more_info": url_more_info,
            "http_status": http_status,
            "field": field,
            "retryable": retryable,
            "outcome_unknown": outcome_unknown,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        # Only our fields are frozen; __traceback__, __notes__ etc. stay writable.
        if name in _FIELDS:
            _frozen(name)
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if name in _FIELDS:
            _frozen(name)
        super().__delattr__(name)

    def _kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self._kwargs(),))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._kwargs().items() if v is not None)
        return f"TwilioError({shown})"

    def __str__(self) -> str:
        text = f"{self.error} ({self.code}): {self.message}"
        return f"{text} [field={self.field}]" if self.field else text

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TwilioError):
            return NotImplemented
        return self._kwargs() == other._kwargs()

    def __hash__(self) -> int:
        return hash(tuple(self._kwargs().values()))

    def as_task_data(self) -> dict[str, object]:
        """What goes onto an escalated task (seed 000: code, message, url_more_info)."""
        data: dict[str, object] = {"error": self.error, "code": self.code, "message": self.message}
        if self.url_more_info:
            data["url_more_info"] = self.url_more_info
        if self.http_status is not None:
            data["statusCode"] = str(self.http_status)  # seed 002's name for it
        return data


def _frozen(name: str) -> NoReturn:
    raise AttributeError(f"TwilioError.{name} is read-only")


def _rebuild(kwargs: dict[str, Any]) -> TwilioError:
    return TwilioError(**kwargs)


def error_name(http_status: int | None, twilio_code: int | None) -> str:
    """The symbolic name for an API error (table in the module docstring)."""
    if twilio_code is not None and twilio_code in _CODE_NAMES:
        return _CODE_NAMES[twilio_code]
    if http_status is None:
        return UNKNOWN_ERROR
    if twilio_code is not None and 400 <= http_status < 500:
        if http_status == 401:
            return AUTHENTICATION_CONNECTION_ERROR
        if http_status == 403:
            return PERMISSION_DENIED_ERROR
        if http_status == 429:
            return "TOO_MANY_REQUESTS"
        return INVALID_REQUEST_ERROR
    if http_status in HTTP_STATUS_NAMES:
        return HTTP_STATUS_NAMES[http_status]
    return INVALID_REQUEST_ERROR if 400 <= http_status < 500 else UNKNOWN_ERROR


def describe_error_code(code: int | str | None) -> str:
    """A short title for a Twilio error code (or a symbolic name); ``Twilio error N`` else."""
    if code is None:
        return "No error code"
    if isinstance(code, str):
        text = code.strip()
        if not (text.isascii() and text.isdigit()):
            return ERROR_DESCRIPTIONS.get(text, f"Twilio error {text}")
        code = int(text)
    title = ASYNC_ERROR_MESSAGES.get(code) or API_ERROR_MESSAGES.get(code)
    return title or f"Twilio error {code}"
