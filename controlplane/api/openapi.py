"""The OpenAPI 3.1 document of the whole HTTP API, served at /api/openapi.json.

It is written by hand next to the handlers and checked against the running
server by a schemathesis test, so a change to one without the other fails.
"""

from __future__ import annotations

from typing import Any

from controlplane.api.models import LIST_LIMIT_MAX, TIMEOUT_MAX_S
from controlplane.domain import RunStatus, ShardStatus, TestStatus, TriggerSource
from controlplane.storage.keys import ALL_SCOPES

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(properties: Schema, *, required: list[str] | None = None) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


_STRING = {"type": "string"}
_INT = {"type": "integer", "minimum": 0}
_TIME = {"type": "string", "format": "date-time"}
_ID = {"type": "string", "minLength": 1}

_COUNTS = _obj(
    dict.fromkeys(("total", "passed", "failed", "flaky", "skipped", "didNotRun"), _INT)
)

_GIT_SOURCE = {
    **_obj(
        {
            "type": {"const": "git"},
            "gitRepo": {"type": "string", "minLength": 1, "maxLength": 2048},
            "gitBranch": {"type": "string", "minLength": 1, "maxLength": 255},
        }
    ),
    "additionalProperties": False,
}
_S3_SOURCE = {
    **_obj(
        {
            "type": {"const": "s3"},
            "bucket": {"type": "string", "minLength": 1, "maxLength": 63},
            "key": {"type": "string", "minLength": 1, "maxLength": 1024},
        }
    ),
    "additionalProperties": False,
}


def _run_request(max_server_count: int) -> Schema:
    return {
        **_obj(
            {
                "testSource": {"oneOf": [_ref("GitSource"), _ref("S3Source")]},
                "testPattern": {"type": "string", "minLength": 1, "maxLength": 1024},
                "serverCount": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": max_server_count,
                    "default": 1,
                },
                "timeout": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": TIMEOUT_MAX_S,
                    "default": 600,
                    "description": "Per-shard timeout in seconds.",
                },
                "name": _nullable({"type": "string", "maxLength": 200}),
                "commitSha": _nullable(
                    {"type": "string", "pattern": "^[0-9a-fA-F]{7,40}$"}
                ),
                "triggerSource": {
                    "enum": [t.value for t in TriggerSource],
                    "default": "api",
                },
            },
            required=["testSource", "testPattern"],
        ),
        "additionalProperties": False,
    }


_RUN_SUMMARY_PROPERTIES: Schema = {
    "id": _ID,
    "status": {"enum": [s.value for s in RunStatus]},
    "reason": _nullable(_STRING),
    "url": _STRING,
    "name": _nullable(_STRING),
    "testSource": {"oneOf": [_ref("GitSource"), _ref("S3Source")]},
    "testPattern": _STRING,
    "serverCount": {"type": "integer", "minimum": 1},
    "timeout": {"type": "integer", "minimum": 1},
    "commitSha": _nullable(_STRING),
    "resolvedSha": _nullable(_STRING),
    "triggerSource": {"enum": [t.value for t in TriggerSource]},
    "rerunOf": _nullable(_STRING),
    "onlyTests": _nullable(
        {
            "type": "array",
            "items": _obj({"file": _STRING, "line": _INT}),
        }
    ),
    "createdAt": _TIME,
    "startedAt": _nullable(_TIME),
    "finishedAt": _nullable(_TIME),
    "firstTestAt": _nullable(_TIME),
    "durationS": _nullable({"type": "number", "minimum": 0}),
    "specFiles": _INT,
    "counts": _ref("Counts"),
}

_SHARD = _obj(
    {
        "index": _INT,
        "host": _nullable(_STRING),
        "status": {"enum": [s.value for s in ShardStatus]},
        "reason": _nullable(_STRING),
        "files": {"type": "array", "items": _STRING},
        "startedAt": _nullable(_TIME),
        "finishedAt": _nullable(_TIME),
        "testsDone": _INT,
        "counts": _ref("Counts"),
    }
)

