"""`make demo`'s seed: users for each role, the demo project with its bundled prompts and gold items, and a
simulated crowd's judgments with the quality figures they give; all repeatable, nothing made twice."""

import json
import re
import sqlite3
from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import Client

from feedback.models import (
    AnnotatorQuality,
    AnnotatorStanding,
    Assignment,
    Comparison,
    GoldVerdict,
    Judgment,
    Project,
    ProjectQuality,
    Prompt,
    ReviewItem,
    StandingChange,
)
from feedback.services.demo import (
    DEMO_CROWD,
    DEMO_GOLD,
    DEMO_LEFT_OPEN,
    DEMO_PROMPTS,
    demo_seed,
    demo_simulate,
)
from tests.factories import ComparisonFactory
from tests.processes import manage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def seed(capsys) -> dict[str, str]:
    call_command("seed_demo")
    lines = capsys.readouterr().out.splitlines()
    logins = lines[lines.index(next(line for line in lines if line.startswith("Demo logins"))) + 1 :]
    return {line.split()[0]: line.split()[1] for line in logins}


def snapshot() -> dict:
    user_model = get_user_model()
    return {
        "users": sorted(
            (
                user.username,
                user.is_staff,
                user.is_superuser,
                tuple(sorted(user.groups.values_list("name", flat=True))),
            )
            for user in user_model.objects.all()
        ),
        "projects": list(Project.objects.values_list("slug", flat=True)),
        "prompts": list(Prompt.objects.order_by("external_id").values_list("external_id", "content_hash")),
        "members": sorted(Project.objects.get(slug="demo").members.values_list("username", flat=True)),
        "gold": sorted(
            GoldVerdict.objects.values_list("comparison__prompt__external_id", "verdict", "explanation")
        ),
    }


def test_seeding_twice_gives_the_same_rows_and_the_same_working_passwords(capsys, var_dir):
    first_logins = seed(capsys)
    first = snapshot()
    second_logins = seed(capsys)
    assert snapshot() == first
    assert second_logins == first_logins
    assert first["users"] == [
        ("admin", True, True, ()),
        ("annotator1", False, False, ("annotators",)),
        ("annotator2", False, False, ("annotators",)),
        ("engineer", False, False, ("data engineers",)),
        ("reviewer", False, False, ()),
    ]
    assert first["members"] == ["annotator1", "annotator2", "reviewer"]
    assert first["projects"] == ["demo", "demo-writing"]
    for slug in ("demo", "demo-writing"):
        assert Project.objects.get(slug=slug).memberships.get(user__username="reviewer").role == "reviewer"
    writing = Project.objects.get(slug="demo-writing")
    assert (writing.comparison_mode, writing.answers_reviewed) == ("demonstration", True)
    assert sorted(writing.members.values_list("username", flat=True)) == [
        "annotator1",
        "annotator2",
        "reviewer",
    ]
    assert Comparison.objects.filter(project=writing).count() == writing.prompts.count()
    assert Project.objects.get(slug="demo").answer_editing == "optional"
    assert len(first["prompts"]) >= 40
    assert [external_id for external_id, _, _ in first["gold"]] == [
        f"demo-gold-{number}" for number in range(1, 9)
    ]
    for username, password in first_logins.items():
        assert authenticate(username=username, password=password) is not None, username
    assert json.loads((var_dir / "demo-credentials.json").read_text()) == first_logins
    assert (var_dir / "demo-credentials.json").stat().st_mode & 0o777 == 0o600


def test_a_lost_credentials_file_gets_fresh_passwords_that_work(capsys, var_dir):
    old = seed(capsys)
    (var_dir / "demo-credentials.json").unlink()
    new = seed(capsys)
    assert set(new) == set(old)
    assert all(new[name] != old[name] for name in new)
    for username, password in new.items():
        assert authenticate(username=username, password=password) is not None


def test_the_bundled_prompts_cover_the_instruction_kinds_and_multi_turn(capsys):
    seed(capsys)
    prompts = Prompt.objects.filter(project__slug="demo", is_gold=False)
    categories = Counter(prompts.values_list("category", flat=True))
    assert {"list", "summarize", "explain", "write", "other"} <= set(categories)
    assert min(categories[name] for name in ("list", "summarize", "explain", "write", "other")) >= 5
    multi_turn = [prompt for prompt in prompts if prompt.turn_count > 1]
    assert len(multi_turn) >= 8
    assert any(prompt.conversation[0]["role"] == "system" for prompt in prompts)
    assert prompts.count() == sum(1 for line in DEMO_PROMPTS.read_text().splitlines() if line.strip())
    gold = Comparison.objects.filter(project__slug="demo", is_gold=True)
    assert gold.count() == sum(1 for line in DEMO_GOLD.read_text().splitlines() if line.strip()) == 8
    # The right answers are plain, and half of them are the second response of their line.
    lines = [json.loads(line) for line in DEMO_GOLD.read_text().splitlines()]
    assert sorted(line["expected"] for line in lines) == ["A"] * 4 + ["B"] * 4


