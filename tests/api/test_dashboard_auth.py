"""Signing in to the dashboard: sessions, cookies, CSRF, nothing signed out."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB
from controlplane.settings import Settings
from controlplane.storage.keys import create_key
from tests.api.live import RefusingProvider

PASSWORD = "correct horse battery staple"
HTML = {"Accept": "text/html"}


async def login_token(client: TestClient[Any, Any]) -> str:
    page = await (await client.get("/login")).text()
    found = re.search(r'name="login_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


async def sign_in(
    client: TestClient[Any, Any], *, key: str = "", password: str = "", next: str = ""
) -> Any:
    form = {
        "login_token": await login_token(client),
        "api_key": key,
        "password": password,
        "next": next,
    }
    return await client.post("/login", data=form, allow_redirects=False)


async def csrf_token(client: TestClient[Any, Any]) -> str:
    page = await (await client.get("/schedules")).text()
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def app_client(settings: Settings) -> TestClient[Any, Any]:
    return TestClient(
        TestServer(make_app(settings=settings, provider=RefusingProvider()))
    )


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/runs", HTML, 303),
        ("/", HTML, 303),
        ("/schedules", HTML, 303),
        ("/runs/run_x/tests/t1", HTML, 303),
        ("/runs/run_x/artifacts/shard-0/batch-0/trace.zip", {}, 401),
        ("/runs/run_x/report/index.html", {}, 401),
        ("/runs/run_x/report/trace/sw.bundle.js", {}, 401),
        ("/runs/run_x/live", {}, 401),
        ("/runs/run_x/junit.xml", {}, 401),
        ("/anything/else", {}, 401),
    ],
)
async def test_nothing_is_served_signed_out(
    client: TestClient[Any, Any], path: str, headers: dict[str, str], status: int
) -> None:
    """Pages send the browser to sign in; files and streams answer 401."""
    answer = await client.get(path, headers=headers, allow_redirects=False)

    assert answer.status == status
    if status == 303:
        assert answer.headers["Location"].startswith("/login?next=")


async def test_the_sign_in_page_and_its_styles_are_public(
    client: TestClient[Any, Any],
) -> None:
    """Only what the sign-in page itself needs is served signed out."""
    page = await client.get("/login")
    css = await client.get("/static/dashboard.css")

    assert page.status == 200
    assert "Content-Security-Policy" in page.headers
    assert css.status == 200


async def test_an_api_key_signs_in_with_a_safe_cookie(
    client: TestClient[Any, Any],
) -> None:
    """The session cookie is HttpOnly, SameSite, for the whole site."""
    key = await create_key(client.app[DB], name="browser")

    answer = await sign_in(client, key=key, next="/schedules")
    cookie = next(
        c for c in answer.headers.getall("Set-Cookie") if "traceloom_session" in c
    )
    page = await client.get("/runs")

    assert answer.status == 303
    assert answer.headers["Location"] == "/schedules"
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie
    assert key not in cookie
    assert page.status == 200
    assert "browser" in await page.text()


async def test_cookies_are_secure_behind_https(settings: Settings) -> None:
    """With an https public URL (a TLS load balancer) cookies are Secure."""
    https = attrs.evolve(settings, public_url="https://traceloom.example.com")
    async with app_client(https) as client:
        key = await create_key(client.app[DB], name="b")
        page = await client.get("/login")
        token = re.findall(r'name="login_token" value="([^"]+)"', await page.text())
        login_cookie = page.headers["Set-Cookie"]
        # The test client talks plain HTTP, so it keeps Secure cookies to
        # itself: hand the sign-in cookie back as a browser over TLS would.
        answer = await client.post(
            "/login",
            data={"login_token": token[0], "api_key": key},
            headers={"Cookie": login_cookie.split(";")[0].split(" ", 1)[-1]},
            allow_redirects=False,
        )

    session_cookie = next(
        c for c in answer.headers.getall("Set-Cookie") if "traceloom_session" in c
    )
    assert "Secure" in login_cookie
    assert "Secure" in session_cookie


async def test_a_wrong_key_or_a_forged_form_does_not_sign_in(
    client: TestClient[Any, Any],
) -> None:
    """A wrong key is refused; a form without the page's token is refused."""
    key = await create_key(client.app[DB], name="b")

    wrong = await sign_in(client, key="tlk_" + "x" * 43)
    forged = await client.post(
        "/login", data={"login_token": "guess", "api_key": key}, allow_redirects=False
    )
    page = await client.get("/runs", headers=HTML, allow_redirects=False)

    assert wrong.status == 401
    assert "not valid" in await wrong.text()
    assert forged.status == 403
    assert page.status == 303


async def test_the_operator_password_signs_in_with_every_scope(
    settings: Settings,
) -> None:
    """The password set at start works; only its hash is held."""
    with_password = attrs.evolve(settings, operator_password=PASSWORD)
    async with app_client(with_password) as client:
        wrong = await sign_in(client, password="not it")
        right = await sign_in(client, password=PASSWORD)
        schedules = await client.get("/schedules")
        page = await schedules.text()

    assert PASSWORD not in repr(with_password)
    assert wrong.status == 401
    assert right.status == 303
    assert schedules.status == 200
    assert "operator" in page


async def test_sessions_expire(settings: Settings) -> None:
    """A session older than its lifetime signs the browser out."""
    short = attrs.evolve(settings, session_ttl_s=1.0)
    async with app_client(short) as client:
        key = await create_key(client.app[DB], name="b")
        await sign_in(client, key=key)
        fresh = await client.get("/runs", allow_redirects=False)
        await asyncio.sleep(1.5)
        stale = await client.get("/runs", headers=HTML, allow_redirects=False)

    assert fresh.status == 200
    assert stale.status == 303


