"""Clean: typography, whitespace, hyphenation, section removal, shared repetition rules; math kept."""

from __future__ import annotations

import pytest

from corpus.curate.clean import CleanConfig, clean_text


def test_typography_and_whitespace():
    text = "The \ufb01rst  e\ufb00ect\u00a0of   dark\u200b matter.   \n\n\n\n\nNext  para\u00adgraph.\r\n"
    out, changes = clean_text(text)
    assert out == "The first effect of dark matter.\n\nNext paragraph."
    assert "typography" in changes and "whitespace" in changes


def test_math_is_kept():
    text = r"The mass $M_{\odot} = 1.989\times10^{30}$ kg and x² + y₂ with \begin{equation} E = mc^2 \end{equation}."
    out, changes = clean_text(text)
    assert out == text and changes == []
    # NFKC would flatten x² to x2: the default is NFC
    assert "x2" in clean_text(text, CleanConfig(unicode_form="NFKC"))[0]


def test_dehyphenation_uses_the_document_vocabulary():
    text = ("The galax-\nies are self-consistent. A self-\nconsistent model of the X-\nray emission "
            "was sup-\nported by the data.")
    out, changes = clean_text(text)
    assert "galaxies" in out and "supported" in out
    assert "self-consistent model" in out  # the compound is known hyphenated in this document
    assert "X-ray emission" in out  # an upper-case first half is a compound, not a syllable break
    assert any(c.startswith("dehyphenate:") for c in changes)
    assert clean_text(text, CleanConfig(dehyphenate=False))[0].count("-\n") == 4


def test_references_and_acknowledgements_removed_when_configured(fixtures):
    import pymupdf

    with pymupdf.open(fixtures / "pdf" / "hwobows_vaughan2023_mnras.pdf") as d:
        text = "\n".join(p.get_text() for p in d)
    kept, changes = clean_text(text, CleanConfig(), extractor="pdf")
    assert "Lorentz Center" in kept and "REFERENCES" in kept  # off by default
    out, changes = clean_text(text, CleanConfig(remove_references=True, remove_acknowledgements=True), extractor="pdf")
    assert "references_removed" in changes and "acknowledgements_removed" in changes
    assert "Lorentz Center" not in out and "\nREFERENCES\n" not in out
    assert "Inner working angle" in out or "inner working angle" in out  # the science is still there
    assert len(out) > 0.7 * len(text)


def test_markdown_and_latex_sections():
    md = ("# Introduction\nStars form.\n\n## Acknowledgments\nWe thank the referee.\n\n## Results\nThey shine.\n\n"
          "## References\nSmith J. 2020, ApJ, 1, 1\nDoe J. 2021, MNRAS, 2, 2\n")
    out, _ = clean_text(md, CleanConfig(remove_references=True, remove_acknowledgements=True))
    assert out == "# Introduction\nStars form.\n\n## Results\nThey shine."
    tex = "Body text.\n\\begin{thebibliography}{9}\n\\bibitem{a} A. 2020\n\\end{thebibliography}\nEnd."
    out, _ = clean_text(tex, CleanConfig(remove_references=True))
    assert "bibitem" not in out and out.startswith("Body text.") and out.endswith("End.")


def test_calls_the_shared_repetition_cleaner(monkeypatch):
    import corpus.curate.clean as clean_mod

    calls = []
    monkeypatch.setattr(clean_mod, "clean_repetitions", lambda t: calls.append(t) or t.replace(" again", ""))
    out, changes = clean_text("loop again again again", CleanConfig(repetitions="always"))
    assert calls and out == "loop" and "repetitions" in changes


def test_ocr_loops_collapsed_for_ocr_text_only():
    loop = "The spectrum shows " + "the line the line the line the line the line " * 6 + "at 6563 A."
    out, changes = clean_text(loop, extractor="nougat")
    assert "repetitions" in changes and len(out) < len(loop) / 2 and out.endswith("at 6563 A.")
    assert "repetitions" not in clean_text(loop, extractor="latex")[1]


def test_bad_config():
    with pytest.raises(ValueError, match="unicode_form"):
        CleanConfig(unicode_form="NFX")
    with pytest.raises(ValueError, match="repetitions"):
        CleanConfig(repetitions="yes")
