"""Plain-text prompts for base (completion) checkpoints, from a project's completion template.

A base model does not follow chat markup, so its prompt is built from the conversation by a Jinja
template the project owns (the same template language Hugging Face chat templates use). Templates are
written by admins but rendered on workers, so they run in Jinja's immutable sandbox: no attribute access
to Python internals, no mutation, undefined names are an error rather than an empty string.

The template sees `messages`, a list of `{"role": ..., "content": ...}` in conversation order, the last
one the user's. The default writes each turn as `Role: content` and ends with `Assistant:`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from django.core.exceptions import ValidationError
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

COMPLETION_PROMPT_MAX_CHARS = 1_000_000

_environment = ImmutableSandboxedEnvironment(
    autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True
)


class CompletionTemplateError(ValueError):
    pass


@lru_cache(maxsize=64)
def _compile(source: str) -> Any:
    try:
        return _environment.from_string(source)
    except TemplateError as error:
        line = getattr(error, "lineno", None)
        where = f" (line {line})" if line else ""
        raise CompletionTemplateError(f"Template syntax error{where}: {error.message or error}") from None


# A project's template unless its admin writes another.
DEFAULT_COMPLETION_TEMPLATE = (
    "{% for m in messages %}{{ m.role|title }}: {{ m.content }}\n\n{% endfor %}Assistant:"
)
# The default template is also rendered as plain Python, for the roles a conversation may hold: Jinja
# costs about 14 µs a render, which an export of a million judgments feels. The tests hold both equal.
_ROLE_TITLES = {"system": "System", "user": "User", "assistant": "Assistant"}


def _default_render(conversation: list[dict[str, str]]) -> str | None:
    parts = []
    for message in conversation:
        title = _ROLE_TITLES.get(message["role"])
        content = message["content"]
        if title is None or type(content) is not str:
            return None  # anything unusual goes through Jinja
        parts.append(f"{title}: {content}\n\n")
    parts.append("Assistant:")
    return "".join(parts)


def completion_prompt_render(*, template: str, conversation: list[dict[str, str]]) -> str:
    """Render the prompt text for a base checkpoint; CompletionTemplateError says what went wrong."""
    text = _default_render(conversation) if template == DEFAULT_COMPLETION_TEMPLATE else None
    if text is None:
        compiled = _compile(template)
        try:
            text = compiled.render(messages=[dict(message) for message in conversation])
        except TemplateError as error:
            raise CompletionTemplateError(f"Template error: {error.message or error}") from None
    if not text.strip():
        raise CompletionTemplateError("The template rendered an empty prompt.")
    if len(text) > COMPLETION_PROMPT_MAX_CHARS:
        raise CompletionTemplateError("The template rendered a prompt over 1,000,000 characters.")
    return text


def validate_completion_template(value: str) -> None:
    """Model-field validator: the template compiles and renders a sample conversation."""
    sample = [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "List three colours."},
    ]
    try:
        completion_prompt_render(template=value, conversation=sample)
    except CompletionTemplateError as error:
        raise ValidationError(str(error)) from None
