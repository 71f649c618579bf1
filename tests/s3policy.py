"""A proxy in front of moto's S3 that enforces POST policies as S3 does.

Why this stand-in exists: moto's server (5.x) stores whatever a form POST
sends and never reads its policy or signature, so against moto alone a
runner's upload grant would look unlimited. This proxy applies S3's
documented rules to every form POST (a Signature V4 over the policy, the
expiration, every condition, and every form field covered by one) and
answers 403 like S3 when one fails; what passes, and every other request,
goes to moto unchanged.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web

# Form fields S3 does not require a condition for.
_EXEMPT = {"x-amz-signature", "file", "policy"}


def _signing_key(secret: str, date: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def parse_form(content_type: str, body: bytes) -> tuple[dict[str, str], bytes]:
    """The text fields and the file's bytes of a multipart/form-data body."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    fields: dict[str, str] = {}
    data = b""
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str)
        assert isinstance(payload, bytes)
        if name == "file":
            data = payload
        else:
            fields[name] = payload.decode()
    return fields, data


def policy_violation(
    fields: dict[str, str], size: int, bucket: str, secret: str
) -> str | None:
    """Why S3 would refuse this POST, or None if it would store it."""
    policy_b64 = fields.get("policy", "")
    credential = fields.get("x-amz-credential", "")
    try:
        _access, date, region, _service, _term = credential.split("/")
        policy = json.loads(base64.b64decode(policy_b64))
    except ValueError:
        return "malformed policy or credential"
    expected = hmac.new(
        _signing_key(secret, date, region), policy_b64.encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, fields.get("x-amz-signature", "")):
        return "SignatureDoesNotMatch"
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    if expires.timestamp() < time.time():
        return "policy expired"
    values = {**fields, "bucket": bucket}
    covered = {"bucket"}
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            [(name, wanted)] = condition.items()
            condition = ["eq", f"${name}", wanted]
        op, *args = condition
        if op == "content-length-range":
            low, high = args
            if not low <= size <= high:
                return f"file of {size} bytes is outside [{low}, {high}]"
            continue
        name, wanted = args[0].lstrip("$"), args[1]
        covered.add(name)
        value = values.get(name)
        if value is None:
            return f"missing field {name}"
        if op == "eq" and value != wanted:
            return f"{name} is not {wanted!r}"
        if op == "starts-with" and not value.startswith(wanted):
            return f"{name} {value!r} does not start with {wanted!r}"
    extra = set(fields) - covered - _EXEMPT
    extra = {f for f in extra if not f.startswith("x-ignore-")}
    if extra:
        return f"fields not covered by the policy: {sorted(extra)}"
    return None


@asynccontextmanager
async def policy_checking_proxy(upstream: str, secret: str) -> AsyncIterator[str]:
    """Serve the proxy on a loopback port; yield its URL."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        content_type = request.headers.get("Content-Type", "")
        bucket = request.path.strip("/")
        if (
            request.method == "POST"
            and content_type.startswith("multipart/form-data")
            and "/" not in bucket
        ):
            fields, data = parse_form(content_type, body)
            why = policy_violation(fields, len(data), bucket, secret)
            if why is not None:
                return web.Response(
                    status=403,
                    content_type="application/xml",
                    text=f"<Error><Code>AccessDenied</Code><Message>{why}"
                    "</Message></Error>",
                )
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in ("host", "content-length", "transfer-encoding")
        }
        async with session.request(
            request.method,
            upstream + request.path_qs,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
        ) as answer:
            payload = await answer.read()
            passed: dict[str, Any] = {
                k: v
                for k, v in answer.headers.items()
                if k.lower()
                not in ("content-length", "transfer-encoding", "connection")
            }
            return web.Response(status=answer.status, body=payload, headers=passed)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
        await session.close()
