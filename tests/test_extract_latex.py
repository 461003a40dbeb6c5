"""LaTeX -> text: real papers convert with their prose, math and structure; edge cases behave."""

from __future__ import annotations

import re
import tarfile

import pytest

from corpus.extract.latex import LatexConfig, LatexError, convert_source, latex_to_text, parse_bbl, parse_bib
from corpus.extract.latex.checks import glued_inline_maths, unresolved_references
from corpus.extract.latex.converter import Converter


def body(tex: str, config: LatexConfig | None = None, **kw) -> str:
    """Convert a body fragment wrapped in a minimal document."""
    return latex_to_text("\\documentclass{article}\n\\begin{document}\n" + tex + "\n\\end{document}\n", config, **kw)


def prose(text: str) -> str:
    """The text with math blocks removed (so checks for leftover markup skip real LaTeX math)."""
    text = re.sub(r"\$\$.*?\$\$", " ", text, flags=re.S)
    return re.sub(r"\$[^$]*\$", " ", text)


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text)


# --------------------------------------------------------------------------- real papers


@pytest.fixture(scope="module")
def legwork(fixtures):
    return convert_source(fixtures / "latex/legwork_2022/ms.tex")


@pytest.fixture(scope="module")
def aastex(fixtures):
    return convert_source(fixtures / "latex/aastex63_sample/sample63.tex")


def test_legwork_structure_and_prose(legwork):
    text, tree = legwork
    assert text.startswith(
        "# LEGWORK: A python package for computing the evolution and detectability of "
        "stellar-origin gravitational-wave sources with space-based detectors\n"
    )
    flat = squash(text)
    for sentence in [
        "We present LEGWORK (LISA Evolution and Gravitational Wave Orbit Kit), an open-source Python package",
        "LISA is expected to detect Galactic stellar-origin binaries containing combinations of white dwarfs, "
        "neutron stars, and black holes",
        "A useful rule of thumb is that $F(0.5) \\approx 5.0$, or in words, a binary with eccentricity $0.5$ "
        "loses energy to gravitational waves at 5 times the rate of an equivalent circular binary.",
        "We have presented LEGWORK, a package designed to aid in calculations for stellar-origin binary sources",
        # prose that lives inside a macro argument (\referee{...}) is kept
        "We find this is an excellent approximation for stellar-origin sources in the LISA band",
    ]:
        assert sentence in flat, sentence
    for heading in ["# Abstract", "# Introduction", "# Package Overview", "## Units and automated testing",
                    "## Conversions and definitions (utils)", "### Circular binaries", "### Characteristic Strain"]:
        assert f"\n{heading}\n" in text, heading
    assert tree.problems == ["converter: unknown commands dropped: \\faFileCode, \\faLaptopCode"]


def test_legwork_math_survives_as_latex(legwork):
    text, _ = legwork
    assert "$$\\mathcal{M}_c \\equiv \\frac{(m_1 m_2)^{3/5}}{(m_1 + m_2)^{1/5}},$$" in text
    assert "$f_{\\rm orb}$" in text
    # align -> one $$ block wrapped in aligned, rows kept
    assert "$$\\begin{aligned}\nt_{\\rm merge,\\, e^2 \\ll 1} &= \\frac{c_0^4}{4 \\beta} \\cdot e_0^{48 / 19}, \\\\" in text
    # the paper redefines `equation` to take a documentation URL argument: it must not leak into math
    assert "legwork.readthedocs.io/en/latest/api" not in text
    assert "\\label" not in text
    # every $$ opens and closes
    assert text.count("$$") % 2 == 0


def test_legwork_macros_expanded(legwork):
    text, _ = legwork
    # \newcommand{\lw}{LEGWORK}, \newcommand{\avg}[1]{\left\langle#1\right\rangle},
    # \newcommand{\unit}[1]{\,\mathrm{#1}\checknextarg} (the \@ifnextchar helper is dropped)
    assert "\\lw" not in text and "LEGWORK is an open-source Python package" in text
    assert "\\avg" not in text and "\\left\\langle F_{+}^{2}\\right\\rangle_{\\rm {orb}}" in text
    assert "$10^{-5} < f / \\,\\mathrm{Hz} < 10^{-1}$" in text
    assert "\\unit" not in text and "checknextarg" not in text and "\\referee" not in text
    # \lwModLink{evol} -> its visible text
    assert "\nevol handles the orbital evolution of a binary" in text


