"""The annotation app keeps its data in `feedback`; here are a handle for an admin page and the
projects' completion counts."""

from django.db import models

from feedback.models import Judgment, Project


class AnnotatorStatistics(Judgment):
    """Judgments seen per annotator and project: the admin's "Annotator statistics" page (read-only).

    A proxy, so no table: it exists to give the page its place, URL and view permission in the admin.
    """

    class Meta:
        proxy = True
        verbose_name = "annotator statistics"
        verbose_name_plural = "annotator statistics"


class ProjectCompletion(models.Model):
    """A project's completed and total comparisons, counted off the request path.

    The count is a scan of the project's comparisons (80 ms at a million), so annotators' pages never run
    it: they read this row, and celery beat (`annotate.refresh_progress`) counts again every
    `PROGRESS_REFRESH_SECONDS`. A page that finds the row missing or older than that asks a worker to
    count (once per process and period), which keeps it current where beat does not run (the demo).
    """

    project = models.OneToOneField(
        Project, primary_key=True, on_delete=models.CASCADE, related_name="completion"
    )
    completed = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    counted_at = models.DateTimeField()

    class Meta:
        verbose_name = "project completion"

    def __str__(self) -> str:
        return f"{self.project_id}: {self.completed}/{self.total}"
