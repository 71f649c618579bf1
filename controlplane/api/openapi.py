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
            "bucket": {
                "type": "string",
                "minLength": 3,
                "maxLength": 63,
                "pattern": "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
            },
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
                    "startedAt": _nullable(_TIME),
                }
            ),
        },
        "trace": _nullable(_STRING),
        "traceUrl": _nullable(_STRING),
        "screenshots": {"type": "array", "items": _STRING},
        "screenshotUrls": {"type": "array", "items": _STRING},
    }
)

_REPORT = _obj(
    {
        "status": {
            "enum": ["building", "ready", "incomplete", "failed", "none"],
            "description": "ready: every batch's blob merged; incomplete: some"
            " are missing (listed in `missing`); failed: no report (`reason`).",
        },
        "reason": _nullable(_STRING),
        "url": _nullable(_STRING),
        "blobsExpected": _INT,
        "blobsMerged": _INT,
        "missing": {"type": "array", "items": _STRING},
        "startedAt": _TIME,
        "finishedAt": _nullable(_TIME),
    }
)

_NOTIFICATION = _obj(
    {
        "target": _STRING,
        "kind": {"enum": ["webhook", "slack", "github"]},
        "status": {"enum": ["pending", "delivered", "failed"]},
        "attempts": {
            "type": "array",
            "items": _obj(
                {
                    "number": {"type": "integer", "minimum": 1},
                    "at": _TIME,
                    "httpStatus": _nullable({"type": "integer"}),
                    "error": _nullable(_STRING),
                    "durationMs": _INT,
                }
            ),
        },
        "nextAttemptAt": _nullable(_TIME),
    }
)

_RUN_RECORD_PROPERTIES: Schema = {
    "junitUrl": _STRING,
    "report": _nullable(_REPORT),
    "notifications": {"type": "array", "items": _NOTIFICATION},
}

_SCHEDULE_PROPERTIES: Schema = {
    "id": _ID,
    "name": _STRING,
    "cron": _STRING,
    "timezone": _STRING,
    "paused": {"type": "boolean"},
    "run": {"type": "object", "description": "The run body, as for POST /api/runs."},
    "createdAt": _TIME,
    "updatedAt": _TIME,
    "nextFireAt": _nullable(_TIME),
    "url": _STRING,
    "recentSlots": {
        "type": "array",
        "items": _obj(
            {
                "slotAt": _TIME,
                "outcome": {"enum": ["fired", "missed", "refused"]},
                "runId": _nullable(_STRING),
                "runUrl": _nullable(_STRING),
                "recordedAt": _TIME,
                "detail": _nullable(_STRING),
            }
        ),
    },
}

_SURVEY_PROPERTIES: Schema = {
    "excludedFiles": {
        "type": "array",
        "description": "Spec files testPattern matched that the Playwright config"
        " would not run; left out before anything was dispatched.",
        "items": _obj({"file": _STRING, "reason": _STRING}),
    },
    "projects": {
        "type": "array",
        "description": "The config's projects: `run`, `dependency` (run first"
        " for a selected one), `notSelected` (by traceloom.yml) or"
        " `unavailable` (the host lacks its browser; its tests did not run).",
        "items": _obj(
            {
                "name": _STRING,
                "browser": _STRING,
                "status": {"enum": ["run", "dependency", "notSelected", "unavailable"]},
                "reason": _nullable(_STRING),
                "tests": _INT,
            }
        ),
    },
    "setup": {
        "type": "array",
        "description": "How traceloom.yml's setup steps went on each host.",
        "items": _obj(
            {
                "host": _STRING,
                "status": {"enum": ["passed", "failed"]},
                "exitCode": _nullable({"type": "integer"}),
                "step": _nullable(_INT),
                "timedOut": {"type": "boolean"},
                "durationS": _nullable({"type": "number", "minimum": 0}),
                "output": {
                    "type": "string",
                    "description": "The end of what the steps printed, secrets"
                    " redacted.",
                },
            }
        ),
    },
}

_SECRET = _obj(
    {
        "name": _STRING,
        "scope": {
            "type": "string",
            "description": "`*` (every run) or a repository URL (its runs only).",
        },
        "createdAt": _TIME,
        "updatedAt": _TIME,
    }
)
_SECRET_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"},
}

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
    404: "No such run, key, secret or artifact.",
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


_SCHEDULE_ID = {
    "name": "schedule_id",
    "in": "path",
    "required": True,
    "schema": _STRING,
}


def _schedule_paths() -> Schema:
    manage = "schedules:manage"
    one = _json(_ref("Schedule"), "The schedule.")
    return {
        "/api/schedules": {
            "post": _op(
                "Create a cron schedule of runs",
                _answers({201: one}, 400, 401, 403),
                scope=manage,
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("ScheduleRequest")}
                    },
                },
            ),
            "get": _op(
                "List schedules with their next fire time",
                _answers(
                    {200: _json(_ref("ScheduleList"), "Every schedule.")}, 401, 403
                ),
                scope=manage,
            ),
        },
        "/api/schedules/{schedule_id}": {
            "get": _op(
                "A schedule and its latest slots",
                _answers({200: one}, 401, 403, 404),
                scope=manage,
                parameters=[_SCHEDULE_ID],
            ),
            "delete": _op(
                "Delete a schedule (its runs stay)",
                _answers({204: {"description": "Deleted."}}, 401, 403, 404),
                scope=manage,
                parameters=[_SCHEDULE_ID],
            ),
        },
        "/api/schedules/{schedule_id}/pause": {
            "post": _op(
                "Pause a schedule: no slot fires until it is resumed",
                _answers({200: one}, 401, 403, 404),
                scope=manage,
                parameters=[_SCHEDULE_ID],
            )
        },
        "/api/schedules/{schedule_id}/resume": {
            "post": _op(
                "Resume a schedule; slots that fell while paused never run",
                _answers({200: one}, 401, 403, 404),
                scope=manage,
                parameters=[_SCHEDULE_ID],
            )
        },
    }


