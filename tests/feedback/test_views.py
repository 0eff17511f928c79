import pytest
from django.urls import reverse

from tests.factories import ComparisonFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def test_home_needs_a_login(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/"


def test_an_annotator_sees_only_their_active_projects_with_progress(annotator, annotator_client):
    mine = ProjectFactory(name="Mine")
    mine.annotators.add(annotator)
    ComparisonFactory(prompt__project=mine)
    ComparisonFactory(prompt__project=mine, status="completed")
    ProjectFactory(name="Not mine")
    inactive = ProjectFactory(name="Archived", is_active=False)
    inactive.annotators.add(annotator)
    response = annotator_client.get(reverse("home"))
    assert [project.name for project in response.context["projects"]] == ["Mine"]
    assert "<td>1 / 2</td>" in response.content.decode()


def test_staff_see_every_active_project(admin_client):
    ProjectFactory(name="B")
    ProjectFactory(name="A")
    response = admin_client.get(reverse("home"))
    assert [project.name for project in response.context["projects"]] == ["A", "B"]


def test_login_page_and_logout(annotator, client):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": annotator.username, "password": "wrong"})
    assert "Your username and password didn't match." in response.content.decode()
    assert client.login(username=annotator.username, password="correct horse battery staple")
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_healthz_answers_when_the_database_does(client):
    response = client.get("/healthz")
    assert (response.status_code, response.content, response["Content-Type"]) == (200, b"ok", "text/plain")


def test_anonymous_users_have_no_projects():
    from django.contrib.auth.models import AnonymousUser

    from feedback.selectors import projects_for_user

    ProjectFactory()
    assert list(projects_for_user(user=AnonymousUser())) == []
