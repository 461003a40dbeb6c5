"""What the converter knows about LaTeX commands and environments: which to drop, unwrap, or map."""

from __future__ import annotations

import re

SECTION_LEVELS = {
    "part": 1, "chapter": 1, "section": 1, "subsection": 2, "subsubsection": 3,
    "paragraph": 4, "subparagraph": 5,
}  # fmt: skip

# Commands removed together with their arguments (s: star, o: optional, m: mandatory).
DROP = {
    "label": "m", "author": "om", "affiliation": "m", "affil": "m", "altaffiliation": "m",
    "altaffilmark": "m", "altaffiltext": "mm", "email": "m", "correspondingauthor": "m",
    "collaboration": "mm", "nocollaboration": "m", "shorttitle": "m", "shortauthors": "m",
    "received": "m", "revised": "m", "accepted": "m", "published": "m", "submitjournal": "m",
    "journalinfo": "m", "date": "m", "thanks": "m", "institute": "m", "address": "om",
    "orcid": "m", "orcidlink": "m", "affilmark": "m", "inst": "m", "titlerunning": "m",
    "authorrunning": "m", "pubyear": "m", "pagerange": "m", "volume": "m", "doi": "",
    "bibliography": "m", "bibliographystyle": "m", "nocite": "m", "printbibliography": "o",
    "addbibresource": "m", "includegraphics": "som", "plotone": "m", "plottwo": "mm",
    "epsscale": "m", "figurenum": "m", "vspace": "sm", "hspace": "sm", "vskip": "", "hskip": "",
    "setlength": "mm", "addtolength": "mm", "setcounter": "mm", "addtocounter": "mm",
    "stepcounter": "m", "refstepcounter": "m", "newcounter": "mo", "newlength": "m",
    "settowidth": "mm", "definecolor": "mmm", "colorlet": "mm", "color": "om",
    "pagecolor": "m", "graphicspath": "m", "usepackage": "om", "RequirePackage": "om",
    "documentclass": "om", "pagestyle": "m", "thispagestyle": "m", "linenumbers": "",
    "marginpar": "om", "marginicon": "m", "script": "m", "todo": "om", "phantom": "m",
    "hphantom": "m", "vphantom": "m", "rule": "omm", "raisebox": "moo", "tablenum": "m",
    "figsetnum": "m", "figsettitle": "m", "figsetgrpnum": "m", "figsetgrptitle": "m",
    "figsetplot": "m", "figsetgrpnote": "m", "deleted": "m", "explain": "m",
    "authorcomments": "m", "listofchanges": "", "hypersetup": "m", "urlstyle": "m",
    "renewcommand": "mm", "setstretch": "m", "resizebox": "smm", "scalebox": "m",
    "tabletypesize": "m", "tablewidth": "m", "tablehead": "m", "tablecolumns": "m",
    "movetabledown": "", "AuthorCollaborationLimit": "", "watermark": "m",
    "setwatermarkfontsize": "m", "newpage": "", "clearpage": "", "pagebreak": "o",
    "linebreak": "o", "nolinebreak": "o", "nopagebreak": "o", "allowbreak": "", "maketitle": "",
    "tableofcontents": "", "noindent": "", "indent": "", "centering": "", "raggedright": "",
    "raggedleft": "", "bigskip": "", "medskip": "", "smallskip": "", "vfill": "", "hfill": "",
    "hfil": "", "vfil": "", "null": "", "relax": "", "protect": "", "xspace": "", "sloppy": "",
    "fussy": "", "onecolumn": "", "twocolumn": "o", "balance": "", "leavevmode": "",
    "nobreak": "", "break": "", "ignorespaces": "", "unskip": "", "strut": "", "quad": "",
    "qquad": "", "hline": "", "cline": "m", "toprule": "", "midrule": "", "bottomrule": "",
    "tightenlines": "", "startlongtable": "", "figsetstart": "", "figsetend": "",
    "figsetgrpstart": "", "figsetgrpend": "", "turnoffediting": "", "normalfont": "",
    "bf": "", "it": "", "rm": "", "sf": "", "tt": "", "sc": "", "sl": "", "em": "",
    "bfseries": "", "itshape": "", "rmfamily": "", "sffamily": "", "ttfamily": "",
    "scshape": "", "upshape": "", "slshape": "", "mdseries": "", "tiny": "", "scriptsize": "",
    "footnotesize": "", "small": "", "normalsize": "", "large": "", "Large": "", "LARGE": "",
    "huge": "", "Huge": "", "selectfont": "", "fontsize": "mm", "usefont": "mmmm",
    "fontfamily": "m", "fontseries": "m", "fontshape": "m", "footnotemark": "o",
    "today": "", "bibpunct": "omm", "citestyle": "m", "setcitestyle": "m", "ion": "",
    "faGithub": "", "affiliations": "", "acknowledgmentsfalse": "", "nodata": "",
    "begingroup": "", "endgroup": "", "makeatletter": "", "makeatother": "", "par": "",
    "newline": "", "and": "", "AND": "", "PACS": "m", "input": "m", "include": "m",
    "includeonly": "m", "subfile": "m", "import": "mm", "subimport": "mm",
    # running heads and journal furniture (ARA&A, AAS, MNRAS, A&A): never prose
    "markboth": "mm", "markright": "m", "jname": "m", "jvol": "m", "jyear": "m",
    "lefthead": "m", "righthead": "m", "runningtitle": "m", "runningauthor": "m",
    "runninghead": "m", "slugcomment": "m", "leftheader": "m", "rightheader": "m",
}  # fmt: skip