def test_make_demo_seeding_on_its_own_sqlite_database_is_repeatable(tmp_path):
    """The demo's real configuration and steps (as `make demo-setup` runs them): no DATABASE_URL (a SQLite
    file), no broker, so validation and generation run inline; run twice."""
    checkpoint = tmp_path / "checkpoints" / "tiny-instruct"

    def manage_ok(*args):
        result = manage(*args, RANKWISE_VAR_DIR=str(tmp_path))
        assert result.returncode == 0, result.stderr
        return result.stdout

    manage_ok("make_tiny_checkpoint", "--words", str(checkpoint))
    outputs = []
    for _ in range(2):
        manage_ok("migrate", "--noinput", "-v", "0")
        outputs.append(manage_ok("seed_demo", "--checkpoint", str(checkpoint)).splitlines())
    count = sum(1 for line in DEMO_PROMPTS.read_text().splitlines() if line.strip())
    assert (
        outputs[0][0]
        == f"Demo project 'demo': prompts {count} imported, 0 unchanged, 0 conflict(s) of {count} prompt(s)."
    )
    assert (
        outputs[1][0]
        == f"Demo project 'demo': prompts 0 imported, {count} unchanged, 0 conflict(s) of {count} prompt(s)."
    )
    assert outputs[0][1] == "Gold items: 8 gold item(s) imported, 0 already there."
    assert outputs[1][1] == "Gold items: 0 gold item(s) imported, 8 already there."
    assert outputs[0][2] == (
        f"Writing project 'demo-writing': prompts {count} imported, 0 unchanged, 0 conflict(s) of {count} "
        f"prompt(s); {count} writing task(s) opened."
    )
    assert outputs[1][2] == (
        f"Writing project 'demo-writing': prompts 0 imported, {count} unchanged, 0 conflict(s) of {count} "
        "prompt(s)."
    )
    outputs = [output[:2] + output[3:] for output in outputs]  # the rest as before the writing project
    generated = re.fullmatch(
        rf"Generation run 1 \(tiny-instruct\): completed, {count} of {count} prompts, (\d+) comparisons\.",
        outputs[0][2],
    )
    assert generated, outputs[0][2]
    head_to_head = re.fullmatch(
        rf"Generation run 2 \(tiny-base against tiny-instruct\): completed, {count} of {count} prompts, "
        rf"(\d+) comparisons\.",
        outputs[0][3],
    )
    assert head_to_head, outputs[0][3]
    made = int(generated.group(1)) + int(head_to_head.group(1))
    assert int(generated.group(1)) >= count - 4  # random weights rarely repeat a text
    # The same weights and sampling seed under two templates: random weights often write the same text
    # both ways (about a third of the prompts), and equal answers make no comparison.
    assert int(head_to_head.group(1)) >= count // 2
    judged_by_crowd = made - DEMO_LEFT_OPEN
    # Each comparison by 5 of the 6, gold: 4 answers each from the two who log in, 8 from the others.
    simulated = 5 * judged_by_crowd + 2 * 4 + 4 * 8
    assert outputs[0][4] == (
        f"Simulated crowd: {simulated} judgments by 6 annotators of {judged_by_crowd} comparisons and 8 gold "
        "items; quality figures computed."
    )
    # The crowd prefers the instruct answer 70% of the time: the leaderboard puts it ahead of its base.
    leaderboard = re.fullmatch(
        r"Leaderboard: tiny-instruct (\d+) \[(\d+), \d+\], tiny-base 1000 \[1000, 1000\]\.", outputs[0][5]
    )
    assert leaderboard, outputs[0][5]
    assert int(leaderboard.group(1)) > 1000
    assert outputs[1][2:4] == ["Responses: already generated.", "Simulated crowd: nothing new to judge."]
    assert outputs[0][6:] == outputs[1][4:]  # the same logins, still valid

    database = sqlite3.connect(tmp_path / "rankwise.sqlite3")

    def one(sql):
        return database.execute(sql).fetchone()

    checkpoint_row = database.execute(
        "SELECT validation_status, source FROM feedback_policycheckpoint"
    ).fetchall()
    assert one(
        "SELECT count(*) FROM feedback_comparison WHERE is_gold = 0 "
        "AND project_id = (SELECT id FROM feedback_project WHERE slug = 'demo')"
    ) == (made,)
    # Left open for the people trying the demo: untouched comparisons, and the gold items.
    assert one(
        "SELECT count(*) FROM feedback_comparison WHERE status = 'open' AND is_gold = 0 "
        "AND project_id = (SELECT id FROM feedback_project WHERE slug = 'demo')"
    ) == (DEMO_LEFT_OPEN,)
    # And a writing task for every prompt of the writing project (no gold there).
    assert one(
        "SELECT count(*) FROM feedback_comparison WHERE status = 'open' AND project_id = "
        "(SELECT id FROM feedback_project WHERE slug = 'demo-writing' AND comparison_mode = 'demonstration')"
    ) == (count,)
    assert one("SELECT count(*) FROM feedback_comparison WHERE status = 'open' AND is_gold = 1") == (8,)
    assert one("SELECT count(*) FROM feedback_response WHERE source = 'model'") == (4 * count,)
    # The demo model's tokens are whole words: its noise reads as words, never as broken characters.
    texts = [
        text for (text,) in database.execute("SELECT text FROM feedback_response WHERE source = 'model'")
    ]
    assert not any("\ufffd" in text for text in texts)
    words = re.findall(r"[a-z]+", " ".join(texts))
    assert len(words) > 20 * count
    assert all(text.isprintable() for text in texts)
    assert checkpoint_row == [("valid", str(checkpoint.resolve()))] * 2  # tiny-instruct and tiny-base
    assert one("SELECT count(*) FROM feedback_leaderboardreport WHERE status = 'ready'") == (1,)
    # Seeded twice, stored once: the crowd's judgments and leases, the figures and the standings' changes.
    assert one("SELECT count(*) FROM feedback_judgment") == (simulated,)
    assert one("SELECT count(*) FROM feedback_assignment WHERE state = 'submitted'") == (simulated,)
    assert one("SELECT count(*) FROM feedback_projectquality") == (1,)
    # One change (by the gold check) for each annotator it warned or suspended, however often seeded.
    changed = one("SELECT count(*) FROM feedback_annotatorstanding WHERE status != 'active'")[0]
    assert changed >= 1
    assert one("SELECT count(*), max(changed_by_id) FROM feedback_standingchange") == (changed, None)

    # The demo's annotators judge on SQLite through the real pages: lease, reload, submit, next.
    judged = manage_ok("shell", "-v", "0", "-c", ANNOTATE_ON_SQLITE).split()
    assert judged == ["annotator1", "2", "annotator2", "2"]
    count_, distinct, lowest, highest = one(
        "SELECT count(*), count(DISTINCT comparison_id), min(choice), max(choice) FROM feedback_judgment "
        "WHERE submission_key NOT LIKE 'demo-simulated-%'"
    )
    # Two each: the same two ordinary comparisons (the one with the fewest judgments missing first), or
    # gold items, which the engine serves them while they are owed some (the crowd's simulated claims
    # count toward their gold rate).
    assert (count_, lowest, highest) == (4, "a", "a")
    assert 2 <= distinct <= 4
    assert one(
        "SELECT sum(lease_count) FROM feedback_comparison "
        "WHERE project_id = (SELECT id FROM feedback_project WHERE slug = 'demo')"
    ) == (2,)


