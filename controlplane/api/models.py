"""Request bodies: attrs models structured and validated by cattrs.

Field names are camelCase on the wire and snake_case here. Unknown fields
are refused, numbers and strings are taken strictly (``"2"`` is not a
number, ``2.5`` is not a whole number), and every violation is reported
with its JSON path, all at once.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override
from cattrs.strategies import configure_tagged_union

from controlplane.domain import (
    GitSource,
    RunRequest,
    RunStatus,
    S3Source,
    TriggerSource,
)
from controlplane.engine.discovery import glob_to_regex
from controlplane.engine.source import url_credential_problem
from controlplane.errors import InvalidRequest
from controlplane.storage.keys import ALL_SCOPES

T = TypeVar("T")

TIMEOUT_MAX_S = 3600
_SHA = re.compile(r"[0-9a-fA-F]{7,40}\Z")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _non_empty(_inst: object, _attr: object, value: str) -> None:
    if not value.strip():
        raise ValueError("must not be empty")


def _bounded(limit: int) -> Any:
    def check(_inst: object, _attr: object, value: str) -> None:
        if len(value) > limit:
            raise ValueError(f"is longer than {limit} characters")

    return check


_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def _git_repo(_inst: object, _attr: object, value: str) -> None:
    if value != value.strip() or re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError("must not hold spaces around it or control characters")
    if value.startswith("-"):
        raise ValueError("must not start with '-'")
    problem = url_credential_problem(value)
    if problem:
        raise ValueError(problem)


def _git_branch(_inst: object, _attr: object, value: str) -> None:
    """A branch name git would accept (the rules of git check-ref-format)."""
    if (
        _REF_FORBIDDEN.search(value)
        or value.startswith(("-", "/"))
        or value.endswith(("/", ".", ".lock"))
        or value == "@"
        or any(part.startswith(".") for part in value.split("/"))
    ):
        raise ValueError("is not a valid git branch name")


@attrs.frozen(kw_only=True)
class GitSourceBody:
    type: Literal["git"]
    git_repo: str = attrs.field(validator=[_non_empty, _bounded(2048), _git_repo])
    git_branch: str = attrs.field(validator=[_non_empty, _bounded(255), _git_branch])


# S3's rules for bucket names (general purpose buckets): 3 to 63 lowercase
# letters, digits, dots and hyphens, a letter or digit at each end.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")


def _s3_bucket(_inst: object, _attr: object, value: str) -> None:
    if not _BUCKET.match(value) or ".." in value:
        raise ValueError(
            "is not an S3 bucket name (3 to 63 lowercase letters, digits,"
            " dots and hyphens)"
        )


def _s3_key(_inst: object, _attr: object, value: str) -> None:
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError("must not hold control characters")
    if len(value.encode()) > 1024:
        raise ValueError("is longer than 1024 bytes")


@attrs.frozen(kw_only=True)
class S3SourceBody:
    type: Literal["s3"]
    bucket: str = attrs.field(validator=[_non_empty, _bounded(63), _s3_bucket])
    key: str = attrs.field(validator=[_non_empty, _bounded(1024), _s3_key])


def _glob(_inst: object, _attr: object, value: str) -> None:
    try:
        glob_to_regex(value)
    except InvalidRequest as exc:
        raise ValueError(exc.fields["testPattern"]) from None


def _server_count_in_range(_inst: object, _attr: object, value: int) -> None:
    if value < 1:
        raise ValueError("must be at least 1")


def _timeout_in_range(_inst: object, _attr: object, value: int) -> None:
    if not 1 <= value <= TIMEOUT_MAX_S:
        raise ValueError(f"must be between 1 and {TIMEOUT_MAX_S} seconds")


def _sha(_inst: object, _attr: object, value: str | None) -> None:
    if value is not None and not _SHA.match(value):
        raise ValueError("must be 7 to 40 hexadecimal characters")


@attrs.frozen(kw_only=True)
class RunBody:
    test_source: GitSourceBody | S3SourceBody
    test_pattern: str = attrs.field(validator=[_non_empty, _bounded(1024), _glob])
    server_count: int = attrs.field(default=1, validator=_server_count_in_range)
    timeout: int = attrs.field(default=600, validator=_timeout_in_range)
    name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_bounded(200))
    )
    commit_sha: str | None = attrs.field(default=None, validator=_sha)
    trigger_source: TriggerSource = TriggerSource.API


@attrs.frozen(kw_only=True)
class RerunBody:
    """The optional body of ``POST /api/runs/{id}/rerun``: what may change."""

    server_count: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_server_count_in_range)
    )
    timeout: int | None = attrs.field(
        default=None, validator=attrs.validators.optional(_timeout_in_range)
    )
    name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_bounded(200))
    )


def _strict_int(value: Any, _type: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("must be a whole number")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("must be a whole number")
    return int(value)


_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def _strict_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise TypeError("must be a string")
    if _UNSTORABLE.search(value):
        # JSON allows "\u0000" and lone surrogates; no file, process or
        # database column can hold them.
        raise ValueError("must not contain NUL or unpaired surrogate characters")
    return value


def _trigger_source(value: Any, _type: type) -> TriggerSource:
    allowed = [t.value for t in TriggerSource]
    if value not in allowed:
        raise ValueError(f"must be one of {', '.join(allowed)}")
    return TriggerSource(value)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(TriggerSource, _trigger_source)
    for cls in (GitSourceBody, S3SourceBody, RunBody, RerunBody):
        renames: dict[str, Any] = {
            a.name: override(rename=_camel(a.name))
            for a in attrs.fields(cls)
            if a.name != "type"
        }
        converter.register_structure_hook(
            cls,
            make_dict_structure_fn(
                cls, converter, _cattrs_forbid_extra_keys=True, **renames
            ),
        )
    configure_tagged_union(
        GitSourceBody | S3SourceBody,
        converter,
        tag_name="type",
        tag_generator=lambda cls: "git" if cls is GitSourceBody else "s3",
    )
    return converter


converter = _make_converter()


def _field_errors(exc: BaseException, path: str, into: dict[str, str]) -> None:
    """Flatten cattrs' grouped errors into ``{"json.path": "reason"}``."""
    if isinstance(exc, cattrs.ClassValidationError):
        with_notes, without_notes = exc.group_exceptions()
        for inner, note in with_notes:
            name = _camel(str(note.name))
            _field_errors(inner, f"{path}.{name}" if path else name, into)
        for inner in without_notes:
            _field_errors(inner, path, into)
        return
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            into[f"{path}.{key}" if path else key] = "unknown field"
        return
    if isinstance(exc, KeyError):
        into[path or "body"] = "is required"
        return
    if isinstance(exc, ValueError) and "is not a valid" in str(exc):
        into[path or "body"] = "is not one of the allowed values"
        return
    into[path or "body"] = str(exc) or type(exc).__name__


