"""The verification page in a real headless browser: Debian's chromium driven by Selenium.

The provider runs in process; a phone's part is played by HTTPS/1.1
requests (``/oauth/device``, ``/oauth/token``).  The browser opens
``verification_uri_complete`` exactly as the phone's QR code carries it,
signs in, sees the device's name, and approves (or denies); the token
endpoint then answers tokens (or ``access_denied``).

The browser trusts the provider's server certificate by its public key:
``--ignore-certificate-errors-spki-list`` with the base64 SHA-256 of the
certificate's SubjectPublicKeyInfo (honoured only with ``--user-data-dir``,
which the test gives anyway: a fresh profile).  That pins exactly this
key; every other certificate is still checked as usual.  Selenium is told
where chromedriver and chromium are, so Selenium Manager downloads nothing.

Without chromium the test is skipped, except in CI (``CI=true``), where
its absence is a failure: ``./run`` installs ``chromium chromium-driver``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ript.protocol.oauth import (
    DEVICE_CODE_GRANT,
    FORM,
    DeviceAuthorization,
    ErrorResponse,
    TokenResponse,
    form_encode,
)
from riptprovider.server import RunningServer, ServerConfig, serve

from .test_login_e2e import ACCOUNT, Lab, provisioning, registered
from .test_login_e2e import PASSWORD as PHONE_PASSWORD
from .test_provider_oauth import ACCOUNTS, PASSWORD, SETTINGS, https_request

FORM_CT = {"content-type": FORM}
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")
HAVE_BROWSER = shutil.which(CHROMIUM) is not None and shutil.which(CHROMEDRIVER) is not None

if not HAVE_BROWSER and not IN_CI:
    pytest.skip(
        f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium import webdriver  # noqa: E402 - only once the browser is known to be there
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402


def spki_sha256(cert_file: Path) -> str:
    """base64 SHA-256 of the certificate's SubjectPublicKeyInfo (what Chromium pins)."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[RunningServer]:
    """The provider on its own thread's loop, so that the test's Selenium calls may block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    config = ServerConfig(state_dir=tmp_path / "state", accounts=ACCOUNTS, oauth=SETTINGS)
    server = asyncio.run_coroutine_threadsafe(serve(config), loop).result(30)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def phone_asks(server: RunningServer, name: str) -> DeviceAuthorization:
    """What the phone does first: ``POST /oauth/device`` over HTTPS/1.1."""
    fields = {"client_id": "ript-phone", "scope": "ript", "device_name": name}
    status, _, body = https_request(
        server.port, str(server.ca.ca_file), "POST", "/oauth/device", form_encode(fields), FORM_CT
    )
    assert status == 200, body
    return DeviceAuthorization.from_bytes(body)


def phone_polls(server: RunningServer, code: DeviceAuthorization) -> tuple[int, bytes]:
    fields = {
        "grant_type": DEVICE_CODE_GRANT,
        "device_code": code.device_code,
        "client_id": "ript-phone",
    }
    status, _, body = https_request(
        server.port, str(server.ca.ca_file), "POST", "/oauth/token", form_encode(fields), FORM_CT
    )
    return status, body


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[str], webdriver.Chrome]]:
    if not HAVE_BROWSER:  # only in CI (elsewhere the module was skipped)
        pytest.fail(f"CI must have {CHROMIUM} and {CHROMEDRIVER}: ./run installs them")
    drivers: list[webdriver.Chrome] = []

    def start(spki: str) -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            f"--ignore-certificate-errors-spki-list={spki}",
            "--window-size=412,915",  # a phone's screen
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(20)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()


def after_submit(driver: webdriver.Chrome, element_id: str) -> WebElement:
    """The element of the next page: a click on a submit button does not wait for the load."""
    located = expected_conditions.presence_of_element_located((By.ID, element_id))
    element: WebElement = WebDriverWait(driver, 20).until(located)
    return element


def sign_in(driver: webdriver.Chrome, code: DeviceAuthorization, password: str) -> None:
    assert driver.find_element(By.ID, "user_code").get_attribute("value") == code.user_code
    driver.find_element(By.ID, "account").clear()
    driver.find_element(By.ID, "account").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "sign-in").click()


def test_open_the_qr_uri_sign_in_and_approve(
    provider: RunningServer, browser: Callable[[str], webdriver.Chrome]
) -> None:
    driver = browser(spki_sha256(provider.ca.server_cert_file))
    code = phone_asks(provider, "Hall phone")
    assert code.verification_uri_complete is not None
    driver.get(code.verification_uri_complete)  # upper case, as the QR code carries it
    assert driver.title == "Log in a phone"
    sign_in(driver, code, "not the password")
    assert after_submit(driver, "error").text == "The account or the password is wrong."
    sign_in(driver, code, PASSWORD)
    assert after_submit(driver, "device").text == "Hall phone"
    assert driver.find_element(By.ID, "account").text == "alice"
    assert phone_polls(provider, code)[0] == 400  # not yet
    driver.find_element(By.ID, "approve").click()
    assert after_submit(driver, "result").text == "Approved"
    assert "You can put your phone down" in driver.find_element(By.TAG_NAME, "body").text
    status, body = phone_polls(provider, code)
    assert status == 200, body
    tokens = TokenResponse.from_bytes(body)
    assert provider.core is not None
    assert provider.core.authenticate(tokens.access_token) == ACCOUNTS["alice"]


def test_sign_in_and_deny(
    provider: RunningServer, browser: Callable[[str], webdriver.Chrome]
) -> None:
    driver = browser(spki_sha256(provider.ca.server_cert_file))
    code = phone_asks(provider, "")
    driver.get(f"https://localhost:{provider.port}/device")
    driver.find_element(By.ID, "user_code").send_keys(code.user_code.replace("-", "").lower())
    driver.find_element(By.ID, "account").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "sign-in").click()
    assert after_submit(driver, "device").text == "a phone"  # no device_name sent
    driver.find_element(By.ID, "deny").click()
    assert after_submit(driver, "result").text == "Denied"
    status, body = phone_polls(provider, code)
    assert (status, ErrorResponse.from_bytes(body).error) == (400, "access_denied")


@pytest.mark.e2e
def test_a_person_with_the_qr_code_and_a_browser_logs_the_real_phone_in(
    tmp_path: Path, browser: Callable[[str], webdriver.Chrome]
) -> None:
    """The provider and ``ript-phone run`` as subprocesses: nothing but the QR URL and a browser."""
    # tmp_path itself, not a folder in it: the provider's admin socket path must stay
    # under AF_UNIX's 107 bytes, and pytest-xdist puts popen-gwN/ in every tmp_path.
    lab = Lab(tmp_path)
    try:
        provider, phone, _ = lab.start()
        phone.start("provisioning")
        url, code = provisioning(phone)  # what the QR code carries
        cert = provider.config.parent / "provider-state" / "tls" / "server.pem"
        driver = browser(spki_sha256(cert))
        driver.get(url)
        assert driver.find_element(By.ID, "user_code").get_attribute("value") == code
        driver.find_element(By.ID, "account").clear()
        driver.find_element(By.ID, "account").send_keys(ACCOUNT)
        driver.find_element(By.ID, "password").send_keys(PHONE_PASSWORD)
        driver.find_element(By.ID, "sign-in").click()
        assert after_submit(driver, "device").text == "Desk phone"  # [phone] name
        driver.find_element(By.ID, "approve").click()
        assert after_submit(driver, "result").text == "Approved"
        status = registered(phone)
        assert status["handler"].startswith(f"https://localhost:{provider.port}/")
    finally:
        lab.close()
