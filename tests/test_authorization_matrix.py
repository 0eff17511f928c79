"""Who gets what, for every URL pattern of the site: anonymous, annotator, data engineer, admin.

Every pattern Django resolves (annotate, auth, admin, API; walked from the root resolver) must be
matched by a rule of RULES, the first matching rule deciding; a new endpoint without a rule fails
`test_every_url_pattern_has_a_rule`, and a rule that matches nothing fails
`test_every_rule_matches_a_url_pattern`. The admin is classified by pattern rules (per kind of page),
not by one row per model, so a new model admin is covered the day it is registered.

Each pattern is requested once per role (logged in with the session, as a browser would) on real rows,
so that ids and slugs resolve to something that exists and every outcome is the role's, not a 404 for
a missing row. Outcomes are a status code, or where a redirect goes: LOGIN (the site's login page),
ADMIN_LOGIN (the admin's), or the redirect's path with numbers written as N.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from hashlib import sha256

import pytest
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from annotate.assignment import comparison_lease_next
from feedback.export.options import ExportOptions
from feedback.models import ApiToken, Export, Project, ReviewItem
from feedback.services.answers import human_answer_create
from feedback.services.quality import project_quality_refresh
from feedback.services.standing import annotator_suspend
from feedback.services.tokens import api_token_create
from tests.conftest import logged_in_client
from tests.factories import (
    ComparisonFactory,
    GenerationRunFactory,
    JudgmentFactory,
    PolicyCheckpointFactory,
    ProjectFactory,
    PromptFactory,
)

LOGIN = "→ login"
ADMIN_LOGIN = "→ admin login"
ROLES = ("anonymous", "annotator", "data engineer", "admin")


@dataclass(frozen=True)
class Rule:
    """Routes fully matching `pattern` (a regex over the route as Django writes it), and what each role
    gets there. `method` and `body` for endpoints that only take POST."""

    pattern: str
    anonymous: int | str
    annotator: int | str
    engineer: int | str
    admin: int | str
    method: str = "get"
    body: str | None = None
    query: str = ""

    def expected(self, role: str) -> int | str:
        return {"anonymous": self.anonymous, "annotator": self.annotator, "data engineer": self.engineer}.get(
            role, self.admin
        )


def staff_only(pattern: str, admin: int | str) -> Rule:
    """Admin pages: everyone but staff is sent to the admin's login."""
    return Rule(pattern, ADMIN_LOGIN, ADMIN_LOGIN, ADMIN_LOGIN, admin)


def api(pattern: str, *, query: str = "") -> Rule:
    """The REST API: data engineers and admins only; 401 without credentials, 403 for other roles."""
    return Rule(pattern, 401, 403, 200, 200, query=query)


MODEL = r"admin/(auth|feedback|annotate)/[a-z]+"
# Models whose rows only services write: nobody adds, changes or deletes them in the admin.
READ_ONLY = (
    r"admin/(feedback/(judgment|assignment|annotatorstanding|standingchange)|annotate/annotatorstatistics)"
)

