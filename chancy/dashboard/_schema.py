"""The JSON API's contract in one place: each endpoint's parameters, body and answers as JSON
Schema, from which both the OpenAPI document and the checking of every request are made (so
the two cannot disagree; tests/dashboard fuzzes the API against that document).

The checker covers the part of JSON Schema the endpoints use: `type` (with OpenAPI 3.0's
`nullable`), `enum`, `minimum`/`maximum`, `minLength`/`maxLength`, `pattern`, `format`
(`date-time`, `uuid`), `properties`/`required`/`additionalProperties`, `items`/`maxItems`,
`minProperties`/`maxProperties`, `oneOf`.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from chancy.errors import ChancyError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response


class Invalid(ChancyError, ValueError):
    """A request that does not match its schema (answered 400 with this message)."""


_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)


def parse_datetime(text: str) -> datetime:
    """An RFC 3339 date-time (a leap second reads as :59, digits past microseconds are
    dropped); `Invalid` otherwise."""
    match = _RFC3339.match(text)
    if not match:
        raise Invalid(f"expected an RFC 3339 date-time such as 2026-01-31T12:00:00Z: {text!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micro = int((fraction or ".0")[1:7].ljust(6, "0"))
    try:
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59), micro
        )
        offset = "+00:00" if zone in ("Z", "z") else zone
        return datetime.fromisoformat(moment.isoformat() + offset).astimezone(UTC)
    except (ValueError, OverflowError):
        raise Invalid(f"not a valid date-time: {text!r}") from None


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    return True


def check(value: Any, schema: dict[str, Any], where: str) -> None:
    """Raise `Invalid` naming `where` when `value` does not match `schema`."""
    if value is None:
        if schema.get("nullable"):
            return
        if "type" in schema:
            raise Invalid(f"{where}: must not be null")
    kind = schema.get("type")
    if kind is not None and not _type_ok(value, kind):
        raise Invalid(f"{where}: expected {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    if "enum" in schema and value not in schema["enum"]:
        raise Invalid(f"{where}: expected one of {', '.join(map(str, schema['enum']))}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise Invalid(f"{where}: must be at least {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise Invalid(f"{where}: must be at most {schema['maximum']}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            raise Invalid(f"{where}: must not be empty")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise Invalid(f"{where}: at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            raise Invalid(f"{where}: not in the expected form ({schema['pattern']})")
        fmt = schema.get("format")
        if fmt == "date-time":
            parse_datetime(value)
        elif fmt == "uuid":
            try:
                uuid.UUID(value)
            except ValueError:
                raise Invalid(f"{where}: expected a job id (a UUID)") from None
    if isinstance(value, dict):
        props: dict[str, Any] = schema.get("properties", {})
        for name in schema.get("required", ()):
            if name not in value:
                raise Invalid(f"{where}: {name} is required")
        if schema.get("additionalProperties") is False:
            extra = sorted(set(value) - set(props))
            if extra:
                raise Invalid(f"{where}: unknown field {extra[0]!r}")
        if len(value) < schema.get("minProperties", 0):
            raise Invalid(f"{where}: must not be empty")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            raise Invalid(f"{where}: at most {schema['maxProperties']} of its fields")
        for name, sub in props.items():
            if name in value:
                check(value[name], sub, f"{where}.{name}")
    if "oneOf" in schema:
        matching = 0
        for sub in schema["oneOf"]:
            try:
                check(value, sub, where)
            except Invalid:
                continue
            matching += 1
        if matching != 1:
            raise Invalid(f"{where}: {schema.get('description', 'does not match one form')}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            raise Invalid(f"{where}: at most {schema['maxItems']} items")
        if len(value) < schema.get("minItems", 0):
            raise Invalid(f"{where}: at least {schema['minItems']} items")
        if "items" in schema:
            for index, item in enumerate(value):
                check(item, schema["items"], f"{where}[{index}]")


def from_query(text: str, schema: dict[str, Any], where: str) -> Any:
    """A query or path parameter's text as the value its schema describes, checked."""
    kind = schema.get("type")
    value: Any = text
    if kind == "integer":
        if not re.fullmatch(r"[+-]?\d{1,18}", text):
            raise Invalid(f"{where}: expected an integer")
        value = int(text)
    elif kind == "number":
        try:
            value = float(text)
        except ValueError:
            raise Invalid(f"{where}: expected a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise Invalid(f"{where}: expected a finite number")
    elif kind == "boolean":
        if text not in ("true", "false"):
            raise Invalid(f"{where}: expected true or false")
        value = text == "true"
    check(value, schema, where)
    return value


# -- the pieces of schemas the endpoints share ---------------------------------------------

#: Text that PostgreSQL can store (no NUL character).
TEXT: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 500,
    "pattern": "^[^\\x00]*$",
}
QUEUE_NAME: dict[str, Any] = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$",
    "description": "a queue name",
}
JOB_ID: dict[str, Any] = {"type": "string", "format": "uuid", "description": "a job id (UUIDv7)"}
STATE: dict[str, Any] = {
    "type": "string",
    "enum": ["pending", "running", "retrying", "succeeded", "failed"],
}
WHEN: dict[str, Any] = {"type": "string", "format": "date-time"}
NULL_WHEN: dict[str, Any] = {**WHEN, "nullable": True}


