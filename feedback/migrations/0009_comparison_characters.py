"""Comparison.characters: its responses' characters together, stored when it is made; existing
comparisons are filled here, in one UPDATE."""

from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Sum
from django.db.models.functions import Length


def fill(apps, schema_editor):
    Comparison = apps.get_model("feedback", "Comparison")
    ComparisonResponse = apps.get_model("feedback", "ComparisonResponse")
    total = (
        ComparisonResponse.objects.filter(comparison=OuterRef("pk"))
        .order_by()
        .values("comparison")
        .annotate(total=Sum(Length("response__text")))
        .values("total")
    )
    Comparison.objects.update(characters=Subquery(total))


class Migration(migrations.Migration):
    dependencies = [
        ("feedback", "0008_review_queue"),
    ]

    operations = [
        migrations.AddField(
            model_name="comparison",
            name="characters",
            field=models.PositiveIntegerField(
                blank=True, editable=False, help_text="Its responses' characters together.", null=True
            ),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=True),
    ]