def _validator_errors(inst: Any, path: str, into: dict[str, str]) -> None:
    """Run every attrs validator of ``inst`` (recursively), collecting all."""
    for field in attrs.fields(type(inst)):
        value = getattr(inst, field.name)
        name = f"{path}.{_camel(field.name)}" if path else _camel(field.name)
        if attrs.has(type(value)):
            _validator_errors(value, name, into)
        if field.validator is None:
            continue
        try:
            field.validator(inst, field, value)
        except ValueError as exc:
            into[name] = str(exc)


def parse_run_body(data: Any, *, max_server_count: int) -> RunRequest:
    """Validate a ``POST /api/runs`` body; raise InvalidRequest with every flaw."""
    if not isinstance(data, dict):
        raise InvalidRequest({"body": "must be a JSON object"})
    problems: dict[str, str] = {}
    for required in ("testSource", "testPattern"):
        if required not in data:
            problems[required] = "is required"
    source = data.get("testSource")
    if isinstance(source, dict) and source.get("type") not in ("git", "s3"):
        problems["testSource.type"] = "must be 'git' or 's3'"
    elif source is not None and not isinstance(source, dict):
        problems["testSource"] = "must be an object"
    body: RunBody | None = None
    try:
        # Types first, with validators off so that the ranges below are
        # checked all together rather than stopping at the first.
        with attrs.validators.disabled():
            body = converter.structure(data, RunBody)
    except Exception as exc:  # cattrs groups every flaw; unpacked below
        found: dict[str, str] = {}
        _field_errors(exc, "", found)
        flagged = {key.split(".")[0] for key in problems}
        for key, reason in found.items():
            if key.split(".")[0] not in flagged:
                problems[key] = reason
        # No instance to validate: range-check the raw fields of right type.
        _raw_validator_errors(RunBody, data, "", problems)
    else:
        _validator_errors(body, "", problems)
    count = data.get("serverCount", 1)
    if "serverCount" not in problems and count > max_server_count:
        problems["serverCount"] = (
            f"must be at most {max_server_count} on this control plane"
        )
    if problems or body is None:
        raise InvalidRequest(problems)
    return _to_domain(body)


