"""The review page in a real browser: a reviewer decides three items with the keyboard only, and hostile
model text, prompts and rationales stay inert text."""

from __future__ import annotations

import pytest

from feedback.models import ProjectMembership, Response, ReviewDecision, ReviewItem
from tests.browser.conftest import log_in
from tests.browser.test_workspace import XSS_PAYLOADS
from tests.factories import TEST_PASSWORD, ProjectFactory, UserFactory, judged_comparison

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = "\n\n".join(XSS_PAYLOADS)


def queued(project, choices, *, queued_at: str, hostile: bool = False) -> ReviewItem:
    comparison = judged_comparison(project, choices, rationale=HOSTILE if hostile else "A reason.")
    if hostile:
        comparison.prompt.conversation = [
            {"role": "user", "content": XSS_PAYLOADS[0] + "\n\n" + XSS_PAYLOADS[6]}
        ]
        comparison.prompt.save()
        Response.objects.filter(comparisons=comparison).update(text=HOSTILE)
    return ReviewItem.objects.create(
        comparison=comparison, project=project, reasons=["low_agreement"], queued_at=queued_at
    )


def test_a_reviewer_decides_three_items_with_the_keyboard_and_hostile_text_is_inert(
    browser_page, live_server
):
    page, watch = browser_page
    project = ProjectFactory(slug="review-keys", gold_rate=0)
    reviewer = UserFactory(username="keyboard-reviewer")
    ProjectMembership.objects.create(project=project, user=reviewer, role="reviewer")
    first = queued(project, ["a", "b", "tie"], queued_at="2026-12-01T00:00Z", hostile=True)
    second = queued(project, ["a", "b", "b"], queued_at="2026-12-02T00:00Z")
    third = queued(project, ["b", "a", "tie"], queued_at="2026-12-03T00:00Z")

    log_in(page, live_server.url, reviewer.username, TEST_PASSWORD)
    page.goto(f"{live_server.url}/projects/{project.slug}/review")
    page.locator("#start-review:focus").wait_for()  # focused on arrival
    page.keyboard.press("Enter")  # start with the oldest
    page.wait_for_url(f"**/review/{first.pk}")
    page.locator("form#review[data-ready=true]").wait_for()

    # The hostile item: every payload is visible as text, none became an element, nothing ran or loaded.
    text = page.locator("#response-A .response-text").inner_text()
    for visible in (
        "<script>fetch(",
        "<img src=x onerror=",
        "<svg onload=",
        "<iframe srcdoc=",
        "<math><mtext>",
    ):
        assert visible in text
    rationales = page.locator(".rationale-text").all_inner_texts()
    assert rationales == [HOSTILE.strip()] * 3
    page.locator("#response-B .response-text").hover()
    hostile_elements = page.evaluate(
        "() => document.querySelectorAll('main script:not(#review-config), main img, main svg, main iframe,"
        ' main math, main [onerror], main [onload], a[href^="javascript"]\').length'
    )
    assert hostile_elements == 0

    # 1: a final verdict, B and by how much, Enter.
    for key in ("b", "2", "Enter"):
        page.keyboard.press(key)
    page.wait_for_url(f"**/review/{second.pk}")
    page.locator("form#review[data-ready=true]").wait_for()

    # 2: sent back, with a reason typed after "s" and recorded with Ctrl+Enter.
    page.keyboard.press("s")
    page.keyboard.type("Two of three are close; ask again.")
    page.keyboard.press("Control+Enter")
    page.wait_for_url(f"**/review/{third.pk}")
    page.locator("form#review[data-ready=true]").wait_for()

    # 3: Enter without a reason is refused on the page; then retired with one, left with Esc, then Enter.
    page.keyboard.press("r")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    page.get_by_role("status").filter(has_text="Write why first").wait_for()
    page.keyboard.press("/")
    page.keyboard.type("The prompt asks for personal data.")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/projects/{project.slug}/review")
    page.locator("#queue-empty").wait_for()

    decisions = {decision.item_id: decision for decision in ReviewDecision.objects.filter(reviewer=reviewer)}
    assert set(decisions) == {first.pk, second.pk, third.pk}
    assert (decisions[first.pk].action, decisions[first.pk].verdict) == (
        "decide",
        {"choice": "b", "ranking": [2, 1], "strength": 2},
    )
    assert (decisions[second.pk].action, decisions[second.pk].reason) == (
        "send_back",
        "Two of three are close; ask again.",
    )
    assert (decisions[third.pk].action, decisions[third.pk].reason) == (
        "retire",
        "The prompt asks for personal data.",
    )
    assert dict(ReviewItem.objects.values_list("pk", "status")) == {
        first.pk: "decided",
        second.pk: "sent_back",
        third.pk: "retired",
    }
    assert watch.dialogs == []
    assert watch.foreign_requests == []
    assert watch.console_errors == []