RULES = [
    # --- the annotator's pages --------------------------------------------------------------------------
    Rule("", LOGIN, 200, 200, 200),
    # Annotators work on the projects they are members of; staff on all; data engineers on none.
    Rule("projects/<slug:slug>/annotate", LOGIN, 200, 404, 200),
    Rule("projects/<slug:slug>/guidelines", LOGIN, 200, 404, 200),
    Rule("projects/<slug:slug>/answers", LOGIN, 200, 404, 200),
    # JSON endpoints: 401, not a login redirect. An empty submission is refused as invalid before the
    # lease is looked at; a skip reaches the lease, which only its annotator may skip.
    Rule("projects/<slug:slug>/assignments/<int:assignment_id>/judgment", 401, 400, 404, 400, "post", "{}"),
    # A draft is read (or saved) only on one's own assignment: staff have no lease here, so 404.
    Rule("projects/<slug:slug>/assignments/<int:assignment_id>/draft", 401, 200, 404, 404),
    # A written answer, like a judgment: an empty one is refused as invalid before the lease is looked at.
    Rule("projects/<slug:slug>/assignments/<int:assignment_id>/answer", 401, 400, 404, 400, "post", "{}"),
    Rule(
        "projects/<slug:slug>/assignments/<int:assignment_id>/skip",
        401,
        200,
        404,
        404,
        "post",
        '{"reason": "Other"}',
    ),
    # The review pages: the project's reviewers and managers (staff count as managers); an annotator of
    # the project is refused, a non-member finds nothing. The empty decision is refused as invalid.
    Rule("projects/<slug:slug>/review", LOGIN, 403, 404, 200),
    Rule("projects/<slug:slug>/review/next", LOGIN, 403, 404, "→ /projects/world/review/N"),
    Rule("projects/<slug:slug>/review/<int:item_id>", LOGIN, 403, 404, 200),
    Rule("projects/<slug:slug>/review/<int:item_id>/decision", 401, 403, 404, 400, "post", "{}"),
    # People's answers waiting for review: the same roles.
    Rule("projects/<slug:slug>/review/answers/next", LOGIN, 403, 404, "→ /projects/world/review/answers/N"),
    Rule("projects/<slug:slug>/review/answers/<int:answer_id>", LOGIN, 403, 404, 200),
    Rule("projects/<slug:slug>/review/answers/<int:answer_id>/preview", 401, 403, 404, 200),
    Rule("projects/<slug:slug>/review/answers/<int:answer_id>/decision", 401, 403, 404, 400, "post", "{}"),
    Rule("healthz", 200, 200, 200, 200),
    Rule("favicon.ico", *["→ /static/rankwise/favicon.svg"] * 4),
    Rule("accounts/login/", 200, 200, 200, 200),
    Rule("accounts/logout/", 405, 405, 405, 405),  # logging out takes a POST
    # --- the admin: pages of the site ---------------------------------------------------------------------
    Rule("admin/login/", 200, 200, 200, "→ /admin/"),
    Rule("admin/logout/", "→ /admin/", "→ /admin/", "→ /admin/", 405),
    staff_only("admin/", 200),
    staff_only(r"admin/\^\(\?P<app_label>auth\|feedback\|annotate\)/\$", 200),
    staff_only("admin/password_change/", 200),
    staff_only("admin/password_change/done/", 200),
    staff_only("admin/autocomplete/", 403),  # without the field it completes: refused
    staff_only("admin/jsi18n/", 200),
    staff_only("admin/r/<path:content_type_id>/<path:object_id>/", 404),  # projects have no public page
    staff_only(r"admin/\(\?P<url>\.\*\)\$", 404),
    # --- the admin: pages of each model -------------------------------------------------------------------
    staff_only(rf"{READ_ONLY}/add/", 403),
    staff_only(r"admin/feedback/comparison/add/", 403),  # comparisons come from generation runs
    staff_only(rf"{READ_ONLY}/<path:object_id>/delete/", 403),
    # Statistics rows are not objects: their object pages are refused.
    staff_only(r"admin/annotate/annotatorstatistics/<path:object_id>/(history|change)/", 403),
    staff_only(rf"{MODEL}/", 200),
    staff_only(rf"{MODEL}/add/", 200),
    staff_only(rf"{MODEL}/<path:object_id>/history/", 200),
    staff_only(rf"{MODEL}/<path:object_id>/delete/", 200),
    staff_only(rf"{MODEL}/<path:object_id>/change/", 200),
    staff_only(rf"({MODEL})/<path:object_id>/", "→ /admin/<model>/N/change/"),
    staff_only("admin/auth/user/<id>/password/", 200),
    staff_only("admin/feedback/prompt/import/", 200),
    staff_only("admin/feedback/generationrun/start/", 200),
    staff_only("admin/feedback/export/<int:export_id>/download/", 200),
    staff_only("admin/feedback/project/<path:object_id>/quality/", 200),
    staff_only("admin/feedback/project/<path:object_id>/leaderboard/", 200),
    staff_only("admin/feedback/project/<path:object_id>/compare-answers/", 200),
    staff_only("admin/feedback/comparison/import-gold/", 200),
    staff_only("admin/feedback/comparison/<path:object_id>/gold/", 200),
    staff_only("admin/feedback/annotatorstanding/<path:object_id>/(suspend|reinstate)/", 200),
    # --- the REST API -----------------------------------------------------------------------------------
    api(r"api/v1/projects(/<slug:slug>(/(prompts|gold|quality|annotators|review-queue))?)?"),
    # Deciding takes a reviewer's or manager's role (staff have it everywhere): data engineers read the
    # queue but are refused here.
    Rule("api/v1/projects/<slug:slug>/review-items/<id:pk>/decision", 401, 403, 403, 400, "post", "{}"),
    # The leaderboard is computed on a worker: the first request for a set of filters is accepted (202).
    Rule(r"api/v1/projects/<slug:slug>/leaderboard(/matrices)?", 401, 403, 202, 202),
    Rule(
        "api/v1/projects/<slug:slug>/leaderboard/head-to-head",
        401,
        403,
        202,
        202,
        query="first=world-policy&second=world-policy",
    ),
    api(r"api/v1/(checkpoints|comparisons|judgments|generation-runs|exports)(/<id:pk>)?"),
    api(r"api/v1/(generation-runs|exports)/<id:pk>/status"),
    api(r"api/v1/exports/<id:pk>/download"),
    api(r"api/v1/exports/stream", query="format=judgments"),
    # The schema and its docs page describe shapes, not data: open to all.
    Rule("api/schema/", 200, 200, 200, 200),
    Rule("api/docs/", 200, 200, 200, 200),
    Rule(r"api/\^", 404, 404, 404, 404),  # unknown API URLs: a JSON 404 for everyone
]


