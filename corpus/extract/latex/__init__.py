"""LaTeX source -> Markdown-flavoured plain text, with math kept as LaTeX.

A small TeX reader of our own (careful brace matching plus a table of known commands), not a full TeX
engine: it aims to keep every sentence of a paper's prose and every equation, and to drop what is
not prose. ``latex_to_text(source)`` is pure (string in, string out); ``convert_source(path)`` adds
the file side: it finds the main file of a folder, inlines ``\\input``/``\\include``
(``source``) and reads the ``.bbl``/``.bib`` so citations can name authors.

What the output looks like (behaviour users depend on; the tests pin it down):

- **Structure**: the title becomes ``# Title`` at the top; the abstract ``# Abstract`` and its text;
  ``\\section``/``\\subsection``/``\\subsubsection`` become ``#``/``##``/``###`` headings
  (``\\paragraph`` ``####``); lists become ``- item`` / ``1. item`` lines
  (a description's ``\\item[term]`` ``- term: ...``, ARA&A's ``\\entry{term}{..}`` ``term: ..``); paragraphs are separated by
  one blank line; ``\\keywords{..}`` becomes a ``Keywords: ..`` line.
- **Dropped**: comments, the preamble, author/affiliation/email blocks, the bibliography (always),
  acknowledgments (unless ``keep_acknowledgments``), running heads (``\\markboth``, ``\\jname``...),
  an environment's float placement (``[htb]``, even for environments we do not know), ``\\software``/``\\facilities`` (unless
  ``keep_software``), tables' cells, figure bodies, ``tikzpicture``, layout commands.
- **Floats**: a figure or table is reduced to its caption, ``Figure 3: caption`` / ``Table 1:
  caption``, in its own paragraph; a bare ``tabular`` without caption disappears.
- **Math stays LaTeX**: inline ``$...$`` and ``\\(...\\)`` become ``$...$`` (two that touch get a
  blank between them, so ``$$`` only ever opens display math; an inline ``$`` never closed before the
  paragraph or its group ends is a literal dollar, and every literal dollar is written ``\\$``); display math
  (``equation``, ``align``, ``gather``, ``multline``, ``eqnarray``, ``flalign``, ``alignat``,
  ``displaymath``, their starred forms, ``\\[...\\]``, ``$$...$$``) becomes ``$$...$$`` on its own
  line; multi-line environments are wrapped in ``aligned``/``gathered`` so the block stays valid.
  ``\\label``, ``\\nonumber`` and ``\\notag`` are removed from math; user macros are expanded.
- **Macros**: ``\\newcommand``, ``\\renewcommand``, ``\\providecommand``, ``\\DeclareRobustCommand``,
  ``\\def`` (undelimited ``#1..#9``), ``\\let`` and ``\\DeclareMathOperator`` are expanded, with
  ``#1..#9`` arguments and an optional first argument's default. A macro whose body is TeX
  programming (``\\@ifnextchar``, ``\\if..``, ``\\csname``...) is removed with its arguments rather
  than expanded into garbage; ``\\ifmmode A\\else B\\fi`` is resolved by mode.
  ``\\newenvironment`` records the environment's argument count so the arguments are skipped.
- **Citations**: parenthetical ones (``\\citep``, ``\\parencite``, ``\\autocite``, ``\\nocite``) are
  removed together with the blank before them, so prose reads "black holes, and" (set
  ``parenthetical_citations="author_year"`` to keep them as ``(Peters 1964)``). Textual ones
  (``\\citet``, ``\\cite`` -- natbib's author-year meaning --, ``\\citealt``, ``\\citealp``,
  ``\\citeauthor``, ``\\citeyear``, ``\\textcite``) become ``Peters (1964)`` from the paper's
  ``.bbl``/``.bib``/``thebibliography``; when the key is unknown the key itself is written.
- **References**: ``\\ref``/``\\eqref``/``\\autoref``/``\\cref`` (also inside user macros such as
  ``\\eq{..}``) become the number LaTeX would print in common cases (sections, appendices, figures,
  tables, equations, ``subequations`` as 3a, 3b; ``\\tablenum`` and ``\\tag`` honoured). A label
  defined nowhere is dropped with the word and brackets around it: the output never holds ``?``.
- **Text**: formatting commands are unwrapped (``\\emph``, ``\\textbf``, ``\\textit``, ``\\texttt``,
  ...), ``\\href{u}{text}`` keeps the text, ``\\url{u}`` the URL; accents become Unicode (``\\'e``,
  ``{\\"o}``, ``\\c{c}``, ``\\v{s}``...), ``~`` a space, ``--``/``---`` en/em dashes, ``````..''``
  curly quotes, ``\\%`` ``\\&`` ``\\$`` ``\\#`` ``\\_`` their characters. Footnotes are moved after
  the paragraph that calls them (``footnotes="paragraph"``; ``"inline"`` or ``"drop"`` also).
- **Failure**: any exception inside the converter surfaces as ``LatexError`` with the file and a
  reason (``converter_error``, ``empty_output``, ``no_document_body``, ``macro_expansion_limit``),
  so the caller can fall back to the PDF and record why.

Modules: ``source`` (main file, ``\\input`` inlining, decoding), ``scanner`` (comments, braces,
arguments), ``macros`` (user macro expansion), ``tables`` (known commands and environments),
``converter`` (text-mode conversion), ``bibliography`` (citation labels), ``document`` (the two
entry points), ``errors`` (``LatexError``), ``checks`` (counts of ``?`` references and glued maths
in converted text, for benchmarks).
"""

from corpus.extract.latex.bibliography import parse_bbl, parse_bib
from corpus.extract.latex.checks import glued_inline_maths, unresolved_references
from corpus.extract.latex.converter import LatexConfig
from corpus.extract.latex.converter import plain_text as latex_to_unicode
from corpus.extract.latex.document import convert_source, latex_to_text
from corpus.extract.latex.errors import LatexError
from corpus.extract.latex.scanner import strip_comments
from corpus.extract.latex.source import SourceTree, decode_tex, find_main_file, read_tex, resolve_inputs

__all__ = [
    "LatexConfig",
    "LatexError",
    "SourceTree",
    "convert_source",
    "decode_tex",
    "find_main_file",
    "glued_inline_maths",
    "latex_to_text",
    "latex_to_unicode",
    "parse_bbl",
    "parse_bib",
    "read_tex",
    "resolve_inputs",
    "strip_comments",
    "unresolved_references",
]
