"""The dashboard at ``/`` (issue 14 §5) in a real browser: Debian's chromium,
headless, driven by Playwright, kept off the network by its flags.  The page
loads without console errors, a message sent by SMTP moves the counter within
a second, and a screenshot is written to ``test-artifacts/dashboard.png``."""

from __future__ import annotations

import dataclasses
import imaplib
import smtplib
from pathlib import Path

import pytest
from support.server import make_config, running_server

from mailserver.config import Listener

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_dashboard_in_a_browser(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")  # a test extra: ./scripts/test has it
    assert CHROMIUM.exists(), "./scripts/test installs chromium"
    config = make_config(tmp_path / "data")
    http = Listener(name="http", protocol="http")
    with running_server(dataclasses.replace(config, listeners=(*config.listeners, http))) as srv:
        _, token = srv.run(srv.app.services.admin.create_token("dashboard", read_only=True))
        base = f"http://127.0.0.1:{srv.port('http')}"
        problems: list[str] = []
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.on("console", lambda m: problems.append(m.text)
                        if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(base + "/")
                imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=10)
                page.fill("#token", token)
                page.click("#login button")
                # Locator checks run in Playwright's own world, so the page keeps its
                # Content-Security-Policy (no eval) during the test.
                expect = sync_api.expect
                expect(page.locator("#status")).to_have_text("live", timeout=10_000)
                # From /api/v1/status: the store's queue and every worker's connections.
                expect(page.locator("#queue-size")).to_have_text("0")
                expect(page.locator("#queue-age")).to_have_text("empty")
                expect(page.locator("#connections-by")).to_contain_text("imap 1")
                imap.logout()
                before = page.text_content("#received-total") or ""
                with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as s:
                    s.sendmail("a@sender.test", ["alice@example.test"],
                               b"Subject: dashboard\r\n\r\nhello\r\n")
                expect(page.locator("#received-total")).not_to_have_text(before, timeout=1000)
                assert int(page.text_content("#received-total") or 0) == int(before or 0) + 1
                # The next /api/v1/stats (every 5 s) names both domains.
                expect(page.locator("#senders")).to_contain_text("sender.test", timeout=7000)
                expect(page.locator("#domains")).to_contain_text("example.test")
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            finally:
                browser.close()
        assert problems == []
