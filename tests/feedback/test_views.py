import pytest
from django.urls import reverse

from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def test_login_page_and_logout(annotator, client):
    assert client.get(reverse("login")).status_code == 200
    response = client.post(reverse("login"), {"username": annotator.username, "password": "wrong"})
    assert "Your username and password didn't match." in response.content.decode()
    assert client.login(username=annotator.username, password="correct horse battery staple")
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("annotate:projects")).status_code == 302


def test_healthz_answers_when_the_database_does(client):
    response = client.get("/healthz")
    assert (response.status_code, response.content, response["Content-Type"]) == (200, b"ok", "text/plain")


def test_anonymous_users_have_no_projects():
    from django.contrib.auth.models import AnonymousUser

    from feedback.selectors import projects_open_to

    ProjectFactory()
    assert list(projects_open_to(user=AnonymousUser())) == []


def test_every_page_carries_the_site_icon_and_favicon_ico_leads_to_it(client, admin_user):
    from django.contrib.staticfiles import finders

    icon = client.get("/favicon.ico")
    assert icon.status_code == 301
    assert icon["Location"] == "/static/rankwise/favicon.svg"
    assert finders.find("rankwise/favicon.svg")
    link = '<link rel="icon" href="/static/rankwise/favicon.svg" type="image/svg+xml">'
    assert link in client.get("/accounts/login/").content.decode()
    assert link in client.get("/admin/login/").content.decode()
    client.force_login(admin_user)
    for page in ("/", "/admin/", "/admin/feedback/project/add/", "/admin/feedback/project/"):
        assert link in client.get(page).content.decode(), page
