"""Two-step sign-in in a real browser: an admin without MFA is led through enrolment at first sign-in (the test
reads the secret off the page and computes codes with pyotp); with MFA, sign-in asks for the code; a wrong or
reused code is refused; a recovery code works once."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
import sqlalchemy as sa
from playwright.sync_api import BrowserContext, Page, expect
from sqlmodel import select

from backend.db import UnitOfWork, make_engine
from backend.identity.models import Membership, User
from backend.identity.security import hash_password
from backend.seed import DEMO_PASSWORD
from backend.tenancy.context import Role
from backend.tenancy.models import Tenant
from tests.conftest import TEST_DB_NAME, _db_url
from tests.e2e import mfa_codes

pytestmark = pytest.mark.e2e

SHOTS = Path(os.environ.get("MFA_SHOTS_DIR", "test-artifacts/mfa"))


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def e2e_engine(app_url: str) -> Iterator[sa.Engine]:
    engine = make_engine(_db_url(f"{TEST_DB_NAME}_e2e"))
    yield engine
    engine.dispose()


@pytest.fixture
def new_admin(e2e_engine: sa.Engine) -> str:
    """A second Harbor admin who has never signed in (so has no MFA)."""
    email = f"new.admin.{secrets.token_hex(3)}@harbor.example"
    with UnitOfWork(system=True, engine=e2e_engine) as uow:
        tenant = uow.session.exec(select(Tenant).where(Tenant.slug == "harbor")).one()
    with UnitOfWork(system=True, engine=e2e_engine) as uow:
        user = User(
            tenant_id=tenant.id, email=email, full_name="Nadia Newcomer", password_hash=hash_password(DEMO_PASSWORD)
        )
        uow.session.add(user)
        uow.flush()
        uow.session.add(Membership(tenant_id=tenant.id, user_id=user.id, role=Role.ADMIN))
        uow.commit()
    return email


def _password_step(page: Page, base: str, email: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#email", email)
    page.fill("#password", DEMO_PASSWORD)
    page.click("button[type=submit]")


def _code_step(page: Page, code: str) -> None:
    expect(page).to_have_url(re.compile(r"/login/mfa"))
    page.fill("#code", code)
    page.click("button[type=submit]")


def _sign_out(context: BrowserContext, page: Page, base: str) -> None:
    context.clear_cookies()
    page.goto(f"{base}/login")


def test_admin_enrols_at_first_sign_in_then_signs_in_with_codes(
    context: BrowserContext, page: Page, app_url: str, new_admin: str
) -> None:
    _password_step(page, app_url, new_admin)
    # Led to the enrolment page, and nowhere else until it is done.
    expect(page).to_have_url(re.compile(r"/account/mfa/?$"))
    expect(page.get_by_text("Your role requires two-step sign-in")).to_be_visible()
    expect(page.locator("#mfa-qr")).to_be_visible()
    secret = page.locator("#mfa-secret").inner_text().strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret), secret
    _shot(page, "1-enrol")
    page.goto(f"{app_url}/admin/clinics")
    expect(page).to_have_url(re.compile(r"/account/mfa/?$"))
    expect(page.locator("#mfa-secret")).to_be_visible()
    # Coming back starts over with a new secret: wait for it before reading it.
    expect(page.locator("#mfa-secret")).not_to_have_text(secret)
    secret = page.locator("#mfa-secret").inner_text().strip()

    # A wrong code is refused, a right one confirms and shows the ten recovery codes once.
    totp = pyotp.TOTP(secret)
    page.fill("#enrol-code", "000000" if totp.now() != "000000" else "111111")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("alert").filter(has_text="not valid")).to_be_visible()
    step = int(time.time() // 30)
    enrol_code = totp.at(step * 30)
    page.fill("#enrol-code", enrol_code)
    page.get_by_role("button", name="Confirm").click()
    codes = page.locator("#recovery-codes .recovery-code")
    expect(codes).to_have_count(10)
    recovery = [c.strip() for c in codes.all_inner_texts()]
    assert all(re.fullmatch(r"[a-z0-9]{5}-[a-z0-9]{5}", c) for c in recovery), recovery
    expect(page.locator("#mfa-secret")).to_have_count(0)
    _shot(page, "2-recovery-codes")
    page.get_by_role("button", name="I have saved my recovery codes").click()
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    expect(page.get_by_role("heading", name="Practice overview")).to_be_visible()

    # Signing in again asks for the code; the one that confirmed enrolment is spent.
    _sign_out(context, page, app_url)
    _password_step(page, app_url, new_admin)
    expect(page).to_have_url(re.compile(r"/login/mfa"))
    expect(page.get_by_role("heading", name="Two-step sign-in")).to_be_visible()
    _shot(page, "3-code-step")
    _code_step(page, enrol_code)
    expect(page).to_have_url(re.compile(r"/login/mfa/?\?error=invalid"))
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    _shot(page, "4-code-refused")
    # A wrong code too.
    wrong = next(
        f"{n:06d}" for n in range(1_000_000) if f"{n:06d}" not in {totp.at((step + d) * 30) for d in range(-1, 4)}
    )
    _code_step(page, wrong)
    expect(page).to_have_url(re.compile(r"/login/mfa/?\?error=invalid"))
    # A recovery code works...
    _code_step(page, recovery[0])
    expect(page).to_have_url(re.compile(r"/admin/?$"))

    # ...once.
    _sign_out(context, page, app_url)
    _password_step(page, app_url, new_admin)
    _code_step(page, recovery[0])
    expect(page).to_have_url(re.compile(r"/login/mfa/?\?error=invalid"))
    # The app's next code signs in.
    mfa_codes._last_step[new_admin] = step
    _code_step(page, mfa_codes.next_code(new_admin, secret))
    expect(page).to_have_url(re.compile(r"/admin/?$"))

    # The account page shows the status, never the secret.
    page.goto(f"{app_url}/account/mfa")
    expect(page.locator("#codes-left")).to_contain_text("9 unused recovery codes left")
    expect(page.get_by_text(secret)).to_have_count(0)
    _shot(page, "5-status")


def test_the_demo_admin_signs_in_with_a_code(page: Page, app_url: str) -> None:
    email = "admin@summit.example"
    _password_step(page, app_url, email)
    expect(page).to_have_url(re.compile(r"/login/mfa"))
    _code_step(page, mfa_codes.next_code(email))
    expect(page).to_have_url(re.compile(r"/admin/?$"))