_NUMBER = {"type": "number", "minimum": 0}

_FLEET = {
    **_obj(
        {
            "instances": {
                "type": "array",
                "items": _obj(
                    {
                        "instanceId": _STRING,
                        "instanceType": _nullable(_STRING),
                        "lifecycle": _nullable({"enum": ["spot", "on-demand"]}),
                        "zone": _nullable(_STRING),
                        "launchedAt": _nullable(_TIME),
                        "terminatedAt": _nullable(_TIME),
                        "hostHours": _NUMBER,
                        "priceUsdPerHour": _nullable(_NUMBER),
                    }
                ),
            },
            "instanceTypes": {"type": "array", "items": _STRING},
            "hostHours": _NUMBER,
            "unpricedHostHours": _NUMBER,
            "estimatedCostUsd": _NUMBER,
        }
    ),
    "description": "Cloud instances the run used (EC2 fleet only): each one's"
    " type, lifecycle and hours; the cost estimated from the Spot price each"
    " instance's type had in its zone at launch (on-demand hours are not"
    " priced).",
}

_TEST = _obj(
    {
        "id": _STRING,
        "file": _STRING,
        "line": _INT,
        "project": _STRING,
        "title": _STRING,
        "status": {"enum": [s.value for s in TestStatus]},
        "durationMs": _INT,
        "shard": _INT,
        "attempts": {
            "type": "array",
            "items": _obj(
                {
                    "retry": _INT,
                    "status": _STRING,
                    "durationMs": _INT,
                    "error": _nullable(_STRING),
                }
            ),
        },
        "trace": _nullable(_STRING),
        "traceUrl": _nullable(_STRING),
        "screenshots": {"type": "array", "items": _STRING},
        "screenshotUrls": {"type": "array", "items": _STRING},
    }
)

_KEY_PROPERTIES: Schema = {
    "id": _ID,
    "name": _STRING,
    "prefix": _STRING,
    "scopes": {"type": "array", "items": {"enum": list(ALL_SCOPES)}},
    "createdAt": _TIME,
    "lastUsedAt": _nullable(_TIME),
    "revokedAt": _nullable(_TIME),
}

_ERROR = _obj(
    {
        "error": _STRING,
        "message": _STRING,
        "fields": {
            "type": "object",
            "additionalProperties": _STRING,
            "description": "Each flawed field (a JSON path) and what is wrong.",
        },
    },
    required=["error", "message"],
)

_ERRORS = {
    400: "The body, a parameter or a header is not valid; `fields` names each.",
    401: "No API key, or one that is not valid or was revoked.",
    403: "The API key lacks the scope this operation needs.",
    404: "No such run, key or artifact.",
    409: "The run's state does not allow it (e.g. it already finished).",
    422: "The Idempotency-Key was already used with a different request.",
}


def _json(schema: Schema, description: str, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _answers(ok: dict[int, Schema], *errors: int) -> Schema:
    answers: Schema = {str(code): body for code, body in ok.items()}
    for code in errors:
        answers[str(code)] = _json(_ref("Error"), _ERRORS[code])
    if 401 in errors:
        answers["401"]["headers"] = {
            "WWW-Authenticate": {"schema": _STRING, "required": True}
        }
    return answers


def _op(summary: str, answers: Schema, *, scope: str | None, **extra: Any) -> Schema:
    op: Schema = {"summary": summary, "responses": answers, **extra}
    if scope is None:
        op["security"] = []
    else:
        op["description"] = f"Needs an API key with the `{scope}` scope."
    return op


_RUN_ID = {"name": "run_id", "in": "path", "required": True, "schema": _STRING}
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": (
        "The same key with the same body answers the run it first created"
        " (header `Idempotent-Replayed: true`), however often and however"
        " concurrently it is sent; with a different body it is refused (422)."
    ),
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
}
_CREATED = _json(
    _ref("RunCreated"),
    "The run was created (or, with a known Idempotency-Key, replayed).",
    headers={"Location": {"schema": _STRING, "required": True}},
)


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_LIST_PARAMETERS = [
    _query(
        "status",
        {
            "type": "string",
            "pattern": f"^({'|'.join(s.value for s in RunStatus)})"
            f"(,({'|'.join(s.value for s in RunStatus)}))*$",
        },
        "Only runs with one of these statuses (comma-separated).",
    ),
    _query(
        "name",
        {"type": "string", "maxLength": 200},
        "Only runs whose name contains this text (any case).",
    ),
    _query(
        "commitSha",
        {"type": "string", "pattern": "^[0-9a-fA-F]{4,40}$"},
        "Only runs whose requested or resolved commit starts with this.",
    ),
    _query(
        "triggerSource",
        {"enum": [t.value for t in TriggerSource]},
        "Only runs started this way.",
    ),
    _query("createdAfter", _TIME, "Only runs created at or after this time."),
    _query("createdBefore", _TIME, "Only runs created before this time."),
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": LIST_LIMIT_MAX, "default": 20},
        "Runs per page.",
    ),
    _query("cursor", _STRING, "The `nextCursor` of the previous page."),
]