def _raw_validator_errors(
    cls: type, data: dict[str, Any], path: str, into: dict[str, str]
) -> None:
    """Run the validators of ``cls`` on raw ``data`` fields not yet flagged."""
    for field in attrs.fields(cls):
        key = _camel(field.name)
        name = f"{path}.{key}" if path else key
        if key not in data or name in into:
            continue
        value = data[key]
        if field.name == "test_source":
            if f"{name}.type" not in into:
                nested = GitSourceBody if value["type"] == "git" else S3SourceBody
                _raw_validator_errors(nested, value, name, into)
        elif field.validator is not None:
            try:
                field.validator(None, field, value)
            except ValueError as exc:
                into[name] = str(exc)


def parse_rerun_body(data: Any, *, max_server_count: int) -> RerunBody:
    """Validate a rerun's body (``{}`` keeps everything of the original)."""
    if not isinstance(data, dict):
        raise InvalidRequest({"body": "must be a JSON object"})
    body = _structure_all(converter, data, RerunBody)
    if body.server_count is not None and body.server_count > max_server_count:
        raise InvalidRequest(
            {"serverCount": f"must be at most {max_server_count} on this control plane"}
        )
    return body


def _to_domain(body: RunBody) -> RunRequest:
    source: GitSource | S3Source
    if isinstance(body.test_source, GitSourceBody):
        source = GitSource(
            git_repo=body.test_source.git_repo, git_branch=body.test_source.git_branch
        )
    else:
        source = S3Source(bucket=body.test_source.bucket, key=body.test_source.key)
    return RunRequest(
        test_source=source,
        test_pattern=body.test_pattern,
        server_count=body.server_count,
        timeout=body.timeout,
        name=body.name,
        commit_sha=body.commit_sha.lower() if body.commit_sha else None,
        trigger_source=body.trigger_source,
    )


# -- queries and keys ------------------------------------------------------

LIST_LIMIT_MAX = 100
_CURSOR_ID = re.compile(r"run_[0-9a-f]{12,64}\Z")
_SHA_PREFIX = re.compile(r"[0-9a-fA-F]{4,40}\Z")


def _sha_prefix(_inst: object, _attr: object, value: str | None) -> None:
    if value is not None and not _SHA_PREFIX.match(value):
        raise ValueError("must be 4 to 40 hexadecimal characters")


def _limit_in_range(_inst: object, _attr: object, value: int) -> None:
    if not 1 <= value <= LIST_LIMIT_MAX:
        raise ValueError(f"must be between 1 and {LIST_LIMIT_MAX}")


@attrs.frozen(kw_only=True)
class RunQuery:
    """The query string of ``GET /api/runs``."""

    status: list[RunStatus] = attrs.Factory(list)
    name: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(_bounded(200))
    )
    commit_sha: str | None = attrs.field(default=None, validator=_sha_prefix)
    trigger_source: TriggerSource | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    limit: int = attrs.field(default=20, validator=_limit_in_range)
    cursor: str | None = None


def _query_int(value: Any, _type: type) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"-?[0-9]{1,9}", value):
        raise ValueError("must be a whole number")
    return int(value)


