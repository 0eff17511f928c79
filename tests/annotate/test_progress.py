"""Project completion is counted off the request path: pages read one stored row and ask a worker to count
again when it is overdue; beat counts every active project."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from annotate.models import ProjectCompletion
from annotate.progress import PROGRESS_REFRESH_SECONDS, project_completion_count, project_progress
from annotate.selectors import project_get_for_annotator
from annotate.tasks import refresh_progress
from feedback.models import Project
from tests.factories import AnnotatorFactory, ComparisonFactory, ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _empty_cache():
    cache.clear()
    yield
    cache.clear()


def project_with(statuses):
    project = ProjectFactory()
    for status in statuses:
        ComparisonFactory(prompt__project=project, status=status)
    return project


def test_a_count_stores_completed_and_total_without_the_retired():
    project = project_with(["open", "completed", "completed", "retired"])
    project_with(["completed"])  # another project's comparisons do not count
    completion = project_completion_count(project_id=project.pk)
    assert (completion.completed, completion.total) == (2, 3)
    assert ProjectCompletion.objects.get(project=project).completed == 2


def progress_now(project: Project):
    """The progress as a new request sees it (a project instance caches its completion once read)."""
    return project_progress(project=Project.objects.get(pk=project.pk))


def test_a_page_reads_the_stored_count_with_its_project_and_never_counts(django_assert_num_queries):
    project = project_with(["completed", "open"])
    annotator = AnnotatorFactory()
    project.members.add(annotator)
    project_completion_count(project_id=project.pk)
    ComparisonFactory(prompt__project=project, status="completed")  # not counted yet
    with django_assert_num_queries(1):  # the project lookup every page makes, and nothing more
        page_project = project_get_for_annotator(user=annotator, slug=project.slug)
        progress = project_progress(project=page_project)
    assert (progress.completed, progress.total, progress.percent, progress.counted) == (1, 2, 50, True)
    plain = Project.objects.get(pk=project.pk)
    with django_assert_num_queries(1):  # loaded without it: one primary-key read
        assert project_progress(project=plain) == progress


def test_a_fresh_count_asks_for_nothing(django_capture_on_commit_callbacks):
    project = project_with(["open"])
    project_completion_count(project_id=project.pk)
    with django_capture_on_commit_callbacks() as sent:
        progress_now(project)
    assert sent == []


def test_a_missing_or_overdue_count_asks_a_worker_once_per_period(django_capture_on_commit_callbacks):
    project = project_with(["completed", "open"])
    with django_capture_on_commit_callbacks() as sent:
        progress = progress_now(project)
        progress_now(project)
    assert (progress.counted, progress.total, len(sent)) == (False, 0, 1)

    project_completion_count(project_id=project.pk)
    ProjectCompletion.objects.filter(project=project).update(
        counted_at=timezone.now() - timedelta(seconds=PROGRESS_REFRESH_SECONDS + 1)
    )
    cache.clear()  # the period of the first request has passed
    with django_capture_on_commit_callbacks() as sent:
        progress = progress_now(project)
    assert (progress.completed, progress.total, progress.counted, len(sent)) == (1, 2, True, 1)


def test_beat_counts_every_active_project_and_a_request_counts_one():
    active, other = project_with(["completed"]), project_with(["open", "open"])
    inactive = project_with(["open"])
    inactive.is_active = False
    inactive.save()
    assert refresh_progress() >= 2
    counted = dict(ProjectCompletion.objects.values_list("project_id", "total"))
    assert (counted[active.pk], counted[other.pk], inactive.pk in counted) == (1, 2, False)
    assert refresh_progress(inactive.pk) == 1
    assert ProjectCompletion.objects.get(project=inactive).total == 1


def test_a_request_for_a_deleted_project_is_dropped():
    project = project_with([])
    pk = project.pk
    project.delete()
    assert project_completion_count(project_id=pk) is None
    assert not ProjectCompletion.objects.filter(project_id=pk).exists()


def test_the_project_list_reads_every_projects_completion_in_one_query(django_assert_num_queries):
    from annotate.progress import projects_progress

    projects = [project_with(["completed", "open"]) for _ in range(3)]
    for project in projects[:2]:
        project_completion_count(project_id=project.pk)
    with django_assert_num_queries(1):
        progress = projects_progress(project_ids=[project.pk for project in projects])
    assert [(progress[p.pk].completed, progress[p.pk].total, progress[p.pk].counted) for p in projects] == [
        (1, 2, True),
        (1, 2, True),
        (0, 0, False),
    ]