# Commands replaced by the text of one argument: name -> (spec, index of the argument kept)
UNWRAP = {
    "emph": ("m", 0), "textbf": ("m", 0), "textit": ("m", 0), "texttt": ("m", 0),
    "textrm": ("m", 0), "textsf": ("m", 0), "textsc": ("m", 0), "textup": ("m", 0),
    "textsl": ("m", 0), "textmd": ("m", 0), "textnormal": ("m", 0), "underline": ("m", 0),
    "uline": ("m", 0), "mbox": ("m", 0), "hbox": ("m", 0), "makebox": ("oom", 2),
    "fbox": ("m", 0), "framebox": ("oom", 2), "text": ("m", 0), "textsuperscript": ("m", 0),
    "textsubscript": ("m", 0), "href": ("mm", 1), "hyperref": ("om", 1),
    "hyperlink": ("mm", 1), "hypertarget": ("mm", 1), "textcolor": ("om m", 2),
    "colorbox": ("om m", 2), "added": ("m", 0), "replaced": ("mm", 1),
    "highlight": ("m", 0), "hl": ("m", 0), "texorpdfstring": ("mm", 1), "nolinkurl": ("m", 0),
    "object": ("om", 1), "dataset": ("om", 1), "sbox": ("mm", 1), "parbox": ("oomm", 3),
    "centerline": ("m", 0), "enquote": ("m", 0), "foreignlanguage": ("mm", 1),
    "textls": ("om", 1), "ensuretext": ("m", 0), "revision": ("m", 0), "change": ("m", 0),
    "new": ("m", 0), "referee": ("m", 0), "rev": ("m", 0), "mathrm": ("m", 0),
}  # fmt: skip
UNWRAP = {k: (spec.replace(" ", ""), idx) for k, (spec, idx) in UNWRAP.items()}

SYMBOLS = {
    "AA": "Å", "aa": "å", "o": "ø", "O": "Ø", "ss": "ß", "ae": "æ", "AE": "Æ", "oe": "œ",
    "OE": "Œ", "l": "ł", "L": "Ł", "i": "ı", "j": "ȷ", "dh": "ð", "DH": "Ð", "th": "þ",
    "TH": "Þ", "copyright": "©", "textcopyright": "©", "textregistered": "®",
    "texttrademark": "™", "dag": "†", "ddag": "‡", "textdagger": "†", "textdaggerdbl": "‡",
    "S": "§", "P": "¶", "pounds": "£", "textsterling": "£", "euro": "€", "texteuro": "€",
    "ldots": "…", "dots": "…", "textellipsis": "…", "textbackslash": "\\",
    "textasciitilde": "~", "textasciicircum": "^", "textbar": "|", "textless": "<",
    "textgreater": ">", "textendash": "–", "textemdash": "—", "textbullet": "•",
    "textperiodcentered": "·", "textdegree": "°", "degree": "°", "textmu": "µ",
    "textquoteleft": "‘", "textquoteright": "’", "textquotedblleft": "“",
    "textquotedblright": "”", "guillemotleft": "«", "guillemotright": "»", "textunderscore": "_",
    "TeX": "TeX", "LaTeX": "LaTeX", "LaTeXe": "LaTeX2e", "BibTeX": "BibTeX", "AmS": "AMS",
    "sun": "☉", "earth": "⊕", "arcsec": "″", "arcmin": "′", "arcdeg": "°", "micron": "µm",
    "farcs": "″.", "farcm": "′.", "fdg": "°.", "sq": "□", "lesssim": "≲", "gtrsim": "≳",
    "la": "≲", "ga": "≳", "lsim": "≲", "gsim": "≳", "textpm": "±", "texttimes": "×",
    "textminus": "−", "slash": "/", "space": " ", "enspace": " ", "thinspace": " ",
    "nobreakspace": " ", "enskip": " ", "quad": " ", "qquad": " ", "textvisiblespace": "␣",
    "textsection": "§", "textparagraph": "¶", "checkmark": "✓", "permil": "‰",
}  # fmt: skip

