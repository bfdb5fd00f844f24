"""The generic API channel: start surveys and relay replies over JSON, for a PBX, CRM or app."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from aiohttp import web

from gateway import jsoncodec
from gateway.model import INPUT_MODES, Inbound, InputMode
from gateway.results import Rejected
from gateway.router import Gateway
from gateway.secret import same_secret

# \Z, not $: $ also matches before a final newline. No spaces nor control characters.
_ADDRESS = re.compile(r"^[a-z][a-z0-9+.-]{1,20}:[^\s\x00-\x1f\x7f]{1,200}\Z")
_TEL_NUMBER = re.compile(r"^\+?[0-9]{3,20}\Z")
# Tab and line breaks are text; NUL and the other C0 controls break CEM databases and CSVs.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ID = re.compile(r"^[A-Za-z0-9._:@-]{1,128}\Z")
# A tel: number's Persian and Arabic-Indic digits as ASCII, less its visual separators.
_TEL = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789", " -.()")
MAX_TEXT = 4096
JSON = "application/json"
MAX_CONTEXT = 50
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="seda"'}
_FORWARDED = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


class ApiChannel:
    """Routes under /api/v1: invitations, replies and the state of a response."""

    name = "api"

    def __init__(self, gateway: Gateway, spec: Mapping[str, Any]):
        self.gateway = gateway
        self.spec = spec

    @staticmethod
    def check_settings(spec: Mapping[str, Any], surveys: Collection[str] | None) -> list[str]:
        """The API channel has no settings of its own (only `enabled`)."""
        return []

    def routes(self) -> list[web.RouteDef]:
        """The API's routes."""
        return [
            web.post("/api/v1/invitations", self.invitations),
            web.post("/api/v1/messages", self.messages),
            web.get("/api/v1/responses/{response_id}", self.response),
        ]

    async def start(self) -> None:
        """Nothing to start: requests arrive through the HTTP server."""

    async def stop(self) -> None:
        """Nothing to stop."""

    async def invitations(self, request: web.Request) -> web.Response:
        """POST /api/v1/invitations: start a survey for a respondent."""
        body = await _json_body(request)
        channel = _string(body, "channel", required=False) or "api"
        if channel != "api" and channel not in self.gateway.senders:
            able = ", ".join(["api", *sorted(self.gateway.senders)])
            raise _error(422, f"channel {channel!r} is not enabled for invitations ({able})")
        line = _string(body, "line", required=False)
        try:
            address = self.gateway.invitation_address(channel, _address(body), line)
            inbound = Inbound(
                kind="start",
                channel=channel,
                provider=channel,
                address=address,
                received_at=self.gateway.clock(),
                survey_id=_string(body, "survey"),
                language=_string(body, "language", required=False),
                context=_context(body.get("context")),
                line=line,
            )
            invitation_id = _message_id(body, "invitation_id")
            result = await self.gateway.invite(inbound, invitation_id)
        except Rejected as exc:
            raise _error(exc.status, str(exc)) from None
        payload = result.to_json()
        payload["survey_id"] = inbound.survey_id
        return _json(payload, status=200 if result.duplicate else 201)

    async def messages(self, request: web.Request) -> web.Response:
        """POST /api/v1/messages: a respondent's reply; the response carries the next prompts."""
        body = await _json_body(request)
        mode = _string(body, "input_mode", required=False) or "text"
        if mode not in INPUT_MODES:
            raise _error(422, f"input_mode must be one of {', '.join(INPUT_MODES)}")
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _error(422, "text is required: the respondent's reply as a non-empty string")
        if len(text) > MAX_TEXT:
            raise _error(422, f"text is longer than {MAX_TEXT} characters")
        confidence = body.get("confidence")
        if confidence is not None and (
            type(confidence) not in (int, float) or not 0 <= confidence <= 1  # true is no number
        ):
            raise _error(422, "confidence must be a number from 0 to 1")
        input_mode: InputMode = mode  # type: ignore[assignment]
        inbound = Inbound(
            kind="reply",
            channel="api",
            provider="api",
            address=_address(body),
            received_at=self.gateway.clock(),
            text=text,
            input_mode=input_mode,
            transcript=_string(body, "transcript", required=False),
            confidence=float(confidence) if confidence is not None else None,
            message_id=_message_id(body, "message_id"),
        )
        result = await self.gateway.receive(inbound)
        return _json(result.to_json())

    async def response(self, request: web.Request) -> web.Response:
        """GET /api/v1/responses/{id}: the state of a response and its answers."""
        response_id = request.match_info["response_id"]
        if not _ID.match(response_id):
            raise _error(400, "malformed response id")
        row = await self.gateway.store.session(response_id)
        if row is None:
            raise _error(404, "no such response")
        data = row.data
        answers = await self.gateway.store.answers_for(response_id)
        return _json(
            {
                "response_id": response_id,
                "survey_id": data["survey_id"],
                "survey_version": data["survey_version"],
                "status": data["status"],
                "language": data["language"],
                "channel": data["channel"],
                "question_id": data.get("question_id"),
                "context": data.get("context", {}),
                "started_at": data["started_at"],
                "updated_at": data["updated_at"],
                "answers": answers,
            }
        )