def url_patterns(resolver: URLResolver | None = None, prefix: str = "") -> list[str]:
    """Every concrete route of the site, as Django writes it, included resolvers walked recursively."""
    routes = []
    for pattern in (resolver or get_resolver()).url_patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            routes.extend(url_patterns(pattern, route))
        else:
            assert isinstance(pattern, URLPattern)
            routes.append(route)
    return routes


ROUTES = url_patterns()


def rule_for(route: str) -> Rule | None:
    return next((rule for rule in RULES if re.fullmatch(rule.pattern, route)), None)


def test_every_url_pattern_has_a_rule():
    assert [route for route in ROUTES if rule_for(route) is None] == []


def test_every_rule_matches_a_url_pattern():
    used = {id(rule_for(route)) for route in ROUTES}
    assert [rule.pattern for rule in RULES if id(rule) not in used] == []


def test_the_walk_reaches_every_part_of_the_site():
    assert {route.split("/")[0] for route in ROUTES} >= {
        "",
        "projects",
        "healthz",
        "accounts",
        "admin",
        "api",
    }
    assert len(ROUTES) > 100


# --- requesting every route as every role -----------------------------------------------------------------


@dataclass
class World:
    project: Project
    assignment_id: int
    ids: dict[str, int]  # API resource (first path segment after v1) → id
    objects: dict[str, int]  # "app_label.model_name" → a pk, for admin pages


