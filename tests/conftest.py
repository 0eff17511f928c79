import pytest
from django.test import Client

from tests.factories import TEST_PASSWORD, AdminFactory, AnnotatorFactory, DataEngineerFactory


@pytest.fixture
def admin_user(db):
    return AdminFactory(username="admin-user")


@pytest.fixture
def annotator(db):
    return AnnotatorFactory(username="annotator-user")


@pytest.fixture
def data_engineer(db):
    return DataEngineerFactory(username="engineer-user")


def logged_in_client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=TEST_PASSWORD)
    return client


@pytest.fixture
def admin_client(admin_user):
    return logged_in_client(admin_user)


@pytest.fixture
def annotator_client(annotator):
    return logged_in_client(annotator)