@pytest.fixture
def demo_comparisons(capsys):
    """The seeded demo project with 40 comparisons, made by factories instead of the tiny model."""
    seed(capsys)
    project = Project.objects.get(slug="demo")
    return [
        ComparisonFactory(prompt__project=project, required_judgments=project.judgments_per_comparison)
        for _ in range(40)
    ]


def test_the_simulated_crowd_judges_all_but_a_few_comparisons_and_its_figures_are_computed(
    capsys, demo_comparisons, admin_client
):
    project = Project.objects.get(slug="demo")
    result = demo_simulate()
    assert result is not None
    assert (result.judgments, result.comparisons, result.gold_items, result.annotators) == (190, 30, 8, 6)
    simulated, untouched = demo_comparisons[:30], demo_comparisons[30:]
    counts = {
        row["pk"]: (row["judgment_count"], row["status"])
        for row in Comparison.objects.filter(is_gold=False).values("pk", "judgment_count", "status")
    }
    assert {counts[comparison.pk] for comparison in simulated} == {(5, "completed")}
    assert {counts[comparison.pk] for comparison in untouched} == {(0, "open")}
    assert Judgment.objects.count() == Assignment.objects.filter(state="submitted").count() == 190
    assert not Judgment.objects.filter(comparison__in=untouched).exists()
    gold_answers = Judgment.objects.filter(comparison__is_gold=True)
    assert sorted(Counter(gold_answers.values_list("annotator__username", flat=True)).values()) == [
        4,
        4,
        8,
        8,
        8,
        8,
    ]
    # As the engine leaves them: a standing's counts are the leases served, of which gold.
    for standing in AnnotatorStanding.objects.filter(project=project).select_related("annotator"):
        served = Assignment.objects.filter(annotator=standing.annotator, comparison__project=project)
        assert (standing.leases, standing.gold_leases, standing.gold_slots) == (
            served.count(),
            served.filter(comparison__is_gold=True).count(),
            served.filter(comparison__is_gold=True).count(),
        )
    # Spread over the past days, in id order.
    times = list(Judgment.objects.order_by("pk").values_list("created_at", flat=True))
    assert times == sorted(times)
    assert timedelta(days=5) < times[-1] - times[0] < timedelta(days=6)

    crowd = {member.username for member in DEMO_CROWD}
    assert set(project.members.values_list("username", flat=True)) == crowd | {"reviewer"}
    for user in get_user_model().objects.filter(username__startswith="demo-"):
        assert not user.has_usable_password()  # simulated: nobody logs in as them

    quality = ProjectQuality.objects.get(project=project)
    assert quality.report["judgments"] == 150
    assert len(quality.report["kappa"]["pairs"]) == 15  # every pair shares enough comparisons
    anomalies = {
        row.annotator.username: {anomaly["code"] for anomaly in row.anomalies}
        for row in AnnotatorQuality.objects.filter(project=project).select_related("annotator")
    }
    assert {"one_choice", "position_bias"} <= anomalies["demo-dee"]  # always the left response
    assert "low_agreement" in anomalies["demo-cy"]  # clicks anything
    statuses = dict(
        AnnotatorStanding.objects.filter(project=project).values_list("annotator__username", "status")
    )
    assert statuses["demo-cy"] == "suspended"
    # A careful annotator may be warned by an unlucky draw, never suspended.
    assert "suspended" not in {
        statuses[name] for name in ("annotator1", "annotator2", "demo-ada", "demo-ben")
    }
    assert StandingChange.objects.get(annotator__username="demo-cy").changed_by is None  # the gold check

    page = admin_client.get(f"/admin/feedback/project/{project.pk}/quality/").content.decode()
    assert page.count('<svg role="img"') == 4
    # The crowd's disagreements wait in the demo reviewer's queue.
    waiting = ReviewItem.objects.filter(project=project, status="pending")
    assert waiting.exists()
    reviewer = Client()
    reviewer.force_login(get_user_model().objects.get(username="reviewer"))
    queue = reviewer.get("/projects/demo/review").content.decode()
    assert f"Waiting for a reviewer: <strong>{waiting.count()}</strong>" in queue