def _paths() -> Schema:
    read, trigger, keys = "runs:read", "runs:trigger", "keys:manage"
    return {
        "/healthz": {
            "get": _op(
                "Liveness",
                _answers({200: _json(_ref("Health"), "The process answers.")}),
                scope=None,
            )
        },
        "/readyz": {
            "get": _op(
                "Readiness: the database answers and the artifact store is writable",
                _answers(
                    {
                        200: _json(_ref("Ready"), "Ready."),
                        503: _json(_ref("Ready"), "A dependency is not ready."),
                    }
                ),
                scope=None,
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": _STRING}},
                    }
                },
                scope=None,
            )
        },
        "/api/openapi.json": {
            "get": _op(
                "This document",
                _answers({200: _json({"type": "object"}, "OpenAPI 3.1.")}),
                scope=None,
            )
        },
        "/api/runs": {
            "post": _op(
                "Start a run",
                _answers({201: _CREATED}, 400, 401, 403, 422),
                scope=trigger,
                parameters=[_IDEMPOTENCY_KEY],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("RunRequest")}},
                },
            ),
            "get": _op(
                "List runs, newest first, a page at a time",
                _answers({200: _json(_ref("RunList"), "One page.")}, 400, 401, 403),
                scope=read,
                parameters=_LIST_PARAMETERS,
            ),
        },
        "/api/runs/{run_id}": {
            "get": _op(
                "A run with its shards and counts",
                _answers({200: _json(_ref("Run"), "The run.")}, 401, 403, 404),
                scope=read,
                parameters=[_RUN_ID],
            )
        },
        "/api/runs/{run_id}/tests": {
            "get": _op(
                "Every test of a run, with its attempts and artifacts",
                _answers({200: _json(_ref("TestList"), "The tests.")}, 401, 403, 404),
                scope=read,
                parameters=[_RUN_ID],
            )
        },
        "/api/runs/{run_id}/artifacts/{key}": {
            "get": _op(
                "One artifact of a run (trace, screenshot)",
                _answers(
                    {
                        200: {
                            "description": "The file.",
                            "content": {
                                "*/*": {"schema": {"type": "string"}},
                            },
                        }
                    },
                    401,
                    403,
                    404,
                ),
                scope=read,
                parameters=[
                    _RUN_ID,
                    {"name": "key", "in": "path", "required": True, "schema": _STRING},
                ],
            )
        },
        "/api/runs/{run_id}/cancel": {
            "post": _op(
                "Cancel a run in flight: its shards stop, its hosts are released",
                _answers(
                    {200: _json(_ref("Run"), "The run, now cancelled.")},
                    401,
                    403,
                    404,
                    409,
                ),
                scope=trigger,
                parameters=[_RUN_ID],
            )
        },
        "/api/runs/{run_id}/rerun": {
            "post": _op(
                "Start a new run of only the failed and not-run tests of a"
                " finished run, at the commit it ran",
                _answers({201: _CREATED}, 400, 401, 403, 404, 409, 422),
                scope=trigger,
                parameters=[_RUN_ID, _IDEMPOTENCY_KEY],
            )
        },
        "/api/keys": {
            "post": _op(
                "Create an API key (its secret is shown in this answer only)",
                _answers(
                    {201: _json(_ref("KeyCreated"), "The key and its secret.")},
                    400,
                    401,
                    403,
                ),
                scope=keys,
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("KeyRequest")}},
                },
            ),
            "get": _op(
                "List API keys, revoked ones too (never their secrets)",
                _answers({200: _json(_ref("KeyList"), "Every key.")}, 401, 403),
                scope=keys,
            ),
        },
        "/api/keys/{key_id}/revoke": {
            "post": _op(
                "Revoke an API key at once",
                _answers({200: _json(_ref("Key"), "The revoked key.")}, 401, 403, 404),
                scope=keys,
                parameters=[
                    {
                        "name": "key_id",
                        "in": "path",
                        "required": True,
                        "schema": _STRING,
                    }
                ],
            )
        },
    }


