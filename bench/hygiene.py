"""Benchmark: text hygiene of the corpus text on the shared fixture PDFs and LaTeX sources.

Figures (one JSON line each, at the end), ours against ``pymupdf4llm.to_markdown`` on the same PDFs in
the same run where an anchor makes sense:

* ``bad_glyphs_kept``          characters that cannot be text of an English paper (U+FFFD, Hangul, CJK,
                               kana, private use, C0/C1 controls) left on pages not routed to OCR (target 0);
* ``pages_routed_born_digital`` share of pages of the born-digital papers (all but the 1929 scan) that
                               the router sends to OCR (target <= 0.10);
* ``short_paragraphs``         share of paragraphs (blank-line separated) of <= 3 words, headings, math,
                               tables and markup aside (``corpus.extract.layout_measures``; target ratio
                               <= 1.0 against pymupdf4llm);
* ``repeated_lines``           occurrences of lines of >= 8 characters that appear >= 3 times in one paper
                               with digits masked (lines of markup alone aside: no letter, HTML comments,
                               fences, images; table rows with words count on both sides): running heads
                               and footers left in (target ratio <= 0.25 against pymupdf4llm);
* ``dot_leader_runs``          runs of >= 5 dots (a table of contents' leaders) in our PDF text (target 0);
* ``latex_unresolved_refs``    references printed as ``?`` in the LaTeX path's text (target 0);
* ``latex_glued_math``         ``$…$$…$``: two inline maths glued into a display delimiter (target 0).

Usage: python bench/hygiene.py [--fixtures DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _anchors import pymupdf4llm_markdown  # noqa: E402

from corpus.extract.document import extract_paper  # noqa: E402
from corpus.extract.latex import glued_inline_maths, unresolved_references  # noqa: E402
from corpus.extract.layout_measures import repeated_lines, short_paragraph_share  # noqa: E402
from corpus.extract.pdf import extract_pdf  # noqa: E402

BENCH = "hygiene.py"
ROOT = Path(__file__).resolve().parents[1]
SCANNED = {"hubble1929_pnas_scanned.pdf"}
LATEX = ["latex/aastex63_sample", "latex/legwork_2022"]

DOT_LEADERS = re.compile(r"(\.\s?){5,}")


def is_bad_glyph(ch: str) -> bool:
    """A character that cannot be text of an English paper."""
    cp = ord(ch)
    if ch == "\ufffd" or 0xE000 <= cp <= 0xF8FF or cp >= 0xF0000:
        return True
    if unicodedata.category(ch) == "Cc" and ch not in "\n\t\r":
        return True
    name = unicodedata.name(ch, "")
    return name.startswith(("HANGUL", "CJK", "HIRAGANA", "KATAKANA"))


def short_paragraphs(text: str) -> tuple[int, int]:
    """(paragraphs of <= 3 words, paragraphs counted): headings, math, tables and markup aside."""
    _, short, counted = short_paragraph_share(text)
    return short, counted


def repeated(text: str) -> int:
    """Occurrences of lines (>= 8 characters, digits masked) seen >= 3 times in one paper."""
    return sum(repeated_lines(text).values())


def figure(metric: str, value: float, unit: str, anchor: str | None, anchor_value: float | None, target: float,
           target_on: str, better: str = "lower") -> str:
    ratio = value / anchor_value if anchor_value else None
    return json.dumps({"bench": BENCH, "metric": metric, "value": round(value, 4), "unit": unit, "anchor": anchor,
                       "anchor_value": None if anchor_value is None else round(anchor_value, 4),
                       "ratio": None if ratio is None else round(ratio, 4), "target": target, "target_on": target_on,
                       "better": better})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", default=os.environ.get("SAGECORPUS_FIXTURES", str(ROOT.parent / "shared" / "fixtures")))
    args = parser.parse_args()
    fixtures = Path(args.fixtures)
    pdfs = sorted((fixtures / "pdf").glob("*.pdf"))
    if not pdfs:
        print(f"no fixture PDFs in {fixtures / 'pdf'}", file=sys.stderr)
        return 2
    bad = routed = born_pages = 0
    ours_short = ours_counted = theirs_short = theirs_counted = 0
    ours_repeated = theirs_repeated = dots = 0
    theirs_ok = True
    for path in pdfs:
        result = extract_pdf(path)
        kept = [p for p in result.pages if not p.needs_ocr]
        page_bad = sum(is_bad_glyph(c) for p in kept for c in p.text)
        bad += page_bad
        if path.name not in SCANNED:
            born_pages += len(result.pages)
            routed += sum(p.needs_ocr for p in result.pages)
        line = f"{path.name}: pages {len(result.pages)}, routed {sum(p.needs_ocr for p in result.pages)}, bad glyphs kept {page_bad}"
        if path.name not in SCANNED:  # the scan's text layer is what OCR replaces: layout figures on born-digital papers
            text = result.text
            short, counted = short_paragraphs(text)
            reps, leaders = repeated(text), len(DOT_LEADERS.findall(text))
            ours_short, ours_counted, ours_repeated, dots = ours_short + short, ours_counted + counted, ours_repeated + reps, dots + leaders
            line += f", short paragraphs {short}/{counted}, repeated lines {reps}, dot leaders {leaders}"
            anchor = pymupdf4llm_markdown(path)
            if anchor is None:
                theirs_ok = False
            else:
                a_short, a_counted = short_paragraphs(anchor)
                a_reps = repeated(anchor)
                theirs_short, theirs_counted, theirs_repeated = theirs_short + a_short, theirs_counted + a_counted, theirs_repeated + a_reps
                line += f" | pymupdf4llm: short {a_short}/{a_counted}, repeated {a_reps}"
        print(line, file=sys.stderr)
    unresolved = glued = 0
    for rel in LATEX:
        doc = extract_paper(source=str(fixtures / rel), source_kind="folder")
        text = doc.text or ""
        u, g = unresolved_references(text), glued_inline_maths(text)
        unresolved, glued = unresolved + u, glued + g
        print(f"{rel}: {doc.extractor}, unresolved references {u}, glued inline maths {g}", file=sys.stderr)

    ours_share = ours_short / max(ours_counted, 1)
    theirs_share = theirs_short / max(theirs_counted, 1) if theirs_ok else None
    print(figure("bad_glyphs_kept", bad, "characters", None, None, 0, "value"))
    print(figure("pages_routed_born_digital", routed / max(born_pages, 1), "fraction", None, None, 0.10, "value"))
    print(figure("short_paragraphs", ours_share, "fraction", "pymupdf4llm" if theirs_ok else None, theirs_share, 1.0, "ratio"))
    print(figure("repeated_lines", ours_repeated, "lines", "pymupdf4llm" if theirs_ok else None,
                 theirs_repeated if theirs_ok else None, 0.25, "ratio"))
    print(figure("dot_leader_runs", dots, "runs", None, None, 0, "value"))
    print(figure("latex_unresolved_refs", unresolved, "references", None, None, 0, "value"))
    print(figure("latex_glued_math", glued, "occurrences", None, None, 0, "value"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