def test_simulating_again_or_reseeding_adds_nothing(capsys, demo_comparisons):
    def stored():
        return (
            Judgment.objects.count(),
            Assignment.objects.count(),
            ProjectQuality.objects.count(),
            StandingChange.objects.count(),
            get_user_model().objects.count(),
            list(AnnotatorStanding.objects.order_by("pk").values_list("leases", "gold_leases", "status")),
            list(Comparison.objects.order_by("pk").values_list("judgment_count", "status")),
        )

    demo_simulate()
    before = stored()
    assert demo_simulate() is None
    demo_seed()
    assert demo_simulate() is None
    assert stored() == before


def test_without_comparisons_the_crowd_has_nothing_to_judge(capsys):
    seed(capsys)
    assert demo_simulate() is None
    assert not Judgment.objects.exists()
    assert not ProjectQuality.objects.exists()


ANNOTATE_ON_SQLITE = """
import json, re
from django.test import Client
from feedback.services.demo import demo_credentials_path
passwords = json.loads(demo_credentials_path().read_text())
for username in ("annotator1", "annotator2"):
    client = Client(HTTP_HOST="127.0.0.1")  # a host the demo allows
    assert client.login(username=username, password=passwords[username])
    for number in range(2):
        page = client.get("/projects/demo/annotate").content.decode()
        assignment = re.search(r'data-assignment-id="(\\d+)"', page).group(1)
        again = client.get("/projects/demo/annotate").content.decode()
        assert f'data-assignment-id="{assignment}"' in again
        body = {"submission_key": f"{username}-demo-{number}", "choice": "a", "strength": 1}
        response = client.post(
            f"/projects/demo/assignments/{assignment}/judgment", json.dumps(body), content_type="application/json"
        )
        assert response.status_code == 201, response.content
    client.get("/projects/demo/annotate")  # a third lease, left open
    print(username, number + 1)
"""