# A control symbol's text; ``\\$`` stays escaped (see converter.LITERAL_DOLLAR).
ESCAPES = {
    "%": "%", "&": "&", "$": "\\$", "#": "#", "_": "_", "{": "{", "}": "}", " ": " ",
    "\n": " ", "\t": " ", ",": " ", ";": " ", ":": " ", ">": " ", "!": "", "-": "",
    "/": "", "@": "", "*": "", "|": "‖", "\\": "\n",
}  # fmt: skip

ACCENTS = {
    "'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "~": "\u0303", "=": "\u0304",
    ".": "\u0307", "u": "\u0306", "v": "\u030c", "H": "\u030b", "c": "\u0327", "k": "\u0328",
    "r": "\u030a", "d": "\u0323", "b": "\u0331", "t": "\u0361",
}  # fmt: skip

PAREN_CITES = {"citep", "citep*", "parencite", "parencites", "autocite", "autocites", "footcite", "Citep", "citepalias", "supercite"}
TEXT_CITES = {
    "cite", "cite*", "citet", "citet*", "Citet", "Cite", "citealt", "citealt*", "citealp",
    "citealp*", "Citealt", "Citealp", "citeauthor", "citeauthor*", "Citeauthor", "citeyear",
    "citeyearpar", "textcite", "textcites", "Textcite", "citetalias",
}  # fmt: skip
REFS = {"ref", "eqref", "autoref", "Autoref", "cref", "Cref", "vref", "pageref", "nameref", "ref*", "autopageref", "subref"}

MATH_ENVS = {
    "equation": "", "displaymath": "", "math": "", "align": "aligned", "eqnarray": "aligned",
    "flalign": "aligned", "alignat": "aligned", "xalignat": "aligned", "gather": "gathered",
    "multline": "gathered", "dmath": "", "subeqnarray": "aligned",
}  # fmt: skip
NUMBERED_SINGLE = {"equation", "multline", "dmath"}
NUMBERED_ROWS = {"align", "eqnarray", "flalign", "alignat", "xalignat", "gather", "subeqnarray"}

FIGURE_ENVS = {"figure", "figure*", "wrapfigure", "wrapfigure*", "sidewaysfigure", "sidewaysfigure*", "SCfigure", "subfigure", "subfigure*", "plotfigure"}
TABLE_ENVS = {
    "table", "table*", "deluxetable", "deluxetable*", "splitdeluxetable", "splitdeluxetable*",
    "sidewaystable", "sidewaystable*", "longtable", "longtable*", "wraptable", "planotable",
    "splittabular", "splittabular*", "threeparttable", "mpsupertabular", "supertabular",
}  # fmt: skip
DROP_ENVS = {
    "thebibliography", "tabular", "tabular*", "tabularx", "tabulary", "tabu", "array",
    "tikzpicture", "picture", "pgfpicture", "comment", "figure-set", "references", "filecontents",
    "filecontents*", "titlepage", "minted-options", "lrbox", "widetext_", "authors",
}  # fmt: skip
TERM_LISTS = {"description", "deflist"}  # lists whose \item[..] is a term, not a marker
SUBEQUATION_ENVS = {"subequations", "mathletters"}
VERBATIM = {"verbatim", "verbatim*", "Verbatim", "lstlisting", "minted", "alltt"}
ACK_ENVS = {"acknowledgments", "acknowledgements", "acknowledgment", "acknowledgement", "acks"}
LIST_ENVS = {"itemize", "enumerate", "description", "compactitem", "compactenum", "inparaenum", "list", "deflist"}
ENV_ARGS = {
    "minipage": "om", "tabular": "om", "tabular*": "mom", "tabularx": "mom", "wrapfigure": "oom",
    "wraptable": "oom", "multicols": "m", "multicols*": "m", "subfigure": "om",
    "adjustbox": "m", "interactive": "mm", "deluxetable": "m", "deluxetable*": "m",
    "splitdeluxetable": "m", "splitdeluxetable*": "m", "longtable": "om", "array": "om",
    "alignat": "m", "alignat*": "m", "xalignat": "m", "thebibliography": "m", "list": "mm",
    "otherlanguage": "m", "turn": "m", "rotate": "m", "figure": "o", "figure*": "o",
    "table": "o", "table*": "o", "description": "o", "itemize": "o", "enumerate": "o",
    "splittabular": "m", "splittabular*": "m", "planotable": "m", "minted": "om", "tcolorbox": "o",
    "lstlisting": "o", "SCfigure": "o", "sidewaysfigure": "o", "sidewaystable": "o",
}  # fmt: skip
ACK_TITLE = re.compile(r"^\s*acknowledge?ments?\s*$", re.I)
REF_TITLE = re.compile(r"^\s*(references?|bibliography)\s*$", re.I)
SECTION_STOP = re.compile(
    r"\\(section|chapter|part|appendix|bibliography|printbibliography)(?![A-Za-z@])|\\begin\s*\{(thebibliography|references)\}|\\end\s*\{document\}"
)
