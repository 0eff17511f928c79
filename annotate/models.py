"""The annotation app keeps its data in `feedback`; its only model is a handle for an admin page."""

from feedback.models import Judgment


class AnnotatorStatistics(Judgment):
    """Judgments seen per annotator and project: the admin's "Annotator statistics" page (read-only).

    A proxy, so no table: it exists to give the page its place, URL and view permission in the admin.
    """

    class Meta:
        proxy = True
        verbose_name = "annotator statistics"
        verbose_name_plural = "annotator statistics"
