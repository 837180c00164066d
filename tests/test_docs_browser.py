"""/docs and /redoc work in a real browser at a field office with no internet.

A real server (uvicorn on a migrated SQLite file) serves the pages; headless Chromium,
Debian's own build driven by Playwright (never a browser Playwright downloads), loads
them with every request to a host other than this machine aborted and recorded, and
with its resolver unable to find any other host at all. Each test ends by checking
that the pages asked for nothing outside: Swagger UI, ReDoc, their stylesheet and
favicon all come from the app (`/docs-assets`, from the pinned `fastapi-offline`), and
that their own Content-Security-Policy blocked nothing they need (only ReDoc's logo from
Redocly's CDN, which is what it is for).

A supervisor then does what the README tells them to: Authorize with a username and
password (no device id), and Try it out on their own account and their settlements.

Without /usr/bin/chromium these tests skip and say why; under CI=true they fail
(`.ci/run` installs chromium first).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, Route, async_playwright, expect

from app.auth.models import Role
from app.core.db import create_engine, create_sessionmaker
from app.main import DOCS_ASSETS_URL, create_app
from tests.conftest import make_settings
from tests.databases import migrated_database, run_blocking
from tests.factories import PASSWORD, make_settlement, make_user
from tests.servers import ServerProcess

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
#: Hosts of this machine; a request to any other host is what a field office cannot do.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: Chromium's own resolver finds no other host either (its background traffic included).
OFFLINE_RESOLVER = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
TIMEOUT_MS = 10_000
SUPERVISOR = "olena-supervisor"
TOKEN_PATH = "/api/v1/auth/token"
#: Tells the test of every Content-Security-Policy violation on the page.
REPORT_CSP_VIOLATIONS = """
document.addEventListener('securitypolicyviolation', (event) =>
    window.reportCspViolation(event.effectiveDirective, event.blockedURI));
"""


def chromium_or_skip() -> Path:
    """Debian's chromium; a skip that says why without it, a failure under CI=true."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = (
        f"Debian's chromium is not installed at {CHROMIUM} (apt-get install chromium): "
        "the offline /docs and /redoc checks need a real browser"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}; it is required under CI=true", pytrace=False)
    pytest.skip(reason)


@dataclass
class Site:
    """The running server, and the settlement its supervisor looks after."""

    server: ServerProcess
    pcode: str

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def where(self, what: str) -> str:
        return f"{what}\n--- server log tail:\n{self.server.log_tail(40)}"


async def _seed(database_url: str) -> str:
    engine = create_engine(make_settings(database_url))
    try:
        async with create_sessionmaker(engine)() as session:
            settlement = await make_settlement(session)
            await make_user(
                session, Role.supervisor, username=SUPERVISOR, settlements=[settlement.pcode]
            )
            return settlement.pcode
    finally:
        await engine.dispose()


def _seeded(database_url: str) -> str:
    pcodes: list[str] = []

    def seed() -> None:
        pcodes.append(asyncio.run(_seed(database_url)))

    run_blocking(seed)
    return pcodes[0]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    chromium_or_skip()  # before starting a server the tests could not use
    with migrated_database("sqlite", tmp_path_factory.mktemp("docs")) as url:
        pcode = _seeded(url)
        with ServerProcess(url, workers=1) as server:
            yield Site(server, pcode)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_or_skip()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=[OFFLINE_RESOLVER]
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Offline:
    """Aborts, and remembers, every request a page makes to another host, and what the
    page's Content-Security-Policy blocked."""

    blocked: list[str] = field(default_factory=list)
    #: Images from another host the policy kept out: what it is for, offline.
    kept_out: list[str] = field(default_factory=list)
    #: Anything else it blocked: a script, style, worker or call the page needs.
    broken: list[str] = field(default_factory=list)

    def csp_violation(self, directive: str, uri: str) -> None:
        if directive == "img-src" and urlsplit(uri).hostname not in {*LOCAL_HOSTS, None}:
            self.kept_out.append(uri)
        else:
            self.broken.append(f"{directive} {uri}")

    async def route(self, route: Route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOCAL_HOSTS:
            await route.continue_()
        else:
            self.blocked.append(url)
            await route.abort("internetdisconnected")

    def check(self, where: str) -> None:
        assert self.blocked == [], f"{where} tried to reach the internet: {self.blocked}"
        assert self.broken == [], f"{where}'s Content-Security-Policy blocked {self.broken}"


@asynccontextmanager
async def offline_page(browser: Browser) -> AsyncIterator[tuple[Page, Offline]]:
    """A page of its own browser context that cannot reach the internet; on the way out,
    a check that it never tried."""
    offline = Offline()
    context = await browser.new_context(service_workers="block")
    context.set_default_timeout(TIMEOUT_MS)
    await context.route("**/*", offline.route)
    await context.expose_function("reportCspViolation", offline.csp_violation)
    await context.add_init_script(REPORT_CSP_VIOLATIONS)
    try:
        yield await context.new_page(), offline
    finally:
        await context.close()
    offline.check("the page")


def operation(page: Page, path: str, method: str = "get") -> Locator:
    """The operation block of `method path` in Swagger UI."""
    return page.locator(f".opblock.opblock-{method}").filter(
        has=page.locator(f'.opblock-summary-path[data-path="{path}"]')
    )


async def open_docs(page: Page, site: Site, offline: Offline) -> None:
    response = await page.goto(f"{site.base_url}/docs")
    assert response is not None
    assert response.status == 200
    # The scripts have run (or failed) by the load event: anything asked of the internet
    # by then is why the page would not work offline, so say that rather than time out.
    offline.check("/docs")
    pull = operation(page, "/api/v1/sync/pull")
    await pull.wait_for()
    assert re.search(r"-sync\\?:pull$", await pull.get_attribute("id") or ""), "no sync:pull"


async def authorize(page: Page, username: str, password: str) -> None:
    """Authorize with a username and password, as the README tells a supervisor."""
    await page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".modal-ux")
    await dialog.locator("#oauth_username").fill(username)
    await dialog.locator("#oauth_password").fill(password)
    async with page.expect_response(lambda r: urlsplit(r.url).path == TOKEN_PATH) as signed_in:
        await dialog.locator(".auth-btn-wrapper button.authorize").click()
    response = await signed_in.value
    assert response.status == 200, await response.text()
    # A supervisor has no phone: the sign-in carries no device id (client_id).
    assert "client_id" not in parse_qs(response.request.post_data or "")
    await dialog.get_by_text("Authorized", exact=True).wait_for()
    await dialog.locator(".auth-btn-wrapper button", has_text="Logout").wait_for()
    await dialog.locator("button.btn-done").click()
    await dialog.wait_for(state="detached")
    await page.locator(".auth-wrapper button.authorize.locked").wait_for()