def test_legwork_no_markup_preamble_bibliography_or_acknowledgments(legwork):
    text, _ = legwork
    clean = prose(text)
    assert "\\begin{" not in clean and "\\end{" not in clean
    assert "\\cite" not in text and "\\ref" not in text
    assert "usepackage" not in text and "WildStrawberry" not in text and "showyourwork" not in text
    assert "% People" not in text and "remove indents" not in text and "\n%" not in text
    assert "We are grateful to Stas Babak" not in text  # acknowledgments dropped by default
    assert "Peters, P. C." not in text and "bibitem" not in text and "aasjournal" not in text
    assert "T. Wagg" not in text and "Garden Street" not in text and "tomjwagg" not in text


def test_legwork_citations_and_references_read_as_prose(legwork):
    flat = squash(legwork[0])
    # textual citations get author (year) from ms.bbl; parenthetical ones vanish with their blank
    assert "post-Newtonian expressions by Peters & Mathews (1963) and Peters (1964) for the evolution" in flat
    assert "mergers of supermassive black holes, extreme mass ratio inspirals, and cosmological GW backgrounds." in flat
    assert "(e.g. Barack & Cutler 2004, Eq. 56; Flanagan & Hughes 1998, Eq. 5.1)" in flat
    # \ref to sections, figures and equations become their numbers
    assert "In Section 2 we give an overview of the capabilities" in flat
    assert "In Figure 1, we illustrate the general structure" in flat
    assert "(see Eq. 5)" in flat  # \ref{eq:g(n,e)}: labels may contain commas


def test_legwork_figures_become_captions(legwork):
    text, _ = legwork
    assert "\nFigure 1: Package structure of LEGWORK. Each box represents a module" in text
    assert "package_overview.png" not in text and "horizon_distance.py" not in text


def test_legwork_acknowledgments_kept_on_request(fixtures):
    text, _ = convert_source(fixtures / "latex/legwork_2022/ms.tex", LatexConfig(keep_acknowledgments=True))
    assert "\n# Acknowledgments\n" in text
    assert "We are grateful to Stas Babak" in text


