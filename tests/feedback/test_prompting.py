"""The default completion template has a plain-Python rendering; it must give Jinja's bytes exactly."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedback.prompting import (
    DEFAULT_COMPLETION_TEMPLATE,
    CompletionTemplateError,
    _compile,
    completion_prompt_render,
)

messages = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant"]),
            "content": st.lists(
                st.text(st.characters(blacklist_categories=["Cs"]))
                | st.sampled_from(["{{", "}}", "{%", "%}", "\n", "«", "\t", "<b>"])
            ).map("".join),
        }
    ),
    min_size=1,
    max_size=6,
)


def jinja(conversation):
    return _compile(DEFAULT_COMPLETION_TEMPLATE).render(messages=conversation)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_the_default_template_renders_as_jinja_does(conversation):
    assert completion_prompt_render(template=DEFAULT_COMPLETION_TEMPLATE, conversation=conversation) == jinja(
        conversation
    )


def test_an_unusual_role_or_content_goes_through_jinja():
    odd = [{"role": "tool", "content": "x"}, {"role": "user", "content": 42}]
    assert completion_prompt_render(template=DEFAULT_COMPLETION_TEMPLATE, conversation=odd) == (
        "Tool: x\n\nUser: 42\n\nAssistant:"
    )


def test_another_template_is_rendered_by_jinja():
    template = "{{ messages[-1].content|upper }}"
    assert (
        completion_prompt_render(template=template, conversation=[{"role": "user", "content": "hi"}]) == "HI"
    )
    with pytest.raises(CompletionTemplateError, match="Template error"):
        completion_prompt_render(template="{{ nope }}", conversation=[{"role": "user", "content": "hi"}])