async def test_revoking_the_key_ends_its_sessions(
    client: TestClient[Any, Any],
) -> None:
    """A browser signed in with a key loses access when the key is revoked."""
    key = await create_key(client.app[DB], name="b")
    await sign_in(client, key=key)
    [record] = await client.app[DB].list_keys()

    await client.app[DB].revoke_key(record.id)
    page = await client.get("/runs", headers=HTML, allow_redirects=False)

    assert page.status == 303


async def test_signing_out_ends_the_session(client: TestClient[Any, Any]) -> None:
    """After sign-out the same cookie no longer opens anything."""
    key = await create_key(client.app[DB], name="b")
    await sign_in(client, key=key)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))[
        "traceloom_session"
    ].value

    out = await client.post(
        "/logout", data={"csrf": await csrf_token(client)}, allow_redirects=False
    )
    again = await client.get(
        "/runs",
        headers={**HTML, "Cookie": f"traceloom_session={cookie}"},
        allow_redirects=False,
    )

    assert out.status == 303
    assert again.status == 303


async def test_forms_that_change_state_need_the_csrf_token_and_this_origin(
    client: TestClient[Any, Any],
) -> None:
    """No token, a wrong token or another site's Origin: refused with 403."""
    key = await create_key(client.app[DB], name="b")
    await sign_in(client, key=key)
    token = await csrf_token(client)
    form = {
        "csrf": token,
        "name": "nightly",
        "cron": "0 3 * * *",
        "timezone": "UTC",
        "gitRepo": "/nonexistent/r.git",
        "gitBranch": "main",
        "testPattern": "tests/**/*.spec.ts",
        "serverCount": "1",
        "timeout": "600",
    }

    missing = await client.post("/schedules", data={**form, "csrf": ""})
    wrong = await client.post("/schedules", data={**form, "csrf": "x" + token})
    elsewhere = await client.post(
        "/schedules", data=form, headers={"Origin": "https://evil.example"}
    )
    listed_before = await client.app[DB].fetchall("SELECT id FROM schedules")
    made = await client.post("/schedules", data=form, allow_redirects=False)
    listed_after = await client.app[DB].fetchall("SELECT id FROM schedules")
    page = await (await client.get("/schedules")).text()

    assert [missing.status, wrong.status, elsewhere.status] == [403, 403, 403]
    assert listed_before == []
    assert made.status == 303
    assert len(listed_after) == 1
    # The schedule is listed with its next fire time.
    assert "nightly" in page
    assert "03:00:00 UTC" in page


async def test_a_refused_schedule_form_keeps_its_values_and_names_the_field(
    client: TestClient[Any, Any],
) -> None:
    """A wrong cron comes back as the form, filled in, with the reason."""
    key = await create_key(client.app[DB], name="b")
    await sign_in(client, key=key)
    form = {
        "csrf": await csrf_token(client),
        "name": "nightly",
        "cron": "0 3 * *",
        "gitRepo": "/nonexistent/r.git",
        "gitBranch": "main",
        "testPattern": "tests/**/*.spec.ts",
        "serverCount": "lots",
    }

    answer = await client.post("/schedules", data=form)
    page = await answer.text()

    assert answer.status == 400
    assert 'value="0 3 * *"' in page
    assert "must have 5 fields" in page
    assert "serverCount" in page


async def test_a_refused_schedule_form_never_shows_the_git_password_again(
    client: TestClient[Any, Any],
) -> None:
    """The repository comes back without its credentials, and says so."""
    key = await create_key(client.app[DB], name="b")
    await sign_in(client, key=key)
    form = {
        "csrf": await csrf_token(client),
        "name": "nightly",
        "cron": "0 3 * *",
        "gitRepo": "https://ci:Pa55wordXYZ@git.example.com/shop.git",
        "gitBranch": "main",
        "testPattern": "tests/**/*.spec.ts",
    }

    answer = await client.post("/schedules", data=form)
    page = await answer.text()

    assert answer.status == 400
    assert "Pa55wordXYZ" not in page
    assert 'value="https://git.example.com/shop.git"' in page
    assert "type them again" in page


async def test_a_key_without_the_scope_sees_a_refusal_page(
    client: TestClient[Any, Any],
) -> None:
    """Signed in with a runs:read key, the schedules page is a 403 page."""
    key = await create_key(client.app[DB], name="reader", scopes=("runs:read",))
    await sign_in(client, key=key)

    answer = await client.get("/schedules")

    assert answer.status == 403
    assert "schedules:manage" in await answer.text()


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example", "/\\evil.example", ""]
)
async def test_signing_in_never_sends_the_browser_elsewhere(
    client: TestClient[Any, Any], target: str
) -> None:
    """``next`` only ever names a path of this site."""
    key = await create_key(client.app[DB], name="b")

    answer = await sign_in(client, key=key, next=target)

    assert answer.headers["Location"] == "/runs"


async def test_an_unknown_page_or_run_is_a_404_page_once_signed_in(
    client: TestClient[Any, Any],
) -> None:
    """Signed in, a wrong address gets an HTML page saying so, not JSON."""
    key = await create_key(client.app[DB], name="b")
    await sign_in(client, key=key)

    nowhere = await client.get("/nowhere")
    no_run = await client.get("/runs/run_missing")

    assert nowhere.status == 404
    assert nowhere.content_type == "text/html"
    assert no_run.status == 404
    assert "no run &#39;run_missing&#39;" in await no_run.text()
