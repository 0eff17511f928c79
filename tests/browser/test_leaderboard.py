"""The admin's leaderboard page in a real browser: charts render inline, nothing runs or loads from
model text, the head-to-head examples open, the page fits a laptop screen; the screenshot the README
shows is taken here (test-artifacts/browser/admin-leaderboard.png, copied to docs/images/)."""

from __future__ import annotations

import pytest

from feedback.models import LeaderboardReport, Response
from feedback.services.leaderboard import LeaderboardFilters, leaderboard_refresh, leaderboard_request
from tests.browser.conftest import ARTIFACTS
from tests.browser.test_workspace import XSS_PAYLOADS, png_size
from tests.factories import TEST_PASSWORD, AdminFactory, planted_project

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_leaderboard_page_shows_its_charts_and_keeps_model_text_inert(browser_page, live_server):
    page, watch = browser_page
    project, _base, _instruct, lora = planted_project(judgments_per_pair=30)
    Response.objects.filter(checkpoint=lora).update(text="\n\n".join(XSS_PAYLOADS))
    leaderboard_request(project=project, filters=LeaderboardFilters())
    row = leaderboard_refresh(project_id=project.pk, key=LeaderboardFilters().key)
    assert row is not None
    assert row.status == LeaderboardReport.Status.READY
    admin = AdminFactory(username="leaderboard-admin")

    page.set_viewport_size({"width": 1366, "height": 900})
    page.goto(f"{live_server.url}/admin/login/")
    page.get_by_label("Username").fill(admin.username)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/admin/")
    page.goto(f"{live_server.url}/admin/feedback/project/{project.pk}/leaderboard/")
    assert page.locator("svg.chart").count() == 3
    forest = page.locator("svg.chart").first.bounding_box()
    assert forest is not None
    assert forest["width"] > 300
    assert page.locator("#leaderboard-table tbody tr").count() == 3
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 1366
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "admin-leaderboard.png"
    page.screenshot(path=str(shot), full_page=False)
    assert png_size(shot) == (1366, 900)

    # The head-to-head report of the LoRA step against its parent, with hostile model text as examples.
    page.locator("details.leaderboard-filters summary").click()
    page.locator("#id_first").select_option("lora")
    page.locator("#id_second").select_option("instruct")
    page.get_by_role("button", name="Show").click()
    page.locator("#head-to-head-summary").wait_for()
    page.locator("details.leaderboard-example summary").first.click()
    text = page.locator("details.leaderboard-example[open]").inner_text()
    assert "<script>fetch(" in text
    assert "<img src=x onerror=" in text
    ARTIFACTS.joinpath("admin-head-to-head.png").write_bytes(page.screenshot(full_page=False))
    assert watch.dialogs == []
    assert watch.foreign_requests == []
    assert watch.console_errors == []
