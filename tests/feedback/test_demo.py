"""`make demo`'s seed: users for each role, the demo project and its bundled prompts, repeatable."""

import json
import re
import sqlite3
from collections import Counter

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from feedback.models import Project, Prompt
from feedback.services.demo import DEMO_PROMPTS
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
    ]
    assert first["members"] == ["annotator1", "annotator2"]
    assert len(first["prompts"]) >= 40
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
    prompts = Prompt.objects.filter(project__slug="demo")
    categories = Counter(prompts.values_list("category", flat=True))
    assert {"list", "summarize", "explain", "write", "other"} <= set(categories)
    assert min(categories[name] for name in ("list", "summarize", "explain", "write", "other")) >= 5
    multi_turn = [prompt for prompt in prompts if prompt.turn_count > 1]
    assert len(multi_turn) >= 8
    assert any(prompt.conversation[0]["role"] == "system" for prompt in prompts)
    assert prompts.count() == sum(1 for line in DEMO_PROMPTS.read_text().splitlines() if line.strip())


def test_make_demo_seeding_on_its_own_sqlite_database_is_repeatable(tmp_path):
    """The demo's real configuration and steps (as `make demo-setup` runs them): no DATABASE_URL (a SQLite
    file), no broker, so validation and generation run inline; run twice."""
    checkpoint = tmp_path / "checkpoints" / "tiny-instruct"

    def manage_ok(*args):
        result = manage(*args, RANKWISE_VAR_DIR=str(tmp_path))
        assert result.returncode == 0, result.stderr
        return result.stdout

    manage_ok("make_tiny_checkpoint", str(checkpoint))
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
    generated = re.fullmatch(
        rf"Generation run 1: completed, {count} of {count} prompts, (\d+) comparisons\.", outputs[0][1]
    )
    assert generated, outputs[0][1]
    assert outputs[1][1] == "Responses: already generated."
    assert outputs[0][2:] == outputs[1][2:]  # the same logins, still valid

    database = sqlite3.connect(tmp_path / "rankwise.sqlite3")
    comparisons = database.execute(
        "SELECT count(*) FROM feedback_comparison WHERE status = 'open'"
    ).fetchone()[0]
    responses = database.execute("SELECT count(*) FROM feedback_response").fetchone()[0]
    checkpoint_row = database.execute(
        "SELECT validation_status, source FROM feedback_policycheckpoint"
    ).fetchall()
    assert comparisons == int(generated.group(1)) >= count - 4  # random weights rarely repeat a text
    assert responses == 2 * count
    assert checkpoint_row == [("valid", str(checkpoint.resolve()))]

    # The demo's annotators judge on SQLite through the real pages: lease, reload, submit, next.
    judged = manage_ok("shell", "-v", "0", "-c", ANNOTATE_ON_SQLITE).split()
    assert judged == ["annotator1", "2", "annotator2", "2"]
    assert database.execute(
        "SELECT count(*), count(DISTINCT comparison_id), min(choice), max(choice) FROM feedback_judgment"
    ).fetchone() == (4, 2, "a", "a")
    assert database.execute("SELECT sum(lease_count) FROM feedback_comparison").fetchone() == (2,)


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