def test_legwork_folder_from_arxiv_tarball_matches_single_file(fixtures, tmp_path, legwork):
    with tarfile.open(fixtures / "latex/legwork_2022/legwork_arxiv_src_dataonly.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    text, tree = convert_source(tmp_path)
    assert tree.main == (tmp_path / "ms.tex").resolve()
    assert text == legwork[0]


def test_aastex_sample(aastex):
    text, tree = aastex
    flat = squash(text)
    assert text.startswith("# Template AASTeX Article with Examples: v6.3\n")
    assert "Released on June" not in text.splitlines()[0]  # title footnote dropped
    for sentence in [
        "This example manuscript is intended to serve as a tutorial and template for authors to use when "
        "writing their own AAS Journal articles.",
        "LaTeX was written in 1985 by Leslie Lamport who based it on the TeX typesetting language",
        "Mathematics can be displayed either within the text, e.g. $E = mc^2$, or separate from in an equation.",
        "The IAU 2015 resolution B3 defines nominal solar and planetary values",
    ]:
        assert sentence in flat, sentence
    # \newcommand\aastex{AAS\TeX} (no braces around the name) expands
    assert "history of AASTeX and documents" in flat
    assert "\nKeywords: editorials, notices — miscellaneous — catalogs — surveys\n" in text
    # deluxetables reduced to captions, \tablenum honoured, cells gone
    assert "\nTable 1: Fun facts about the first 10 messier objects\n" in text
    assert "\nTable 5: Measurements of Emission Lines: two breaks\n" in text
    assert "Crab Nebula" not in text and "2451665.5" not in text
    assert "\nFigure 2: Inverted pyramid figure of six individual files." in text
    # math environments
    assert "$$\\bar v(p_2,\\sigma_2)P_{-\\tau}" in text
    assert "$$I = \\frac{1}{1 + d_{1}^{P (1 + d_{2} )}}$$" in text
    # headings
    for heading in ["# Introduction", "## Tables", "### Column math mode", "# Appendix information"]:
        assert f"\n{heading}\n" in text
    # authors, affiliations, acknowledgments, software, facilities, bibliography dropped
    for gone in ["Greg J. Schwarz", "1667 K Street", "gus.muench", "We thank all the people",
                 "HST(STIS)", "SExtractor", "bibliographystyle", "sample63}", "Lamport, L."]:
        assert gone not in text, gone
    assert tree.problems == []


def test_aastex_no_markup_leftovers(aastex, fixtures):
    text, _ = aastex
    source = (fixtures / "latex/aastex63_sample/sample63.tex").read_text()
    # the article *documents* LaTeX: {\tt\string\begin\{figure*\}} prints "\begin{figure*}". Those are
    # the only \begin{ allowed outside math.
    assert prose(text).count("\\begin{") == source.count("\\string\\begin\\{")
    assert "\\cite" not in text and "\\citep" not in text
    assert "\\newcommand" not in text and "usepackage" not in text
    assert "%%" not in text and "Modified 2019 June" not in text


def test_aastex_appendix_can_be_dropped(fixtures):
    text, _ = convert_source(fixtures / "latex/aastex63_sample/sample63.tex", LatexConfig(keep_appendix=False))
    assert "Appendix information" not in text and "Rotating tables" not in text
    assert "# Software and third party data repository citations" in text


# --------------------------------------------------------------------------- macros


def test_newcommand_with_arguments_and_optional_default():
    out = body(
        "\\newcommand{\\pair}[2]{(#1, #2)}\n\\newcommand{\\greet}[2][Hello]{#1, #2!}\n"
        "\\pair{a}{b} \\greet{world} \\greet[Bye]{moon}"
    )
    assert "(a, b) Hello, world! Bye, moon!" in out


def test_def_renewcommand_providecommand_and_let():
    out = body(
        "\\def\\msun{M_\\odot}\\def\\twice#1{#1#1}\n\\newcommand{\\x}{old}\\renewcommand{\\x}{new}\n"
        "\\providecommand{\\x}{ignored}\\let\\y\\x\n$10\\msun$ \\twice{ab} \\x{} \\y{}"
    )
    assert "$10M_\\odot$ abab new new" in out


def test_macros_in_preamble_apply_in_math_and_text():
    out = latex_to_text(
        "\\documentclass{aastex631}\n\\newcommand{\\kms}{\\ensuremath{\\mathrm{km\\,s^{-1}}}}\n"
        "\\DeclareMathOperator{\\sinc}{sinc}\n\\begin{document}\nA speed of 30\\,\\kms{} and $\\sinc x$.\n\\end{document}"
    )
    assert "A speed of 30 $\\mathrm{km\\,s^{-1}}$ and $\\operatorname{sinc} x$." in out


def test_ifmmode_macro_resolves_by_mode():
    out = body("\\newcommand{\\msun}{\\ifmmode M_\\odot\\else solar masses\\fi}\nText \\msun{} and $3\\msun$.")
    assert "Text solar masses and $3M_\\odot$." in out


def test_programming_macros_are_removed_not_garbled():
    out = body(
        "\\makeatletter\\newcommand{\\opt}{\\@ifnextchar[{\\@opt}{\\@opt[x]}}\\makeatother\n"
        "Keep this \\opt sentence."
    )
    assert "Keep this sentence." in squash(out)
    assert "@" not in out


def test_recursive_macro_does_not_hang():
    notes: list[str] = []
    out = body("\\newcommand{\\loop}{\\loop x}\nBefore \\loop after.", notes=notes)
    assert "Before" in out and "after." in out
    assert any("depth limit" in n for n in notes)


def test_exponential_macro_bomb_is_a_typed_error():
    defs = "\\def\\a{xxxxxxxxxx}" + "".join(f"\\def\\{chr(98 + k)}{{\\{chr(97 + k)}\\{chr(97 + k)}}}" for k in range(24))
    with pytest.raises(LatexError) as info:
        body(defs + "\\y", path="bomb.tex")
    assert info.value.reason == "macro_expansion_limit"
    assert info.value.path == "bomb.tex"


def test_redefined_environment_arguments_are_skipped():
    out = body(
        "\\renewenvironment{equation}[1]{\\align}{\\endalign}\n"
        "\\begin{equation}{https://example.org/doc}\nE = mc^2\n\\end{equation}"
    )
    assert "$$E = mc^2$$" in out and "example.org" not in out


# --------------------------------------------------------------------------- math


@pytest.mark.parametrize(
    "tex, expected",
    [
        ("\\begin{equation}\na = b \\label{eq:1}\n\\end{equation}", "$$a = b$$"),
        ("\\begin{equation*}a = b\\end{equation*}", "$$a = b$$"),
        ("\\[ a = b \\]", "$$a = b$$"),
        ("$$ a = b $$", "$$a = b$$"),
        ("\\begin{displaymath}a = b\\end{displaymath}", "$$a = b$$"),
        ("\\begin{align}\na &= b \\\\\nc &= d \\nonumber\n\\end{align}", "$$\\begin{aligned}\na &= b \\\\\nc &= d\n\\end{aligned}$$"),
        ("\\begin{align*}a &= b\\end{align*}", "$$\\begin{aligned}\na &= b\n\\end{aligned}$$"),
        ("\\begin{eqnarray}a &=& b\\end{eqnarray}", "$$\\begin{aligned}\na &=& b\n\\end{aligned}$$"),
        ("\\begin{gather}a\\\\b\\end{gather}", "$$\\begin{gathered}\na\\\\b\n\\end{gathered}$$"),
        ("\\begin{multline*}a+b\\\\+c\\end{multline*}", "$$\\begin{gathered}\na+b\\\\+c\n\\end{gathered}$$"),
    ],
)
def test_display_math_forms(tex, expected):
    assert f"\n{expected}\n" in "\n" + body("Before\n" + tex + "\nafter") + "\n"


def test_inline_math_forms_and_escaped_dollar():
    out = body("Costs \\$5, and \\(x^2\\) plus $y_1$ and \\begin{math}z\\end{math}.")
    # a dollar that is not math stays escaped: every unescaped $ of the output delimits math
    assert "Costs \\$5, and $x^2$ plus $y_1$ and $z$." in out


def test_math_content_is_not_touched_by_text_rules():
    out = body("Range $a -- b$ with $x~y$ and text -- dash --- em.")
    assert "$a -- b$" in out and "$x~y$" in out and "text – dash — em." in out


# --------------------------------------------------------------------------- text


def test_accents_escapes_dashes_quotes():
    out = body("Schr\\\"odinger, {\\\"o}, \\'e\\'{e}, \\c{c}, \\v{s}, \\AA{}ngstr\\\"om, na\\\"{\\i}ve, "
               "pages 1--2---done, 50\\% \\& \\#1 \\_x, ``quoted'', a~b.")
    assert "Schrödinger, ö, éé, ç, š, Ångström, naïve, pages 1–2—done, 50% & #1 _x, “quoted”, a b." in out


def test_formatting_commands_are_unwrapped():
    out = body("\\emph{one} \\textbf{two} \\textit{three} \\texttt{four} {\\bf five} \\underline{six} "
               "\\href{http://x.org}{seven} \\url{http://y.org/a\\_b} \\textcolor{red}{eight}")
    assert "one two three four five six seven http://y.org/a_b eight" in out


def test_sections_title_abstract_keywords():
    out = latex_to_text(
        "\\documentclass{aastex631}\n\\title{A \\emph{Title}\\footnote{note}}\n\\begin{document}\n"
        "\\author{Someone}\\affiliation{Somewhere}\n\\begin{abstract}Short abstract.\\end{abstract}\n"
        "\\keywords{stars --- galaxies}\n\\section{Intro}Text.\\subsection*{Sub}More.\\subsubsection{Deep}Deepest.\n"
        "\\paragraph{Para} Run-in.\n\\end{document}"
    )
    assert out == (
        "# A Title\n\n# Abstract\n\nShort abstract.\n\nKeywords: stars — galaxies\n\n# Intro\n\nText.\n\n"
        "## Sub\n\nMore.\n\n### Deep\n\nDeepest.\n\n#### Para\n\nRun-in.\n"
    )


def test_lists():
    out = body("\\begin{itemize}\\item one \\item two\\end{itemize}\n"
               "\\begin{enumerate}\\item first\\item[(x)] labelled\\item second\\end{enumerate}")
    assert "- one\n- two" in out
    assert "1. first\n- (x) labelled\n2. second" in out


def test_footnotes_move_after_their_paragraph_or_follow_config():
    tex = "A sentence\\footnote{The note.} continues here.\n\nNext paragraph."
    assert body(tex) == "A sentence continues here.\n\nThe note.\n\nNext paragraph.\n"
    assert body(tex, LatexConfig(footnotes="drop")) == "A sentence continues here.\n\nNext paragraph.\n"
    assert "A sentence (The note.) continues here." in body(tex, LatexConfig(footnotes="inline"))


def test_citations():
    bib = {"smith": ("Smith et al.", "2020"), "doe": ("Doe & Roe", "1999")}
    tex = "As shown \\citep{smith}. \\citet{smith} found it; see \\citealp[e.g.][p.~3]{doe}. \\citet{unknown} too."
    out = body(tex, citations=bib)
    assert "As shown. Smith et al. (2020) found it; see e.g. Doe & Roe 1999, p. 3. unknown too." in out
    kept = body(tex, LatexConfig(parenthetical_citations="author_year"), citations=bib)
    assert "As shown (Smith et al. 2020)." in kept


def test_thebibliography_in_source_feeds_citations_and_is_dropped():
    out = body("\\citet{k1} wrote it.\n\\begin{thebibliography}{}\n"
               "\\bibitem[{{Hubble}(1929)}]{k1} Hubble, E. 1929, PNAS, 15, 168\n\\end{thebibliography}")
    assert out == "Hubble (1929) wrote it.\n"


def test_parse_bbl_and_bib():
    assert parse_bbl("\\bibitem[{{Peters} \\& {Mathews}(1963)}]{P63} x") == {"P63": ("Peters & Mathews", "1963")}
    bib = parse_bib('@article{a1, author = {{Astropy Collaboration} and Robitaille, T. P. and others}, year = 2013}\n'
                    '@misc{b2, author = "Leslie Lamport", year = "1994"}')
    assert bib == {"a1": ("Astropy Collaboration et al.", "2013"), "b2": ("Lamport", "1994")}


def test_references_resolve_to_numbers():
    out = body(
        "\\section{Intro}\\label{s:intro}See Section~\\ref{s:meth}, Fig.~\\ref{f:1}, Eq.~\\eqref{e:2}, "
        "Table~\\ref{t:1} and \\ref{nowhere}.\n\\section{Method}\\label{s:meth}\n"
        "\\begin{figure}\\caption{A plot.\\label{f:1}}\\end{figure}\n"
        "\\begin{align}a&=b\\label{e:1}\\\\c&=d\\label{e:2}\\end{align}\n"
        "\\begin{table}\\caption{Numbers.}\\label{t:1}\\begin{tabular}{cc}1&2\\\\\\end{tabular}\\end{table}"
    )
    assert "See Section 2, Fig. 1, Eq. (2), Table 1." in out  # an unknown label is dropped, never "?"
    assert "Figure 1: A plot." in out and "Table 1: Numbers." in out
    assert "1 2" not in out


def test_tables_and_figures_without_captions_vanish():
    out = body("Text.\n\\begin{tabular}{cc}cell & cell\\end{tabular}\n\\begin{figure}\\includegraphics{f.pdf}\\end{figure}\nEnd.")
    assert out == "Text. End.\n"  # no blank line in the source: one paragraph, as in LaTeX


def test_verbatim_becomes_code_block():
    out = body("Code:\n\\begin{verbatim}\nx = 1 % not a comment\n\\end{verbatim}\nDone \\verb|a_b|.")
    assert "```\nx = 1 % not a comment\n```" in out and "Done a_b." in out


def test_fragment_without_documentclass_is_converted_whole():
    assert latex_to_text("Just \\textbf{a} fragment.") == "Just a fragment.\n"


# --------------------------------------------------------------------------- errors


def test_documentclass_without_body_is_a_typed_error():
    with pytest.raises(LatexError) as info:
        latex_to_text("\\documentclass{article}\n\\title{x}", path="p.tex")
    assert info.value.reason == "no_document_body" and info.value.path == "p.tex"


def test_empty_output_is_a_typed_error():
    with pytest.raises(LatexError) as info:
        body("\\begin{figure}\\includegraphics{x}\\end{figure}", path="empty.tex")
    assert info.value.reason == "empty_output"
    assert "empty.tex" in str(info.value)


def test_converter_bug_surfaces_as_latex_error(monkeypatch):
    def boom(self, s, end, out):
        raise IndexError("list index out of range")

    monkeypatch.setattr(Converter, "cmd_item", boom)
    with pytest.raises(LatexError) as info:
        body("\\begin{itemize}\\item x\\end{itemize}", path="paper/ms.tex")
    assert info.value.reason == "converter_error"
    assert info.value.path == "paper/ms.tex"
    assert "IndexError" in info.value.detail


def test_unbalanced_source_still_converts():
    out = body("Text with {unclosed group and \\emph{more\n\nNext $x paragraph.")
    assert "Text with unclosed group and more" in out


def test_unbalanced_brace_in_an_argument_does_not_swallow_the_rest_of_the_paper():
    """A never-closed ``{`` opens no group (scanner module doc): the dropped command's argument is
    empty and every later paragraph and section is still converted."""
    out = body("Before \\label{eq:oops and the sentence goes on.\n\n\\section{Later}\nLater text.")
    assert "and the sentence goes on." in out
    assert "# Later" in out and "Later text." in out


def test_unresolved_input_in_a_string_leaves_no_file_name():
    assert body("Before \\input{sections/intro} after.") == "Before after.\n"


@pytest.mark.parametrize("name", ["legwork_2022/ms.tex", "aastex63_sample/sample63.tex"])
def test_damaged_real_sources_give_text_or_latex_error_only(fixtures, name):
    """Cut pieces out of real papers: the converter returns text or raises LatexError, nothing else."""
    import random

    src = (fixtures / "latex" / name).read_text(encoding="utf-8")
    rnd = random.Random(1234)
    for k in range(30):
        a = rnd.randrange(len(src))
        b = rnd.randrange(a, len(src) + 1)
        piece = src[:a] + src[b:] if k % 2 else src[a:b]
        try:
            out = latex_to_text(piece)
        except LatexError as exc:
            assert exc.reason in {"no_document_body", "empty_output"}
        else:
            assert isinstance(out, str) and out.strip()


def test_convert_source_missing_path_is_typed(tmp_path):
    with pytest.raises(LatexError) as info:
        convert_source(tmp_path / "nope")
    assert info.value.reason == "unreadable"


def test_convert_source_records_input_problems_and_continues(tmp_path):
    (tmp_path / "main.tex").write_text(
        "\\documentclass{article}\\begin{document}\nIntro text.\n\\input{missing}\n\\input{/etc/passwd}\nOutro.\\end{document}"
    )
    text, tree = convert_source(tmp_path)
    assert text == "Intro text.\n\nOutro.\n"
    assert tree.problems == [
        "missing input: missing (in main.tex)",
        "refused input outside source folder: /etc/passwd (in main.tex)",
    ]


# --------------------------------------------------------------------------- issue 9: real-paper faults


def test_references_through_user_macros_are_numbered_as_latex_would():
    out = latex_to_text(
        "\\documentclass{mnras}\n"
        "\\newcommand{\\eq}[1]{Equation~(\\ref{#1})}\n\\newcommand{\\tab}[1]{Table~\\ref{#1}}\n"
        "\\newcommand{\\beq}{\\begin{equation}}\\newcommand{\\eeq}{\\end{equation}}\n"
        "\\begin{document}\n\\section{Intro}\n"
        "We use \\eq{eq:a}, \\eq{eq:c}, \\eq{eq:sub}, \\eq{eq:s2}, \\eqref{eq:d}, \\tab{tab:x}, \\autoref{fig:f}, "
        "\\cref{eq:a} and \\ref{app:b}; \\eq{eq:nowhere} is gone.\n"
        "\\beq x=1 \\label{eq:a}\\eeq\n\\begin{equation*}y=2\\end{equation*}\n"
        "\\begin{align}a&=b\\nonumber\\\\c&=d\\label{eq:c}\\\\e&=f\\end{align}\n"
        "\\begin{subequations}\\label{eq:sub}\\begin{align}g&=h\\\\i&=j\\label{eq:s2}\\end{align}\\end{subequations}\n"
        "\\begin{equation}k=l\\label{eq:d}\\end{equation}\n"
        "\\begin{figure}[htb]\\caption{F.}\\label{fig:f}\\end{figure}\n"
        "\\begin{table*}[ht!]\\caption{T.}\\label{tab:x}\\end{table*}\n"
        "\\appendix\n\\section{First}\\section{Second}\\label{app:b}\n\\end{document}\n"
    )
    assert ("We use Equation (1), Equation (2), Equation (4), Equation (4b), (5), Table 1, Figure 1, "
            "Equation 1 and B; is gone.") in out
    assert "?" not in out


def test_unknown_labels_drop_their_word_brackets_and_list_separator():
    out = body("Compare Sections~\\ref{s} and \\ref{d}, Fig.~\\ref{b} (Eq.~\\ref{c}) and \\eqref{a} to the rest.\n"
               "\\section{S}\\label{s}")
    assert "Compare Sections 1 to the rest." in out


def test_adjacent_inline_maths_are_separated():
    out = body("Massive $\\log_{10} (M_{\\star}/M_{\\odot})$$>11.5$ galaxies, \\(a\\)\\(b\\) and "
               "\\newcommand{\\msun}{$M_\\odot$}$10^{11}$\\msun.")
    assert "$\\log_{10} (M_{\\star}/M_{\\odot})$ $>11.5$ galaxies, $a$ $b$ and $10^{11}$ $M_\\odot$." in out
    assert "$$" not in out


@pytest.mark.parametrize("begin, end", [
    ("\\begin{textbox}[h]", "\\end{textbox}"),  # an environment we do not know (ARA&A sidebar)
    ("\\begin{textbox}\n[ht!]", "\\end{textbox}"),  # placement on the next line
    ("\\newenvironment{myfloat}{}{}\\begin{myfloat}[htbp]", "\\end{myfloat}"),  # a user-defined float
])
def test_float_placement_never_becomes_text(begin, end):
    out = body(f"Before.\n{begin}\nInside text.\\caption{{Cap.}}\n{end}\nAfter.")
    assert "[h" not in out and "ht]" not in out


def test_running_heads_are_not_prose():
    out = latex_to_text(
        "\\documentclass{ar-style3}\n\\begin{document}\n\\markboth{Aigrain \\& Foreman-Mackey}{GPR for Astronomy}\n"
        "\\jname{Annu. Rev. Astron. Astrophys.}\\jvol{60}\\jyear{2022}\n\\markright{Right head}\n"
        "\\title[GPR]{Gaussian Process Regression for Astronomy}\n\\section{Intro}Text.\n\\end{document}\n"
    )
    assert out == "# Gaussian Process Regression for Astronomy\n\n# Intro\n\nText.\n"


def test_terms_are_separated_from_their_definitions():
    out = body("\\begin{description}\\item[Colours of noise]White, pink.\\item[Done.] Yes.\\end{description}\n"
               "\\begin{marginnote}[]\\entry{Kernel}{A covariance function.}\\end{marginnote}\n"
               "\\unknownpair{First}{Second}")
    assert "- Colours of noise: White, pink." in out and "- Done. Yes." in out
    assert "Kernel: A covariance function." in out and "First Second" in out


def test_a_dollar_that_is_not_math_never_opens_math():
    out = body("Set \\texttt{\\$GAMMAPY\\_DATA} and \\texttt{$HOME} or \\lstinline|$PATH| and \\path{$X}; "
               "it costs $5.\n\nNext paragraph with $x$ math and \\url{http://a.org/$b}.")
    assert ("Set \\$GAMMAPY_DATA and \\$HOME or \\$PATH and \\$X; it costs \\$5.\n\n"
            "Next paragraph with $x$ math and http://a.org/\\$b.") in out


def test_hygiene_counts_unresolved_references_and_glued_maths():
    old_output = ("See Equation ((?)), Table ? and Fig. ? or (?). Is it? Yes? "
                  "$\\log_{10} (M_{\\star}/M_{\\odot})$$>11.5$ and $a$$b$.\n\n$$x = 1$$\n\ncosts \\$5 $y$.")
    assert unresolved_references(old_output) == 4
    assert glued_inline_maths(old_output) == 2
    out = body("\\newcommand{\\eq}[1]{Equation~(\\ref{#1})}See \\eq{nowhere}, Table~\\ref{none} and "
               "$\\log_{10} (M_{\\star}/M_{\\odot})$$>11.5$ and $a$$b$.\n\n$$x = 1$$\n\nIs it? Yes.")
    assert unresolved_references(out) == 0 and glued_inline_maths(out) == 0
