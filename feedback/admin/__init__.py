"""The admin: where staff run projects. Thin: lists, filters, and pages and actions calling the services.

Model output, checkpoint reports and worker errors are untrusted text: they reach HTML only through
`format_html` (or Django's escaping readonly fields), never `mark_safe`.

One module per area; importing this package imports them all, and so registers every model admin:
- `common`: what the others share: `percent`, `key_value_table` (a JSON object as an escaped table),
  `field_errors` (a service's ValidationError by field), `import_error_messages` (a refused file's bad
  lines), `local_time`, `staff_user`, `ReadOnlyInline`, `ReadOnlyModelAdmin`.
- `projects`: `ProjectAdmin`, with its generation runs inline.
- `prompts`: `PromptAdmin`, its import page (`PromptImportForm`) and hand-written prompts (`PromptForm`).
- `checkpoints`: `PolicyCheckpointAdmin` and its validation action.
- `generation`: `GenerationRunAdmin`, its start page (`GenerationRunStartForm`) and chunks inline, and
  `start_runs`, which the projects' and prompts' "generate responses" actions call.
- `comparisons`: `ResponseAdmin`, `ComparisonAdmin` (responses, judgments and open leases inline; gold:
  marking one, importing a file, its verdict by label), `AssignmentAdmin`, `JudgmentAdmin`.
- `tokens`: `ApiTokenAdmin`, whose add page shows a new token's secret once.
- `exports`: `ExportAdmin`, the export form, downloads.
- `quality`: a project's quality page (charts from `charts`, drawn on the server into inline SVG, each
  with its numbers), linked from the project's page.
- `standings`: `AnnotatorStandingAdmin` with its suspend and reinstate pages and its history, and the
  read-only `StandingChangeAdmin`.
Templates are in `feedback/templates/admin/feedback/`.
"""

from feedback.admin import (
    checkpoints,
    comparisons,
    exports,
    generation,
    projects,
    prompts,
    quality,
    standings,
    tokens,
)
from feedback.admin.common import ReadOnlyModelAdmin
from feedback.admin.comparisons import AssignmentInline

__all__ = [
    "AssignmentInline",
    "ReadOnlyModelAdmin",
    "checkpoints",
    "comparisons",
    "exports",
    "generation",
    "projects",
    "prompts",
    "quality",
    "standings",
    "tokens",
]
