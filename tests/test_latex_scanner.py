"""The one brace reader shared by the LaTeX source reader, macro expander and converter."""

from __future__ import annotations

from corpus.extract.latex.scanner import read_arg, read_group


def test_read_group_reads_a_balanced_group_after_blanks():
    s = "\\emph  {a {b} \\} c} rest"
    assert read_group(s, 5) == ("a {b} \\} c", s.index(" rest"))


def test_unbalanced_open_brace_is_no_group():
    s = "\\emph{never closed\n\nnext paragraph"
    assert read_group(s, 5) is None
    # read as a mandatory argument: empty, and reading goes on just after the stray brace
    assert read_arg(s, 5) == ("", 6)
