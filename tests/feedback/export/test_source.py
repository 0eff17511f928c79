"""The two sources of comparison groups: PostgreSQL's binary stream and the ORM merge other backends
use. Both run here on PostgreSQL and must yield equal groups, for every format's column set and filter."""

import pytest
from django.db import connection, transaction

from feedback.export import source
from feedback.export.options import ExportOptions
from feedback.export.snapshot import judgment_high_water_mark
from feedback.export.source import _groups_by_orm, _groups_by_stream, comparison_groups
from feedback.models import Judgment
from tests.factories import AnnotatorFactory, PolicyCheckpointFactory, ProjectFactory, PromptFactory
from tests.feedback.export.conftest import comparison_of, judge


def both_sources(options, *, mark):
    full = options.format in ("rankings", "judgments")
    with transaction.atomic():
        by_stream = list(_groups_by_stream(options, high_water_mark=mark, full=full))
    with transaction.atomic():
        by_orm = list(_groups_by_orm(options, high_water_mark=mark, full=full))
    return by_stream, by_orm


@pytest.mark.parametrize(
    "options",
    [
        {"format": "preference"},
        {"format": "judgments"},
        {"format": "rankings", "exclude_flagged": False},
        {"format": "unpaired", "projects": "chat"},
        {"format": "judgments", "checkpoints": "alpha,beta", "exclude_annotators": "rater-2"},
        {"format": "preference", "since": "2000-01-01T00:00:00Z", "until": "2100-01-01T00:00:00Z"},
    ],
)
def test_stream_and_orm_sources_yield_equal_groups(corpus, options):
    parsed = ExportOptions.from_mapping(options)
    by_stream, by_orm = both_sources(parsed, mark=judgment_high_water_mark())
    assert by_stream == by_orm
    assert by_stream  # the corpus has comparisons under every option above


def give_one_judgment_every_field():
    judgment = Judgment.objects.filter(flags=[]).order_by("id").first()
    Judgment.objects.filter(pk=judgment.pk).update(
        rationale="Clearer, «and» shorter.", time_spent_ms=12_345, ratings={"1": {"helpful": 4}}
    )
    return Judgment.objects.select_related("annotator").get(pk=judgment.pk)


def test_the_stream_source_reads_every_field_of_a_judgment(corpus):
    judgment = give_one_judgment_every_field()
    parsed = ExportOptions.from_mapping({"format": "judgments"})
    with transaction.atomic():
        groups = list(comparison_groups(parsed, high_water_mark=judgment_high_water_mark()))
    records = {record.id: record for group in groups for record in group.judgments}
    record = records[judgment.pk]
    assert (record.annotator_id, record.annotator, record.choice, record.ranking, record.strength) == (
        judgment.annotator_id,
        judgment.annotator.username,
        judgment.choice,
        judgment.ranking,
        judgment.strength,
    )
    assert (record.ratings, record.rationale, record.flags, record.time_spent_ms, record.created_at) == (
        judgment.ratings,
        judgment.rationale,
        judgment.flags,
        judgment.time_spent_ms,
        judgment.created_at,
    )


def test_lean_formats_read_only_the_verdict(corpus):
    give_one_judgment_every_field()
    parsed = ExportOptions.from_mapping({"format": "preference"})
    with transaction.atomic():
        groups = list(comparison_groups(parsed, high_water_mark=judgment_high_water_mark()))
    records = [record for group in groups for record in group.judgments]
    assert records
    assert all(
        record.rationale == "" and record.ratings == {} and record.created_at is None for record in records
    )


def test_a_stream_closed_early_leaves_the_connection_usable(corpus):
    parsed = ExportOptions.from_mapping({"format": "judgments"})
    with transaction.atomic():
        groups = comparison_groups(parsed, high_water_mark=judgment_high_water_mark())
        next(groups)
        groups.close()  # what a client that drops a streaming download does to the generator
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM feedback_judgment")
            assert cursor.fetchone()[0] == Judgment.objects.count()


def test_a_large_stream_closed_mid_way_is_cancelled_and_leaves_the_transaction_usable(db, monkeypatch):
    """Closed while the server is still sending (12 MB, far more than the socket buffers hold), the
    statement is cancelled; the caller's transaction goes on, with its own writes."""
    monkeypatch.setattr(source, "STREAM_ROWS", 2)
    project = ProjectFactory()
    checkpoint = PolicyCheckpointFactory()
    annotator = AnnotatorFactory()
    for index in range(60):
        prompt = PromptFactory(project=project)
        texts = [(checkpoint, f"{index}-{side}-" + "long answer " * 8_500) for side in "ab"]
        judge(comparison_of(project, prompt, texts), annotator, "a")
    parsed = ExportOptions.from_mapping({"format": "preference"})
    with transaction.atomic():
        Judgment.objects.filter(pk=Judgment.objects.order_by("pk").first().pk).update(rationale="kept")
        groups = comparison_groups(parsed, high_water_mark=judgment_high_water_mark())
        assert len(next(groups).entries[0].text) > 100_000
        groups.close()
        assert Judgment.objects.count() == 60
        assert Judgment.objects.filter(rationale="kept").count() == 1