async def try_it_out(page: Page, site: Site, path: str) -> Locator:
    """Try it out, then Execute, on `GET path`; check the call and return its response row."""
    block = operation(page, path)
    await block.locator(".opblock-summary").click()
    await block.get_by_role("button", name="Try it out").click()
    async with page.expect_response(lambda r: urlsplit(r.url).path == path) as answered:
        await block.get_by_role("button", name="Execute").click()
    response = await answered.value
    body = await response.text()
    assert response.status == 200, site.where(f"GET {path} answered {response.status}: {body}")
    assert response.request.headers.get("authorization", "").startswith("Bearer ")
    row = block.locator(".live-responses-table tr.response")
    await expect(row.locator("td.response-col_status")).to_have_text("200")
    return row


@pytest.fixture(scope="module")
async def docs(browser: Browser, site: Site) -> AsyncIterator[Page]:
    """/docs loaded with no internet, its operations shown, and the supervisor signed in
    through Authorize with their username and password."""
    async with offline_page(browser) as (page, offline):
        await open_docs(page, site, offline)
        await authorize(page, SUPERVISOR, PASSWORD)
        yield page


# --- The tests ----------------------------------------------------------------------------


async def test_a_supervisor_reads_their_account_in_the_docs(docs: Page, site: Site) -> None:
    row = await try_it_out(docs, site, "/api/v1/auth/me")
    body = row.locator("td.response-col_description")
    await expect(body).to_contain_text(f'"username": "{SUPERVISOR}"')
    await expect(body).to_contain_text('"role": "supervisor"')


async def test_a_supervisor_lists_their_settlements_in_the_docs(docs: Page, site: Site) -> None:
    schema = await (await docs.request.get(f"{site.base_url}/openapi.json")).json()
    if "get" not in schema["paths"].get("/api/v1/settlements", {}):
        pytest.fail(
            "GET /api/v1/settlements is not in the API (yet): a supervisor cannot list their "
            "settlements in /docs",
            pytrace=False,
        )
    row = await try_it_out(docs, site, "/api/v1/settlements")
    await expect(row.locator("td.response-col_description")).to_contain_text(site.pcode)


async def test_redoc_loads_offline(browser: Browser, site: Site) -> None:
    async with offline_page(browser) as (page, offline):
        response = await page.goto(f"{site.base_url}/redoc")
        assert response is not None
        assert response.status == 200
        offline.check("/redoc")
        await expect(page.locator("h1").first).to_contain_text("FieldSync")
        await expect(page.get_by_text("All data shown in examples is synthetic.")).to_be_visible()
        await page.get_by_role("menuitem", name="Auth", exact=True).click()
        sign_in = page.locator('h2:has(a[href$="/operation/auth:token"])')
        await expect(sign_in).to_have_text("Sign in")
        await expect(sign_in).to_be_in_viewport()
        # Violations are reported to the test: the policy kept ReDoc's logo on Redocly's
        # CDN out (the footer loads it once the page has rendered).
        for _ in range(TIMEOUT_MS // 100):
            if "cdn.redoc.ly" in {urlsplit(u).hostname for u in offline.kept_out}:
                break
            await asyncio.sleep(0.1)
        assert "cdn.redoc.ly" in {urlsplit(u).hostname for u in offline.kept_out}, offline
        offline.check("/redoc")


# --- Without a browser: the pages name only the app's own assets, and it serves them -----


async def test_docs_pages_name_only_assets_the_app_serves() -> None:
    app = create_app(make_settings("sqlite+aiosqlite:///:memory:"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fieldsync.test") as client:
        for page_path in ("/docs", "/redoc"):
            html = (await client.get(page_path)).text
            urls = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert urls, html
            assert all(u.startswith(DOCS_ASSETS_URL + "/") for u in urls), (page_path, urls)
            assert "http" not in html.replace("http-equiv", ""), html
            for url in urls:
                response = await client.get(url)
                assert response.status_code == 200, (url, response.status_code)
        redirect = await client.get("/docs/oauth2-redirect")
        assert redirect.status_code == 200
        assert "oauth2" in redirect.text
        schema = app.openapi()
        assert not [p for p in schema["paths"] if p.startswith(("/docs", "/redoc"))]