def test_make_demo_takes_a_model_of_the_users_from_the_environment(tmp_path):
    """RANKWISE_DEMO_MODEL names a model directory: the demo registers it under its own name (and the same
    weights as its base), generates with it instead of the tiny checkpoint, and says so."""
    tiny = tmp_path / "checkpoints" / "tiny-words"
    mine = tmp_path / "models" / "my-model"
    for path in (tiny, mine):
        made = manage("make_tiny_checkpoint", "--words", str(path), RANKWISE_VAR_DIR=str(tmp_path))
        assert made.returncode == 0, made.stderr
    assert manage("migrate", "--noinput", "-v", "0", RANKWISE_VAR_DIR=str(tmp_path)).returncode == 0
    seeded = manage(
        "seed_demo", "--checkpoint", str(tiny), RANKWISE_VAR_DIR=str(tmp_path), RANKWISE_DEMO_MODEL=str(mine)
    )
    assert seeded.returncode == 0, seeded.stderr
    lines = seeded.stdout.splitlines()
    assert "Demo model: my-model (The demo's model, from RANKWISE_DEMO_MODEL.)" in lines
    assert any(line.startswith("Generation run 1 (my-model): completed") for line in lines)
    assert any(
        line.startswith("Generation run 2 (my-model-as-base against my-model): completed") for line in lines
    )
    database = sqlite3.connect(tmp_path / "rankwise.sqlite3")
    assert database.execute(
        "SELECT name, source FROM feedback_policycheckpoint ORDER BY name"
    ).fetchall() == [
        ("my-model", str(mine.resolve())),
        ("my-model-as-base", str(mine.resolve())),
    ]


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        (
            {"RANKWISE_DEMO_MODEL": "/nowhere", "RANKWISE_DEMO_OPENAI_URL": "http://127.0.0.1:9/v1"},
            "Set RANKWISE_DEMO_MODEL or RANKWISE_DEMO_OPENAI_URL, not both.",
        ),
        (
            {"RANKWISE_DEMO_MODEL": "/nowhere"},
            "RANKWISE_DEMO_MODEL=/nowhere: no Hugging Face model directory there.",
        ),
        (
            {"RANKWISE_DEMO_OPENAI_URL": "http://127.0.0.1:9/v1"},
            "RANKWISE_DEMO_OPENAI_URL needs RANKWISE_DEMO_OPENAI_MODEL: the model's name there.",
        ),
    ],
)
def test_a_demo_model_setting_that_cannot_work_stops_the_seeding_with_its_reason(
    tmp_path, environment, message
):
    assert manage("migrate", "--noinput", "-v", "0", RANKWISE_VAR_DIR=str(tmp_path)).returncode == 0
    seeded = manage("seed_demo", RANKWISE_VAR_DIR=str(tmp_path), **environment)
    assert seeded.returncode == 1
    assert seeded.stderr.strip() == f"CommandError: {message}"


def test_a_served_demo_model_is_registered_for_the_openai_compatible_backend(monkeypatch):
    from feedback.services.demo import demo_model_from_environment

    monkeypatch.setenv("RANKWISE_DEMO_OPENAI_URL", "http://vllm:8000/v1")
    monkeypatch.setenv("RANKWISE_DEMO_OPENAI_MODEL", "Qwen/Qwen2.5-0.5B-Instruct")
    monkeypatch.delenv("RANKWISE_DEMO_MODEL", raising=False)
    monkeypatch.delenv("RANKWISE_DEMO_OPENAI_API_KEY", raising=False)
    model = demo_model_from_environment(None)
    assert (model.name, model.base_name, model.tiny) == (
        "Qwen/Qwen2.5-0.5B-Instruct",
        "Qwen/Qwen2.5-0.5B-Instruct-as-base",
        False,
    )
    assert model.fields == {
        "source": "Qwen/Qwen2.5-0.5B-Instruct",
        "backend": "openai",
        "api_base_url": "http://vllm:8000/v1",
        "served_model_name": "Qwen/Qwen2.5-0.5B-Instruct",
        "api_key_env": "",
    }
    monkeypatch.setenv("RANKWISE_DEMO_OPENAI_API_KEY", "secret")
    assert demo_model_from_environment(None).fields["api_key_env"] == "RANKWISE_DEMO_OPENAI_API_KEY"
