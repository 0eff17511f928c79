import pytest

from feedback.export.options import ExportOptions, ExportOptionsError


def errors_of(**data):
    with pytest.raises(ExportOptionsError) as caught:
        ExportOptions.from_mapping(data)
    return caught.value.errors


def test_defaults_and_canonical_round_trip():
    options = ExportOptions.from_mapping(
        {"format": "unpaired", "projects": "b,a,a", "since": "2026-11-01T10:00+01:00"}
    )
    assert options.projects == ("a", "b")
    assert options.both_bad == "undesirable"  # the unpaired default; "drop" elsewhere
    assert options.to_dict()["since"] == "2026-11-01T09:00:00Z"
    assert ExportOptions.from_mapping(options.to_dict()) == options
    consensus = ExportOptions.from_mapping({"format": "preference", "aggregation": "consensus"})
    assert consensus.columns == ("agreement", "reviewed", "votes")
    assert consensus.both_bad == "drop"
    # Options only some formats read stay out of the others' canonical form (and so of their digest).
    assert "answers" not in options.to_dict()
    assert "edit_pairs" not in options.to_dict()
    answers = ExportOptions.from_mapping({"format": "prompt-completion", "answers": "written,chosen,written"})
    assert answers.answers == ("chosen", "written")
    assert answers.to_dict()["answers"] == ["chosen", "written"]
    assert "edit_pairs" not in answers.to_dict()
    assert ExportOptions.from_mapping(answers.to_dict()) == answers
    assert ExportOptions.from_mapping({"format": "edits"}).to_dict()["edit_pairs"] == "edit-over-original"
    assert ExportOptions.from_mapping({"format": "unpaired-conversational"}).both_bad == "undesirable"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, {"format": ["This field is required."]}),
        (
            {"format": "csv"},
            {
                "format": [
                    "'csv' is not one of: preference, preference-conversational, preference-conversational-implicit, "
                    "unpaired, unpaired-conversational, hh-rlhf, rankings, sft, prompt-completion, "
                    "prompt-completion-conversational, edits, edits-conversational, prompt-only, prompt-only-conversational, judgments, gold."
                ]
            },
        ),
        ({"format": "sft", "colour": 1}, {"non_field_errors": ["Unknown options: colour."]}),
        ({"format": "sft", "min_judgments": 0}, {"min_judgments": ["An integer from 1 to 1000."]}),
        ({"format": "sft", "min_judgments": True}, {"min_judgments": ["An integer from 1 to 1000."]}),
        ({"format": "sft", "min_agreement": "NaN"}, {"min_agreement": ["A number from 0 to 1."]}),
        ({"format": "sft", "test_fraction": 0.95}, {"test_fraction": ["A number from 0 to 0.9."]}),
        (
            {"format": "sft", "since": "yesterday"},
            {"since": ["An ISO 8601 date-time, e.g. 2026-11-01T00:00:00Z."]},
        ),
        (
            {"format": "sft", "since": "2026-11-02T00:00Z", "until": "2026-11-01T00:00Z"},
            {"until": ["Must be after since."]},
        ),
        (
            {"format": "sft", "projects": [1]},
            {"projects": ["A list of strings (or one comma-separated string)."]},
        ),
        ({"format": "sft", "exclude_flagged": "maybe"}, {"exclude_flagged": ["true or false."]}),
        (
            {"format": "sft", "split_salt": "a\x00b"},
            {"split_salt": ["A non-empty string of at most 100 characters."]},
        ),
        ({"format": "sft", "margin_scale": [1, -2]}, {"margin_scale": ["Margins cannot be negative."]}),
        (
            {"format": "sft", "columns": "ids,colour"},
            {
                "columns": [
                    "Unknown columns colour; choose from margin, ids, checkpoints, category, agreement, votes, reviewed."
                ]
            },
        ),
        (
            {"format": "judgments", "aggregation": "consensus"},
            {"aggregation": ["The judgments format is one row per judgment: use aggregation 'raw'."]},
        ),
        (
            {"format": "unpaired", "ties": "both-ways"},
            {"ties": ["A tie says nothing about desirability: unpaired exports drop ties."]},
        ),
        (
            {"format": "preference", "both_bad": "undesirable"},
            {"both_bad": ["'undesirable' applies to the unpaired formats only; pair formats drop both-bad."]},
        ),
        (
            {"format": "sft", "columns": "margin"},
            {
                "columns": [
                    "The margin column exists in the hh-rlhf, preference, preference-conversational, "
                    "preference-conversational-implicit formats."
                ]
            },
        ),
        (
            {"format": "preference", "answers": "chosen"},
            {
                "answers": [
                    "Applies to the prompt-completion, prompt-completion-conversational format(s) only."
                ]
            },
        ),
        (
            {"format": "prompt-completion", "answers": "written,typed"},
            {"answers": ["A non-empty list of: chosen, edited, written."]},
        ),
        (
            {"format": "edits", "aggregation": "consensus"},
            {"aggregation": ["People's answers and prompts are not aggregated: use aggregation 'raw'."]},
        ),
        (
            {"format": "prompt-only", "columns": "ids"},
            {"columns": ["This format carries its own fields; extra columns do not apply."]},
        ),
        (
            {"format": "sft", "edit_pairs": "expanded"},
            {"edit_pairs": ["Applies to the edits, edits-conversational format(s) only."]},
        ),
        (
            {"format": "preference", "columns": "votes"},
            {"columns": ["The votes column exists in consensus exports only."]},
        ),
        (
            {"format": "judgments", "columns": "ids"},
            {"columns": ["The judgments format already carries every field; extra columns do not apply."]},
        ),
    ],
)
def test_refusals_name_their_field(data, expected):
    assert errors_of(**data) == expected