def _query_datetime(value: Any, _type: type) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError("must be an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError("must carry a time zone, e.g. 2024-06-01T12:00:00Z")
    return parsed


def _query_statuses(value: Any, _type: type) -> list[RunStatus]:
    allowed = [s.value for s in RunStatus]
    wanted = [part for part in str(value).split(",") if part]
    if not wanted or any(part not in allowed for part in wanted):
        raise ValueError(f"must be one or more of {', '.join(allowed)}")
    return [RunStatus(part) for part in wanted]


def _make_query_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(int, _query_int)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(datetime, _query_datetime)
    converter.register_structure_hook_func(
        lambda kind: kind == list[RunStatus], _query_statuses
    )
    converter.register_structure_hook(TriggerSource, _trigger_source)
    _register_camel(converter, RunQuery)
    return converter


def _register_camel(converter: cattrs.Converter, cls: type) -> None:
    renames: dict[str, Any] = {
        a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)
    }
    converter.register_structure_hook(
        cls,
        make_dict_structure_fn(
            cls, converter, _cattrs_forbid_extra_keys=True, **renames
        ),
    )


_query_converter = _make_query_converter()


def _structure_all(
    converter: cattrs.Converter, data: dict[str, Any], cls: type[T]
) -> T:
    """Structure ``data`` as ``cls``, raising InvalidRequest naming every flaw."""
    problems: dict[str, str] = {}
    try:
        with attrs.validators.disabled():
            value = converter.structure(data, cls)
    except Exception as exc:  # cattrs groups every flaw; unpacked below
        _field_errors(exc, "", problems)
        _field_validator_errors(converter, cls, data, problems)
        raise InvalidRequest(problems) from None
    _validator_errors(value, "", problems)
    if problems:
        raise InvalidRequest(problems)
    return value


def _field_validator_errors(
    converter: cattrs.Converter, cls: type, data: dict[str, Any], into: dict[str, str]
) -> None:
    """Range-check, one by one, the fields that structured on their own."""
    for field in attrs.fields(attrs.resolve_types(cls)):
        key = _camel(field.name)
        if key not in data or key in into or field.validator is None:
            continue
        try:
            value = converter.structure(data[key], field.type)
        except Exception:  # noqa: S112 - already reported by the whole-body pass
            continue
        try:
            field.validator(None, field, value)
        except ValueError as exc:
            into[key] = str(exc)


def parse_run_query(query: Mapping[str, str]) -> RunQuery:
    """Validate the filters of a run listing; repeated ``status`` values add up."""
    data: dict[str, Any] = {}
    for key, value in query.items():
        if key == "status" and key in data:
            data[key] = f"{data[key]},{value}"
        else:
            data[key] = value
    parsed = _structure_all(_query_converter, data, RunQuery)
    if parsed.cursor is not None:
        decode_cursor(parsed.cursor)
    return parsed


def encode_cursor(run_id: str) -> str:
    """An opaque cursor: where the next page of a listing starts."""
    return base64.urlsafe_b64encode(f"v1:{run_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The run id a cursor points after; InvalidRequest if it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    version, _, run_id = raw.partition(":")
    if version != "v1" or not _CURSOR_ID.match(run_id):
        raise InvalidRequest({"cursor": "is not a cursor this server gave out"})
    return run_id


def _scopes_known(_inst: object, _attr: object, value: list[str]) -> None:
    unknown = sorted(set(value) - set(ALL_SCOPES))
    if unknown:
        raise ValueError(
            f"unknown scopes {', '.join(unknown)}; use {', '.join(ALL_SCOPES)}"
        )
    if not value:
        raise ValueError("must name at least one scope")


@attrs.frozen(kw_only=True)
class KeyBody:
    """The body of ``POST /api/keys``."""

    name: str = attrs.field(validator=[_non_empty, _bounded(100)])
    scopes: list[str] = attrs.field(
        factory=lambda: list(ALL_SCOPES), validator=_scopes_known
    )


def _str_list(value: Any, _type: type) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("must be a list of strings")
    return list(value)


def _make_key_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook_func(lambda kind: kind == list[str], _str_list)
    _register_camel(converter, KeyBody)
    return converter


_key_converter = _make_key_converter()


def parse_key_body(data: Any) -> KeyBody:
    """Validate a ``POST /api/keys`` body; raise InvalidRequest with every flaw."""
    if not isinstance(data, dict):
        raise InvalidRequest({"body": "must be a JSON object"})
    body = _structure_all(_key_converter, data, KeyBody)
    # Each scope once, in a stable order, however the caller listed them.
    return attrs.evolve(body, scopes=sorted(set(body.scopes)))