def _schemas(max_server_count: int) -> Schema:
    return {
        "Error": _ERROR,
        "Counts": _COUNTS,
        "GitSource": _GIT_SOURCE,
        "S3Source": _S3_SOURCE,
        "RunRequest": _run_request(max_server_count),
        "RunCreated": _obj(
            {
                "id": _ID,
                "status": {"enum": [s.value for s in RunStatus]},
                "url": _STRING,
                "rerunOf": _nullable(_STRING),
            }
        ),
        "RunSummary": _obj(_RUN_SUMMARY_PROPERTIES),
        "Run": _obj(
            {
                **_RUN_SUMMARY_PROPERTIES,
                "shards": {"type": "array", "items": _SHARD},
                "fleet": _FLEET,
            },
            required=[*_RUN_SUMMARY_PROPERTIES, "shards"],
        ),
        "RunList": _obj(
            {
                "runs": {"type": "array", "items": _ref("RunSummary")},
                "nextCursor": _nullable(_STRING),
            }
        ),
        "TestResult": _TEST,
        "TestList": _obj(
            {"runId": _ID, "tests": {"type": "array", "items": _ref("TestResult")}}
        ),
        "KeyRequest": {
            **_obj(
                {
                    "name": {"type": "string", "minLength": 1, "maxLength": 100},
                    "scopes": {
                        "type": "array",
                        "items": {"enum": list(ALL_SCOPES)},
                        "minItems": 1,
                        "description": "Scopes the new key gets; the calling"
                        " key must hold each. Every scope when omitted.",
                    },
                },
                required=["name"],
            ),
            "additionalProperties": False,
        },
        "Key": _obj(_KEY_PROPERTIES),
        "KeyCreated": _obj(
            {
                **_KEY_PROPERTIES,
                "key": {
                    "type": "string",
                    "pattern": "^tlk_",
                    "description": "The secret: shown once, never stored.",
                },
            }
        ),
        "KeyList": _obj({"keys": {"type": "array", "items": _ref("Key")}}),
        "Health": _obj({"status": {"const": "ok"}}),
        "Ready": _obj(
            {
                "status": {"enum": ["ready", "not_ready"]},
                "checks": _obj({"database": _STRING, "artifactStore": _STRING}),
            }
        ),
    }


def document(*, max_server_count: int = 8) -> Schema:
    """The OpenAPI 3.1 document; ``max_server_count`` is this server's limit."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "TraceLoom",
            "version": "1",
            "description": (
                "Run a Playwright suite across many machines and keep its"
                " results. Every error is a JSON body naming the field or the"
                " reason."
            ),
        },
        "paths": _paths(),
        "components": {
            "schemas": _schemas(max_server_count),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: `Authorization: Bearer tlk_...`.",
                }
            },
        },
        "security": [{"bearer": []}],
    }