def _paths() -> Schema:
    read, trigger, keys = "runs:read", "runs:trigger", "keys:manage"
    return {
        **_schedule_paths(),
        "/api/runs/{run_id}/junit.xml": {
            "get": _op(
                "The run's results as JUnit XML (totals equal the run's counts)",
                _answers(
                    {
                        200: {
                            "description": "JUnit XML; flaky tests pass with a"
                            " `flaky` property and `<flakyFailure>` elements.",
                            "content": {"application/xml": {"schema": _STRING}},
                        }
                    },
                    401,
                    403,
                    404,
                ),
                scope=read,
                parameters=[_RUN_ID],
            )
        },
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
                            "description": "The file (artifacts kept locally).",
                            "content": {
                                "*/*": {"schema": {"type": "string"}},
                            },
                        },
                        307: {
                            "description": "Artifacts kept in S3: a presigned link"
                            " to the file, valid for a few minutes"
                            " (TRACELOOM_ARTIFACT_LINK_EXPIRES_S).",
                            "headers": {
                                "Location": {
                                    "description": "The presigned link.",
                                    "schema": _STRING,
                                }
                            },
                        },
                        503: _json(_ref("Error"), "The S3 store cannot be read now."),
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
                requestBody={
                    "required": False,
                    "content": {"application/json": {"schema": _ref("RerunRequest")}},
                },
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
        "/api/secrets": {
            "get": _op(
                "List secrets: names, scopes and times, never a value",
                _answers({200: _json(_ref("SecretList"), "Every secret.")}, 401, 403),
                scope="secrets:manage",
            )
        },
        "/api/secrets/{name}": {
            "put": _op(
                "Set a secret's value for a scope (never shown again)",
                _answers(
                    {
                        201: _json(_ref("Secret"), "The secret was created."),
                        200: _json(_ref("Secret"), "The secret's value was replaced."),
                    },
                    400,
                    401,
                    403,
                ),
                scope="secrets:manage",
                parameters=[_SECRET_NAME],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SecretRequest")}},
                },
            ),
            "delete": _op(
                "Delete a secret of a scope",
                {
                    "204": {"description": "Deleted."},
                    **_answers({}, 400, 401, 403, 404),
                },
                scope="secrets:manage",
                parameters=[
                    _SECRET_NAME,
                    _query(
                        "scope",
                        {"type": "string", "minLength": 1, "default": "*"},
                        "The scope of the secret to delete.",
                    ),
                ],
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
        "RerunRequest": {
            **_obj(
                {
                    "serverCount": _nullable(
                        {"type": "integer", "minimum": 1, "maximum": max_server_count}
                    ),
                    "timeout": _nullable(
                        {"type": "integer", "minimum": 1, "maximum": 3600}
                    ),
                    "name": _nullable({"type": "string", "maxLength": 200}),
                },
                required=[],
            ),
            "additionalProperties": False,
            "description": "What the rerun changes; the rest is the original's.",
        },
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
                **_SURVEY_PROPERTIES,
                "shards": {"type": "array", "items": _SHARD},
                **_RUN_RECORD_PROPERTIES,
                # Only runs on cloud instances have it.
                "fleet": _FLEET,
            },
            required=[
                *_RUN_SUMMARY_PROPERTIES,
                *_SURVEY_PROPERTIES,
                "shards",
                *_RUN_RECORD_PROPERTIES,
            ],
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
        "ScheduleRequest": {
            **_obj(
                {
                    "name": {"type": "string", "minLength": 1, "maxLength": 100},
                    "cron": {
                        "type": "string",
                        "description": "5 fields (minute hour day month"
                        " weekday, Sunday 0 or 7), or 6 with seconds first.",
                    },
                    "timezone": {"type": "string", "default": "UTC"},
                    "paused": {"type": "boolean", "default": False},
                    "run": _ref("RunRequest"),
                },
                required=["name", "cron", "run"],
            ),
            "additionalProperties": False,
        },
        "Schedule": _obj(_SCHEDULE_PROPERTIES),
        "ScheduleList": _obj(
            {"schedules": {"type": "array", "items": _ref("Schedule")}}
        ),
        "SecretRequest": {
            **_obj(
                {
                    "value": {
                        "type": "string",
                        "minLength": 4,
                        "description": "The value; at least 4 characters, so that"
                        " it can be redacted reliably.",
                    },
                    "scope": {
                        "type": "string",
                        "minLength": 1,
                        "default": "*",
                        "description": "`*` for every run, or a repository URL.",
                    },
                },
                required=["value"],
            ),
            "additionalProperties": False,
        },
        "Secret": _SECRET,
        "SecretList": _obj({"secrets": {"type": "array", "items": _ref("Secret")}}),
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