def erasure_route(gateway: Gateway) -> web.RouteDef:
    """POST /api/v1/respondents/erase: forget everything held about one address. Served with
    or without the API channel (an SMS-only Seda must honour erasure too), behind the same
    token as the rest of /api."""

    async def erase(request: web.Request) -> web.Response:
        body = await _json_body(request)
        erased = await gateway.erase(_address(body))
        return _json(erased.to_json())

    return web.post("/api/v1/respondents/erase", erase)


def _json(payload: Any, status: int = 200) -> web.Response:
    # Persian and Arabic text stays readable in responses instead of \uXXXX escapes.
    return web.Response(body=jsoncodec.dumpb(payload), status=status, content_type=JSON)


def check_token(request: web.Request, token: str) -> None:
    """Require the configured bearer token (or, with none configured, a loopback client that
    is no reverse proxy)."""
    headers = request.headers
    if token:
        # RFC 7235 2.1: the scheme is case-insensitive, and one or more spaces follow it.
        scheme, _, given = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not same_secret(given.lstrip(" "), token):
            raise _error(401, "missing or wrong bearer token", _CHALLENGE)
        return
    # A proxy on this machine connects from loopback for clients anywhere: what it forwarded
    # is no loopback client.
    if request.remote not in ("127.0.0.1", "::1") or any(h in headers for h in _FORWARDED):
        raise _error(
            403,
            "no api.token is configured, so the API answers loopback clients only, and not"
            " through a proxy",
        )


def _error(status: int, reason: str, headers: Mapping[str, str] | None = None) -> web.HTTPException:
    body = jsoncodec.dumps({"error": reason})
    cls = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        415: web.HTTPUnsupportedMediaType,
        422: web.HTTPUnprocessableEntity,
    }[status]
    error: web.HTTPException = cls(text=body, content_type="application/json", headers=headers)
    return error


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise _error(415, "send the body as application/json")
    raw = await request.read()
    try:
        body = jsoncodec.loads(raw)
    except ValueError:  # orjson's JSONDecodeError, also for invalid UTF-8
        raise _error(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _error(400, "the body must be a JSON object")
    return body


def _string(body: Mapping[str, Any], key: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise _error(422, f"{key} is required")
        return None
    if not isinstance(value, str) or not value or len(value) > 200:
        raise _error(422, f"{key} must be a non-empty string of at most 200 characters")
    return value


def _address(body: Mapping[str, Any]) -> str:
    value = body.get("respondent")
    if isinstance(value, dict):
        value = value.get("address")
    if isinstance(value, str) and value.startswith("tel:"):
        number = value[4:].translate(_TEL)
        if not _TEL_NUMBER.match(number):
            raise _error(422, "a tel: address holds 3 to 20 digits, optionally after +")
        return f"tel:{number}"
    if not isinstance(value, str) or not _ADDRESS.match(value):
        raise _error(
            422, "respondent must be an address such as tel:+989121234567 or mailto:a@b.example"
        )
    return value


def _message_id(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not _ID.match(value):
        raise _error(422, f"{key} must be 1-128 characters of letters, digits and ._:@-")
    return value


def _context(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _error(422, "context must be an object of names to strings or numbers")
    if len(value) > MAX_CONTEXT:
        raise _error(422, f"context holds at most {MAX_CONTEXT} entries")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", key):
            raise _error(422, f"context key {key!r} must be an identifier")
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise _error(422, f"context.{key} must be a string or a number")
        text = str(item)
        if len(text) > 500:
            raise _error(422, f"context.{key} is longer than 500 characters")
        if _CONTROL.search(text):
            raise _error(422, f"context.{key} holds a control character")
        out[key] = text
    return out