def obj(properties: dict[str, Any], required: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = list(required)
    return schema


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def array(items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "array", "items": items, **extra}


ANY_JSON: dict[str, Any] = {"nullable": True, "description": "any JSON value"}
ERROR = obj({"error": {"type": "string"}}, ("error",))


@dataclasses.dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query" or "path"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One operation of the API under `/api/v1`."""

    method: str
    path: str
    operation: str
    summary: str
    handler: Callable[[Request, dict[str, Any], Any], Awaitable[Response]]
    ok: dict[str, Any]
    params: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    body_required: bool = False
    #: Changes something: refused in read-only mode, needs CSRF with a cookie session.
    mutation: bool = False
    #: Needs no authentication (the health probe).
    public: bool = False
    ok_status: int = 200
    description: str = ""
    extra_statuses: tuple[int, ...] = ()
    #: Other success statuses, answering the same schema as `ok_status` (201: created).
    also_ok: tuple[int, ...] = ()

    def parse(self, path_params: dict[str, str], query: Any) -> dict[str, Any]:
        """The parameters of a request, converted and checked (`Invalid`)."""
        values: dict[str, Any] = {}
        known = {p.name for p in self.params if p.where == "query"}
        for name in query:
            if name not in known:
                raise Invalid(f"unknown query parameter {name!r}")
        for param in self.params:
            if param.where == "path":
                raw = path_params.get(param.name)
            else:
                given = query.getlist(param.name)
                if len(given) > 1:
                    raise Invalid(f"{param.name}: given more than once")
                raw = given[0] if given else None
            if raw is None:
                if param.required:
                    raise Invalid(f"{param.name} is required")
                continue
            values[param.name] = from_query(raw, param.schema, param.name)
        return values


_STATUS_TEXT = {
    400: "the request is malformed (the error says why)",
    401: "not authenticated: send Authorization: Bearer <token>",
    403: "not allowed (read-only dashboard, or a missing CSRF token)",
    404: "no such queue, job or route",
    409: "conflicts with the current state",
    503: "the database does not answer",
}


def openapi(
    endpoints: list[Endpoint], *, title: str, version: str, server: str = "/api/v1"
) -> dict[str, Any]:
    """The OpenAPI 3.0 document of `endpoints` (served at `/api/v1/openapi.json`)."""
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        responses: dict[str, Any] = {
            str(status): {
                "description": "success" if status != 201 else "created",
                "content": {"application/json": {"schema": ep.ok}},
            }
            for status in (ep.ok_status, *ep.also_ok)
        }
        statuses = [400, 404] if ep.public else [400, 401, 403, 404]
        for status in [*statuses, *ep.extra_statuses]:
            responses[str(status)] = {
                "description": _STATUS_TEXT[status],
                "content": {"application/json": {"schema": ERROR}},
            }
        op: dict[str, Any] = {
            "operationId": ep.operation,
            "summary": ep.summary,
            "responses": responses,
        }
        if ep.description:
            op["description"] = ep.description
        if ep.params:
            op["parameters"] = [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required or p.where == "path",
                    "schema": p.schema,
                    **({"description": p.description} if p.description else {}),
                }
                for p in ep.params
            ]
        if ep.body is not None:
            op["requestBody"] = {
                "required": ep.body_required,
                "content": {"application/json": {"schema": ep.body}},
            }
        if ep.public:
            op["security"] = []
        paths.setdefault(ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": version,
            "description": "The Chancy dashboard's JSON API (docs/dashboard.md).",
        },
        "servers": [{"url": server}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "chancy_dashboard"},
            }
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": paths,
    }
