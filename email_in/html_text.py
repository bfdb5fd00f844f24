"""HTML to plain text with the standard library's parser, keeping what reply reading needs.

Quoted HTML (`<blockquote>`) becomes `>`-prefixed lines, `<hr>` an Outlook-style separator and a
signature block a `--` line, so that one plain-text reader strips quotes and signatures of both.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

SEPARATOR = "_" * 32
# Paragraph-like blocks are set apart by a blank line; the other blocks just end a line.
_PARAGRAPH = frozenset(
    {"blockquote", "dl", "h1", "h2", "h3", "h4", "h5", "h6", "ol", "p", "pre", "table", "ul"}
)
_LINE = frozenset(
    {"address", "article", "aside", "dd", "div", "dt", "footer", "form", "header", "li",
     "section", "td", "th", "tr"}
)  # fmt: skip
_HIDDEN = frozenset({"head", "script", "style", "title", "template", "noscript"})
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "wbr"})
_SPACES = re.compile(r"[ \t\r\n\f]+")
# Mail nests a few dozen elements and quotes a thread a few levels deep. Deeper nesting is not
# followed: each stray end tag looked through every open element, and each line carried a
# `> ` per level (quadratic time and memory in the depth of hostile HTML).
MAX_OPEN = 256
MAX_QUOTES = 16
_SIGNATURE = re.compile(r"signature", re.IGNORECASE)


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._depth = 0  # blockquote nesting where the current line started
        self._quote = 0  # blockquote nesting now
        self._hidden = 0
        self._pre = 0
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID and len(self._stack) >= MAX_OPEN:
            return  # not followed (see MAX_OPEN), nor is its end tag
        if tag in _HIDDEN:
            self._hidden += 1
        if tag == "br":
            self._break()
        elif tag == "hr":
            self._end_line()
            self._emit(SEPARATOR)
        self._block(tag)
        if tag == "blockquote":
            self._quote += 1
        if tag == "pre":
            self._pre += 1
        marks = " ".join(value or "" for name, value in attrs if name in ("class", "id"))
        if tag in ("div", "td", "table") and _SIGNATURE.search(marks):
            self._emit("--")
        if tag not in _VOID:
            self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag not in self._stack:
            return  # stray end tag: HTML in mail is often broken
        while self._stack:
            open_tag = self._stack.pop()
            self._close(open_tag)
            if open_tag == tag:
                break

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.handle_endtag(tag)

    def handle_data(self, data: str) -> None:
        if self._hidden:
            return
        if self._pre:
            parts = data.split("\n")
            for i, part in enumerate(parts):
                if i:
                    self._break()
                self._add(part)
            return
        self._add(_SPACES.sub(" ", data))

    def close(self) -> None:
        super().close()
        self._end_line()

    def _close(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        self._block(tag)
        if tag == "blockquote":
            self._quote = max(0, self._quote - 1)
        if tag == "pre":
            self._pre = max(0, self._pre - 1)

    def _add(self, text: str) -> None:
        if not text:
            return
        if not self._line:
            self._depth = self._quote
            if not self._pre:
                text = text.lstrip(" ")
                if not text:
                    return
        self._line.append(text)

    def _block(self, tag: str) -> None:
        if tag in _PARAGRAPH:
            self._end_line()
            if self.lines and self.lines[-1] != "":
                self.lines.append("")
        elif tag in _LINE:
            self._end_line()

    def _break(self) -> None:
        """A <br>: ends the line, or on an empty line makes a blank one (Gmail's <div><br>)."""
        if self._line:
            self._end_line()
        else:
            self.lines.append("")

    def _end_line(self) -> None:
        text = "".join(self._line).strip(" ")
        if text:
            self._emit(text)
        self._line = []

    def _emit(self, text: str) -> None:
        depth = min(self._depth if self._line else self._quote, MAX_QUOTES)
        self.lines.append(("> " * depth) + text if depth else text)
        self._line = []


def html_to_text(html: str) -> str:
    """The visible text of an HTML body, one line per block, quotes marked with `>`."""
    parser = _Text()
    parser.feed(closed(html))
    parser.close()
    return "\n".join(parser.lines).strip("\n")


def closed(html: str) -> str:
    """The HTML with nothing left open, in one pass: comments, declarations (`<!`, CDATA) and
    processing instructions removed (nothing in them is read), an unterminated comment
    hiding the rest as in browsers, and a `<` whose tag does not end (its `>`, outside quoted
    values) before the next `<` written as `&lt;` (shown as text).

    html.parser (the Python 3.11 here) searches to the end of the input for the end of every
    construct left open, and when it is not found goes on one character later: 8,000 `<a x`
    (32 KB) took over 5 s, a whole MiB of them hours. After this pass every tag it sees ends
    before the next `<`, so no search goes further than that.
    """
    out: list[str] = []
    size = len(html)
    i = 0
    while True:
        start = html.find("<", i)
        if start < 0:
            out.append(html[i:])
            break
        out.append(html[i:start])
        if html.startswith("<!--", start):
            end = html.find("-->", start + 4)
            if end < 0:
                break  # an unterminated comment: browsers hide the rest too
            i = end + 3
            continue
        following = html.find("<", start + 1)
        limit = following if following >= 0 else size
        if html[start + 1 : start + 2] in ("!", "?"):
            end = html.find(">", start + 1, limit)  # never past the next <: linear in all
            if end >= 0:
                i = end + 1  # <!DOCTYPE>, <![CDATA[...]]>, <![endif]>, <?xml?>: nothing to read
                continue
        else:
            end = _tag_end(html, start, limit)
            if end >= 0:
                out.append(html[start : end + 1])
                i = end + 1
                continue
        out.append("&lt;")
        i = start + 1
    return "".join(out)


def _tag_end(html: str, start: int, limit: int) -> int:
    """Where the tag opened at `start` ends (its `>`), reading quoted attribute values as the
    parser does (a `>` inside one does not end it); -1 when that is not before `limit`. Each
    character is looked at a bounded number of times."""
    i = start + 1
    end = html.find(">", i, limit)
    while end >= 0:
        equals = html.find("=", i, end)
        if equals < 0:
            return end
        i = equals + 1
        while i < limit and (html[i] == "=" or html[i].isspace()):
            i += 1
        quote = html[i : i + 1]
        if quote in ('"', "'"):
            closing = html.find(quote, i + 1, limit)
            if closing < 0:
                return -1  # the parser would look for it to the end of the input
            i = closing + 1
        if i > end:
            end = html.find(">", i, limit)
    return -1
