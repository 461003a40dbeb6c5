"""Finding the main file of a LaTeX source folder and inlining its inputs safely."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from corpus.extract.latex import (
    LatexError,
    decode_tex,
    find_main_file,
    read_tex,
    resolve_inputs,
    strip_comments,
)

DOC = "\\documentclass{article}\n\\begin{document}\n%s\n\\end{document}\n"


def write(folder: Path, name: str, text: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- main file


def test_main_file_is_the_one_that_inputs_the_others(tmp_path):
    write(tmp_path, "aaa_response_to_referee.tex", DOC % "Dear referee, thank you.")
    write(tmp_path, "paper.tex", DOC % "\\input{intro}\n\\include{sections/method}")
    write(tmp_path, "intro.tex", "Intro text.")
    write(tmp_path, "sections/method.tex", "Method text.")
    assert find_main_file(tmp_path) == tmp_path / "paper.tex"


def test_main_file_ignores_commented_documentclass_and_prefers_begin_document(tmp_path):
    write(tmp_path, "notes.tex", "% \\documentclass{article}\nJust notes.")
    write(tmp_path, "macros.tex", "\\documentclass{article}\n\\newcommand{\\x}{y}")  # no body
    write(tmp_path, "zzz.tex", DOC % "Body.")
    assert find_main_file(tmp_path) == tmp_path / "zzz.tex"


def test_main_file_prefers_conventional_name_when_otherwise_equal(tmp_path):
    write(tmp_path, "appendix_standalone.tex", DOC % ("a longer file " * 20))  # larger, but not "ms"
    write(tmp_path, "ms.tex", DOC % "y")
    assert find_main_file(tmp_path) == tmp_path / "ms.tex"


def test_main_file_from_arxiv_00readme_json(tmp_path):
    write(tmp_path, "a.tex", DOC % "\\input{b}")
    write(tmp_path, "b.tex", "b")
    write(tmp_path, "real.tex", DOC % "The real one.")
    write(tmp_path, "00README.json", json.dumps({"sources": [{"filename": "real.tex", "usage": "toplevel"}]}))
    assert find_main_file(tmp_path).name == "real.tex"


def test_no_main_file_is_a_typed_error_naming_the_folder(tmp_path):
    write(tmp_path, "figure.tex", "\\begin{tikzpicture}\\end{tikzpicture}")
    with pytest.raises(LatexError) as info:
        find_main_file(tmp_path)
    assert info.value.reason == "no_main_file"
    assert str(tmp_path) in str(info.value)


# --------------------------------------------------------------------------- inputs


def test_inputs_in_all_forms_are_inlined_in_order(tmp_path):
    body = "\\input{one}\n\\input{two.tex}\n\\input three\n\\include{sub/four}\n\\subimport{sub/}{five}\nend"
    write(tmp_path, "main.tex", DOC % body)
    write(tmp_path, "one.tex", "ONE")
    write(tmp_path, "two.tex", "TWO")
    write(tmp_path, "three.tex", "THREE")
    write(tmp_path, "sub/four.tex", "FOUR")
    write(tmp_path, "sub/five.tex", "FIVE")
    tree = resolve_inputs(tmp_path)
    order = [tree.text.index(w) for w in ("ONE", "TWO", "THREE", "FOUR", "FIVE", "end")]
    assert order == sorted(order)
    assert "\\input" not in tree.text and "\\include" not in tree.text
    assert tree.files_used == ["main.tex", "one.tex", "two.tex", "three.tex", "sub/four.tex", "sub/five.tex"]
    assert tree.problems == []


def test_commented_out_input_is_not_followed(tmp_path):
    write(tmp_path, "main.tex", DOC % "% \\input{secret}\nvisible")
    write(tmp_path, "secret.tex", "SECRET")
    tree = resolve_inputs(tmp_path)
    assert "SECRET" not in tree.text
    assert "secret.tex" not in tree.files_used


def test_input_cycle_is_neutralised_and_recorded(tmp_path):
    write(tmp_path, "main.tex", DOC % "\\input{a}")
    write(tmp_path, "a.tex", "A-start \\input{b} A-end")
    write(tmp_path, "b.tex", "B-start \\input{a} B-end")
    tree = resolve_inputs(tmp_path)
    assert tree.text.count("A-start") == 1 and tree.text.count("B-start") == 1
    assert "B-end" in tree.text and "A-end" in tree.text
    assert tree.problems == ["input cycle: main.tex -> a.tex -> b.tex -> a.tex"]


def test_self_input_is_a_cycle(tmp_path):
    write(tmp_path, "main.tex", DOC % "x \\input{main} y")
    tree = resolve_inputs(tmp_path)
    assert tree.problems == ["input cycle: main.tex -> main.tex"]
    assert tree.text.count("\\begin{document}") == 1


def test_missing_input_is_recorded_and_reading_continues(tmp_path):
    write(tmp_path, "main.tex", DOC % "before \\input{figures/table1} after")
    tree = resolve_inputs(tmp_path)
    assert "before" in tree.text and "after" in tree.text
    assert tree.problems == ["missing input: figures/table1 (in main.tex)"]


@pytest.mark.parametrize("name", ["/etc/passwd", "../../x", "../outside", "~/.ssh/id_rsa", "|cat /etc/passwd"])
def test_inputs_outside_the_folder_are_refused(tmp_path, name):
    folder = tmp_path / "src"
    write(folder, "main.tex", DOC % f"A \\input{{{name}}} B")
    write(tmp_path, "outside.tex", "OUTSIDE")
    write(tmp_path, "x.tex", "OUTSIDE")
    tree = resolve_inputs(folder)
    assert "OUTSIDE" not in tree.text and "root:" not in tree.text
    assert len(tree.problems) == 1 and tree.problems[0].startswith("refused input")
    assert name in tree.problems[0]


def test_symlink_pointing_outside_is_refused(tmp_path):
    folder = tmp_path / "src"
    write(tmp_path, "secret.tex", "SECRET")
    write(folder, "main.tex", DOC % "\\input{link}")
    os.symlink(tmp_path / "secret.tex", folder / "link.tex")
    tree = resolve_inputs(folder)
    assert "SECRET" not in tree.text
    assert tree.problems == ["refused input outside source folder: link (in main.tex)"]


def test_binary_input_is_refused(tmp_path):
    write(tmp_path, "main.tex", DOC % "\\input{plot.pdf}")
    write(tmp_path, "plot.pdf", b"%PDF-1.5\x00\x01\x02binary")
    tree = resolve_inputs(tmp_path)
    assert tree.problems == ["refused input (not a text file): plot.pdf (in main.tex)"]


def test_endinput_stops_a_file(tmp_path):
    write(tmp_path, "main.tex", DOC % "\\input{part} tail")
    write(tmp_path, "part.tex", "kept\n\\endinput\nnever seen")
    tree = resolve_inputs(tmp_path)
    assert "kept" in tree.text and "never seen" not in tree.text and "tail" in tree.text


def test_size_limit_raises_typed_error(tmp_path):
    write(tmp_path, "main.tex", DOC % ("\\input{big}\n" * 5))
    write(tmp_path, "big.tex", "x" * 1000)
    with pytest.raises(LatexError) as info:
        resolve_inputs(tmp_path, max_bytes=3000)
    assert info.value.reason == "source_too_large"


def test_depth_limit_is_recorded(tmp_path):
    write(tmp_path, "main.tex", DOC % "\\input{d0}")
    for k in range(6):
        write(tmp_path, f"d{k}.tex", f"D{k} \\input{{d{k + 1}}}")
    write(tmp_path, "d6.tex", "bottom")
    tree = resolve_inputs(tmp_path, max_depth=3)
    assert "D2" in tree.text and "bottom" not in tree.text
    assert any(p.startswith("input depth limit (3)") for p in tree.problems)


# --------------------------------------------------------------------------- encodings and comments


def test_latin1_source_is_read_not_dropped(tmp_path):
    write(tmp_path, "main.tex", DOC % "\\input{fr}")
    write(tmp_path, "fr.tex", "Les \xe9toiles de la Voie lact\xe9e".encode("latin-1"))
    tree = resolve_inputs(tmp_path)
    assert "Les étoiles de la Voie lactée" in tree.text
    assert tree.encodings == {"main.tex": "utf-8", "fr.tex": "cp1252"}


def test_decode_fallback_chain():
    assert decode_tex("Dvořák".encode()) == ("Dvořák", "utf-8")
    assert decode_tex(b"\xef\xbb\xbfBOM") == ("BOM", "utf-8")
    assert decode_tex(b"caf\xe9 \x93quoted\x94") == ("café “quoted”", "cp1252")
    # 0x81 is undefined in cp1252: only latin-1 decodes it
    assert decode_tex(b"\x81\xe9") == ("\x81é", "latin-1")


def test_read_tex_unreadable_names_the_file(tmp_path):
    with pytest.raises(LatexError) as info:
        read_tex(tmp_path / "nope.tex")
    assert info.value.reason == "unreadable" and "nope.tex" in str(info.value)


def test_strip_comments_keeps_escaped_percent_and_verbatim():
    src = "50\\% of stars % a comment\nnext\n\\verb|a%b| \\begin{verbatim}\n100% raw\n\\end{verbatim}\n"
    out = strip_comments(src)
    assert "a comment" not in out
    assert "50\\% of stars next" in out
    assert "\\verb|a%b|" in out and "100% raw" in out


def test_strip_comments_keeps_paragraph_breaks():
    assert strip_comments("one %c\n\ntwo") == "one \n\ntwo"
    assert strip_comments("one\n%only comment\ntwo") == "one\ntwo"
    assert strip_comments("glued%\n   together") == "gluedtogether"


# --------------------------------------------------------------------------- real bundle


def test_arxiv_bundle_folder(fixtures, tmp_path):
    with tarfile.open(fixtures / "latex/legwork_2022/legwork_arxiv_src_dataonly.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    assert find_main_file(tmp_path) == tmp_path / "ms.tex"
    tree = resolve_inputs(tmp_path)
    assert tree.files_used == ["ms.tex"]
    assert tree.problems == []
    assert "LISA Evolution and Gravitational Wave Orbit Kit" in tree.text
    assert "% remove indents in footnotes" not in tree.text
