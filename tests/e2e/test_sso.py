"""Single sign-on in a real browser: the sign-in page's "Sign in with your organisation", the round trip to a local
OpenID provider (which approves the test's user at once) and back, signed in as staff; a patient is refused with
the page's message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from backend.seed import DEMO_PASSWORD
from tests.e2e.mfa_codes import next_code
from tests.oidc_provider import LocalProvider, OidcUser, serve_provider

pytestmark = pytest.mark.e2e

SHOTS = Path("/tmp/shots/sso")  # noqa: S108 - where the screenshots are looked at
CLIENT_ID = "waitwell-e2e"
CLIENT_SECRET = "e2e-provider-secret-0123456789"


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _admin_token(app_url: str) -> str:
    """The demo admin's bearer token (password and a TOTP code this run has not used: tests/e2e/mfa_codes.py)."""
    email = "admin@harbor.example"
    body = {"email": email, "password": DEMO_PASSWORD, "totp": next_code(email)}
    response = httpx.post(f"{app_url}/api/v1/auth/token", json=body, timeout=15)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture(scope="module")
def provider(app_url: str) -> Iterator[LocalProvider]:
    with serve_provider(CLIENT_ID, CLIENT_SECRET, {f"{app_url}/auth/sso/harbor/callback"}) as op:
        # Harbor's admin points the practice at the provider through the REST API, trusting its MFA.
        body = {
            "issuer": op.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "enabled": True,
            "trust_idp_mfa": True,
        }
        headers = {"Authorization": f"Bearer {_admin_token(app_url)}"}
        response = httpx.put(f"{app_url}/api/v1/sso-config", json=body, headers=headers, timeout=15)
        assert response.status_code == 200, response.text
        assert response.json()["redirect_uri"] == f"{app_url}/auth/sso/harbor/callback"
        yield op
        body["enabled"] = False
        httpx.put(f"{app_url}/api/v1/sso-config", json=body, headers=headers, timeout=15)


def _sign_in_with_organisation(page: Page, app_url: str, practice: str = "harbor") -> None:
    page.goto(f"{app_url}/login")
    page.fill("#sso-practice", practice)
    page.get_by_role("button", name="Sign in with your organisation").click()


def test_admin_signs_in_through_the_practice_provider(page: Page, app_url: str, provider: LocalProvider) -> None:
    provider.user = OidcUser(sub="admin-1", email="admin@harbor.example", amr=["pwd", "mfa"])
    page.goto(f"{app_url}/login")
    expect(page.get_by_role("button", name="Sign in with your organisation")).to_be_visible()
    page.fill("#sso-practice", "harbor")
    _shot(page, "01-login-with-sso")
    page.get_by_role("button", name="Sign in with your organisation").click()
    expect(page).to_have_url(re.compile(r"/admin/?$"))
    expect(page.get_by_role("heading", name="Practice overview")).to_be_visible()
    _shot(page, "02-admin-after-sso")
    assert "/authorize" in provider.requests


def test_doctor_signs_in_through_the_practice_provider(page: Page, app_url: str, provider: LocalProvider) -> None:
    provider.user = OidcUser(sub="doctor-1", email="dr.rivera@harbor.example", amr=["pwd", "otp"])
    _sign_in_with_organisation(page, app_url)
    expect(page).to_have_url(re.compile(r"/doctor/?$"))
    expect(page.get_by_role("heading", name="Today's schedule")).to_be_visible()
    _shot(page, "03-doctor-after-sso")


def test_a_patient_is_refused_with_a_clear_message(page: Page, app_url: str, provider: LocalProvider) -> None:
    provider.user = OidcUser(sub="patient-1", email="alice@harbor.example")
    _sign_in_with_organisation(page, app_url)
    expect(page).to_have_url(re.compile(r"/login/?\?error=sso_not_staff"))
    expect(page.get_by_role("alert")).to_contain_text("Single sign-on is for practice staff")
    expect(page.locator("#sso-practice")).to_have_value("harbor")
    _shot(page, "04-patient-refused")


def test_a_practice_without_sso_says_so(page: Page, app_url: str, provider: LocalProvider) -> None:
    _sign_in_with_organisation(page, app_url, "summit")
    expect(page.get_by_role("alert")).to_contain_text("Single sign-on is not set up for this practice")
    _shot(page, "05-no-sso-for-practice")