@pytest.fixture
def world(db, annotator, data_engineer, admin_user, settings, tmp_path) -> World:
    project = ProjectFactory(slug="world", current_checkpoint=PolicyCheckpointFactory(name="world-policy"))
    project.members.add(annotator)
    comparisons = [ComparisonFactory(prompt=PromptFactory(project=project)) for _ in range(3)]
    judgment = JudgmentFactory(comparison=comparisons[0])
    assignment = comparison_lease_next(annotator=annotator, project=project)
    assert assignment is not None
    # Another annotator of the project, suspended: a standing change to show.
    annotator_suspend(
        project_id=project.pk, annotator_id=judgment.annotator_id, actor=admin_user, reason="Test."
    )
    run = GenerationRunFactory(project=project, checkpoint=project.current_checkpoint)
    api_token_create(user=data_engineer, name="matrix")
    project_quality_refresh(project_id=project.pk)  # figures for /quality to show
    item = ReviewItem.objects.create(
        comparison=comparisons[1], project=project, reasons=["picked"], queued_at=timezone.now()
    )
    answer = human_answer_create(
        prompt=comparisons[2].prompt, author=annotator, text="A person's answer.", review_required=True
    )

    settings.EXPORT_ROOT = tmp_path / "exports"
    settings.EXPORT_ROOT.mkdir()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("train.jsonl", "")
    (settings.EXPORT_ROOT / "world.zip").write_bytes(archive.getvalue())
    export = Export.objects.create(
        options=ExportOptions.from_mapping({"format": "preference"}).to_dict(),
        high_water_mark=judgment.pk,
        snapshot_digest="0" * 64,
        status=Export.Status.COMPLETED,
        file_name="world.zip",
        file_sha256=sha256(archive.getvalue()).hexdigest(),
        file_size=len(archive.getvalue()),
    )
    objects = {}
    for model in apps.get_models():
        row = model._default_manager.order_by("pk").first()
        if row is not None:
            objects[f"{model._meta.app_label}.{model._meta.model_name}"] = row.pk
    objects["annotate.annotatorstatistics"] = judgment.pk  # a proxy of Judgment
    return World(
        project=project,
        assignment_id=assignment.pk,
        ids={
            "projects": item.pk,  # the one id under api/v1/projects/: a review item's
            "checkpoints": project.current_checkpoint_id,
            "comparisons": comparisons[0].pk,
            "judgments": judgment.pk,
            "generation-runs": run.pk,
            "exports": export.pk,
            "answers": answer.pk,
        },
        objects=objects,
    )


def concrete_url(route: str, world: World) -> str:
    """The route with real values for its parameters."""
    if route == r"admin/^(?P<app_label>auth|feedback|annotate)/$":
        return "/admin/feedback/"
    if route == r"admin/(?P<url>.*)$":
        return "/admin/no-such-page/"
    if route == "api/^":
        return "/api/v1/no-such-endpoint"
    model = re.match(r"admin/(\w+)/(\w+)/", route)
    if model and f"{model[1]}.{model[2]}" in world.objects:
        object_id = world.objects[f"{model[1]}.{model[2]}"]
    else:
        object_id = None
    values = {
        "<slug:slug>": world.project.slug,
        "<int:assignment_id>": str(world.assignment_id),
        "<id:pk>": str(world.ids.get(route.split("/")[2], 0)) if route.startswith("api/v1/") else "",
        "<path:object_id>": str(object_id),
        "<id>": str(world.objects["auth.user"]),
        "<path:content_type_id>": str(ContentType.objects.get_for_model(Project).pk),
        "<int:export_id>": str(world.ids["exports"]),
        "<int:item_id>": str(world.ids["projects"]),
        "<int:answer_id>": str(world.ids["answers"]),
    }
    if route.startswith("admin/r/"):
        values["<path:object_id>"] = str(world.project.pk)
    url = "/" + route
    for placeholder, value in values.items():
        url = url.replace(placeholder, value)
    assert "<" not in url, f"no value for a parameter of {route}"
    return url


def outcome(response) -> int | str:
    if response.status_code not in (301, 302):
        return response.status_code
    location = response["Location"]
    if location.startswith("/accounts/login/"):
        return LOGIN
    if location.startswith("/admin/login/"):
        return ADMIN_LOGIN
    path = re.sub(r"\d+", "N", location.split("?")[0])
    return "→ " + re.sub(r"^/admin/(auth|feedback|annotate)/[a-z]+/", "/admin/<model>/", path)


@pytest.mark.django_db
@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_what_the_table_says_everywhere(request, world, role):
    users = {"annotator": "annotator", "data engineer": "data_engineer", "admin": "admin_user"}
    client = Client() if role == "anonymous" else logged_in_client(request.getfixturevalue(users[role]))
    tokens_before = ApiToken.objects.count()
    wrong = []
    for route in ROUTES:
        rule = rule_for(route)
        assert rule is not None, route
        url = concrete_url(route, world) + (f"?{rule.query}" if rule.query else "")
        if rule.method == "post":
            response = client.post(url, rule.body, content_type="application/json")
        else:
            response = client.get(url)
        got = outcome(response)
        if got != rule.expected(role):
            wrong.append((route, f"expected {rule.expected(role)!r}", f"got {got!r}"))
    assert wrong == [], "\n".join(" ".join(row) for row in wrong)
    assert ApiToken.objects.count() == tokens_before
