"""Untrusted text (model output, prompts, guidelines) to safe HTML: markdown with raw HTML off, then an
allowlist sanitizer.

Two independent layers, so that a bug in one is not an XSS:
1. markdown-it-py in CommonMark mode with `html=False`: any HTML in the text comes out escaped, as text.
   Its link validation already refuses `javascript:`, `vbscript:`, `file:` and most `data:` URLs.
2. nh3 (the Rust `ammonia` sanitizer) keeps only the tags and attributes markdown itself produces, links
   only to http(s) and mailto, and Pygments' highlighting classes; everything else is dropped.

Images are not allowed at all: an image in model output would make the annotator's browser fetch a URL
the model chose (a tracking pixel at best); its alt text is kept.
"""

from __future__ import annotations

from functools import lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

# Longer fenced blocks are shown plain: highlighting is linear but not free, and a pathological answer
# should not make the page slow.
HIGHLIGHT_MAX_CHARS = 20_000

ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote", "a", "span", "div",
    "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}}
ALLOWED_CLASSES = {
    "div": {"highlight"},
    "span": {css_class for css_class in STANDARD_TYPES.values() if css_class},
    "code": {"highlight"},
}
URL_SCHEMES = {"http", "https", "mailto"}

_formatter = HtmlFormatter(nowrap=True)


def _highlight(code: str, language: str, _attributes: str) -> str:
    """markdown-it's highlight hook: Pygments spans for a known language, "" to let markdown-it escape."""
    if not language or len(code) > HIGHLIGHT_MAX_CHARS:
        return ""
    try:
        lexer = get_lexer_by_name(language.split()[0])
    except ClassNotFound:
        return ""
    return f'<pre><code class="highlight">{highlight(code, lexer, _formatter)}</code></pre>\n'


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt(
        "commonmark", {"html": False, "linkify": False, "typographer": False, "highlight": _highlight}
    ).enable(["table", "strikethrough"])


@lru_cache(maxsize=1)
def _cleaner() -> nh3.Cleaner:
    return nh3.Cleaner(
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style"},
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow ugc",
        allowed_classes=ALLOWED_CLASSES,
        filter_style_properties={"text-align"},
        strip_comments=True,
    )


def markdown_to_safe_html(text: str) -> SafeString:
    """Render untrusted markdown to HTML that is safe to put in a page as is."""
    tokens = _markdown().parse(text)
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                # An image becomes its alt text: no request to a URL the text chose.
                child.type, child.tag, child.nesting, child.attrs = "text", "", 0, {}
                child.content = (
                    "".join(grandchild.content for grandchild in child.children or ()) or "[image]"
                )
                child.children = None
    html = _markdown().renderer.render(tokens, _markdown().options, {})
    return mark_safe(_cleaner().clean(html))  # noqa: S308 — sanitized by the allowlist just above
