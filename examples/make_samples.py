"""Make the demo's sample inputs: a handful of short astronomy papers, typeset by the project itself.

Writes, deterministically (same bytes every time), into a folder:

- ``metadata.jsonl``: arXiv metadata in the Kaggle/Cornell snapshot format, one line per paper, plus
  one paper of another field (filtered out by the category filter);
- ``pdf/<id>v<N>.pdf``: two-column PDFs with equations (one has a scanned, image-only page; one
  paper's PDF has no metadata row at all);
- ``src/<id>.gz``: LaTeX sources as arXiv serves them: a gzipped tar (main file plus an
  ``\\input`` section and macros) or a single gzipped ``.tex``;
- ``questions.json``: twelve benchmark questions with answers (AstroMLab-1 layout), one lifted from a paper;
- ``models/generator``, ``models/grader``, ``models/base``, ``models/instruct``: tiny random chat models
  (``examples/tiny_lm.py``) for the Q&A steps, the training steps and the merge, so the demo calls, trains
  and merges real models in process with no download (``--no-models`` skips them).

One paper is deposited twice (the second copy with 1% of its words edited), and one carries an
Annual Review journal reference, so the curation steps have something to drop.

No TeX installation is needed: PDFs are laid out with PyMuPDF's Story API from the same text the
LaTeX sources hold, so extraction from either path can be compared.

    python examples/make_samples.py samples/
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import pymupdf

SEED = 20250101
MTIME = 1_700_000_000  # fixed timestamps inside archives, so the bytes never change


@dataclass
class Section:
    title: str
    paragraphs: list[str]
    equation: str | None = None  # LaTeX
    equation_text: str | None = None  # how the PDF shows it


@dataclass
class SamplePaper:
    arxiv_id: str
    version: int
    title: str
    authors: list[tuple[str, str]]  # (first, last)
    categories: str
    created: str  # RFC 2822, as arXiv's metadata
    abstract: str
    sections: list[Section]
    source: str | None = "tar"  # tar, gzip_tex or None (PDF only)
    in_metadata: bool = True
    scanned_pages: list[int] = field(default_factory=list)  # 0-based pages made image-only
    journal_ref: str | None = None
    doi: str | None = None


SENTENCES = {
    "stars": [
        "Massive stars shape the interstellar medium through winds, radiation and supernovae.",
        "The initial mass function sets how many high-mass stars form in each cluster.",
        "Binary interaction strips the hydrogen envelope of many massive stars before core collapse.",
        "Spectroscopic monitoring reveals radial velocity variations with periods of a few days.",
        "Rotation mixes nuclear-processed material into the stellar envelope and changes surface abundances.",
        "Stellar evolution models predict a luminosity that grows steeply with mass on the main sequence.",
        "Convective core overshooting extends the main-sequence lifetime of intermediate-mass stars.",
        "Mass loss rates derived from ultraviolet lines are lower than older estimates suggested.",
    ],
    "galaxies": [
        "Galaxies at redshift two form stars at rates far higher than the Milky Way does today.",
        "The stellar mass function of quiescent galaxies evolves little since redshift one.",
        "Feedback from active galactic nuclei quenches star formation in the most massive haloes.",
        "Integral field spectroscopy maps the kinematics of ionised gas across each galaxy disc.",
        "Dust attenuation curves vary with inclination and with the star formation history.",
        "Satellite galaxies lose their gas through ram pressure stripping in dense clusters.",
        "The baryonic Tully-Fisher relation holds over five decades in galaxy mass.",
        "Deep imaging uncovers faint tidal streams around nearby spiral galaxies.",
    ],
    "cosmology": [
        "The cosmic microwave background constrains the density of baryons to within one percent.",
        "Baryon acoustic oscillations provide a standard ruler for the expansion history.",
        "Weak gravitational lensing measures the clustering amplitude of matter at late times.",
        "A tension persists between local and early-universe measurements of the Hubble constant.",
        "Type Ia supernovae calibrated with Cepheids anchor the distance ladder.",
        "Large-scale structure surveys map the positions of millions of galaxies in three dimensions.",
        "Neutrino masses suppress the growth of structure on small scales.",
        "The dark energy equation of state remains consistent with a cosmological constant.",
    ],
    "planets": [
        "Transit photometry measures planetary radii while radial velocities give their masses.",
        "Transmission spectra of hot Jupiters show absorption by sodium, potassium and water.",
        "The radius valley separates rocky super-Earths from gas-rich sub-Neptunes.",
        "Protoplanetary discs observed at millimetre wavelengths show rings and gaps.",
        "Tidal heating keeps the interiors of close-in planets partially molten.",
        "Direct imaging detects young giant planets on wide orbits around nearby stars.",
        "Atmospheric escape driven by stellar X-rays sculpts the population of small planets.",
        "Planet occurrence rates rise steeply towards smaller radii around M dwarfs.",
    ],
    "waves": [
        "Gravitational waves from merging compact binaries carry information on their masses and spins.",
        "Space-based detectors will observe thousands of double white dwarfs in the Milky Way.",
        "The signal-to-noise ratio depends on the chirp mass, the distance and the detector sensitivity.",
        "Eccentric binaries radiate at many harmonics of the orbital frequency.",
        "Pulsar timing arrays search for a stochastic background at nanohertz frequencies.",
        "Stellar-origin black hole binaries may be seen years before they merge in ground-based detectors.",
        "Population synthesis predicts the merger rate density as a function of redshift.",
        "The detectability of a source improves with the observation time of the mission.",
    ],
}

EQUATIONS = {
    "stars": ("L = 4 \\pi R^2 \\sigma T_{\\rm eff}^4", "L = 4πR²σT⁴"),
    "galaxies": ("\\dot{M}_\\star = \\epsilon \\frac{M_{\\rm gas}}{t_{\\rm dyn}}", "Ṁ = ε M_gas / t_dyn"),
    "cosmology": ("H(z)^2 = H_0^2 \\left[\\Omega_m (1+z)^3 + \\Omega_\\Lambda\\right]", "H(z)² = H₀² [Ωm (1+z)³ + ΩΛ]"),
    "planets": ("\\delta = \\left(\\frac{R_p}{R_\\star}\\right)^2", "δ = (Rp / R⋆)²"),
    "waves": ("\\mathcal{M}_c = \\frac{(m_1 m_2)^{3/5}}{(m_1 + m_2)^{1/5}}", "Mc = (m1 m2)^(3/5) / (m1 + m2)^(1/5)"),
}


NOUNS = {  # (objects, quantities, instruments) that generated sentences talk about
    "stars": (["O stars", "red supergiants", "Wolf-Rayet stars", "B dwarfs", "eclipsing binaries"],
              ["projected rotation velocity", "mass-loss rate", "surface nitrogen abundance", "effective temperature"],
              ["FLAMES", "HERMES", "TESS", "Gaia"]),
    "galaxies": (["quiescent galaxies", "spiral discs", "satellite galaxies", "starburst galaxies", "cluster members"],
                 ["star formation rate", "stellar mass", "gas fraction", "Sersic index"],
                 ["MUSE", "JWST NIRCam", "ALMA", "the Subaru telescope"]),
    "cosmology": (["luminous red galaxies", "emission-line galaxies", "quasars", "galaxy clusters", "supernova hosts"],
                  ["acoustic scale", "growth rate", "clustering amplitude", "distance modulus"],
                  ["DESI", "Planck", "the Dark Energy Survey", "Euclid"]),
    "planets": (["hot Jupiters", "sub-Neptunes", "super-Earths", "M-dwarf hosts", "protoplanetary discs"],
                ["transit depth", "equilibrium temperature", "radius ratio", "orbital period"],
                ["Kepler", "TESS", "HARPS", "JWST NIRSpec"]),
    "waves": (["double white dwarfs", "neutron star binaries", "black hole binaries", "eccentric binaries", "AM CVn systems"],
              ["chirp mass", "signal-to-noise ratio", "orbital frequency", "merger time"],
              ["LISA", "TianQin", "LIGO", "a pulsar timing array"]),
}
TEMPLATES = [
    "We measure the {q} for {n} {obj} observed with {inst} between {y1} and {y2}.",
    "The median {q} of the sample is {v:.2f} with a scatter of {s:.2f} dex around the mean relation.",
    "For {obj} brighter than magnitude {m:.1f} the completeness of our selection reaches {p} percent.",
    "A linear fit to the {obj} in field {f} gives a slope of {v:.2f} and an intercept of {s:.2f}.",
    "We exclude {k} {obj} whose spectra have a signal-to-noise ratio below {sn} per pixel.",
    "Compared with the models of {author} ({y1}), our {q} is larger by a factor of {fac:.1f}.",
    "Data taken with {inst} in {y2} confirm the trend at a significance of {sig:.1f} standard deviations.",
    "Systematic uncertainties in the {q} amount to {p} percent for the faintest {obj}.",
    "Only {k} of the {n} {obj} show a {q} above {v:.1f} in units of the solar value.",
    "Splitting the {obj} by {q} at {v:.2f} removes {p} percent of the residual correlation.",
]
AUTHORS = ["Schmidt", "Kennicutt", "Tinsley", "Salpeter", "Chandrasekhar", "Zwicky", "Shapley", "Sandage"]


def _generated(rng: random.Random, topic: str) -> str:
    objects, quantities, instruments = NOUNS[topic]
    y1 = rng.randint(1990, 2015)
    return rng.choice(TEMPLATES).format(
        q=rng.choice(quantities), obj=rng.choice(objects), inst=rng.choice(instruments), n=rng.randint(40, 900),
        k=rng.randint(3, 39), y1=y1, y2=y1 + rng.randint(1, 9), v=rng.uniform(0.1, 9.9), s=rng.uniform(0.05, 0.9),
        m=rng.uniform(12, 24), p=rng.randint(5, 99), f=rng.randint(1, 64), sn=rng.randint(3, 30),
        author=rng.choice(AUTHORS), fac=rng.uniform(1.2, 4.0), sig=rng.uniform(2.0, 9.0),
    )


def _paragraphs(rng: random.Random, topic: str, n: int, statements: list[str], k: int = 5) -> list[str]:
    """``n`` paragraphs: one of the topic's statements (each used once) and ``k`` generated sentences."""
    return [" ".join(([statements.pop()] if statements else []) + [_generated(rng, topic) for _ in range(k)])
            for _ in range(n)]


def _paper(rng, arxiv_id, topic, title, authors, created, **kw) -> SamplePaper:
    eq, eq_text = EQUATIONS[topic]
    statements = rng.sample(SENTENCES[topic], len(SENTENCES[topic]))
    abstract = " ".join([statements.pop(), _generated(rng, topic), statements.pop()])
    sections = [
        Section("Introduction", _paragraphs(rng, topic, 3, statements)),
        Section("Methods", _paragraphs(rng, topic, 3, statements), equation=eq, equation_text=eq_text),
        Section("Results", _paragraphs(rng, topic, 4, statements)),
        Section("Conclusions", _paragraphs(rng, topic, 2, statements, k=4)),
    ]
    cats = {"stars": "astro-ph.SR", "galaxies": "astro-ph.GA", "cosmology": "astro-ph.CO",
            "planets": "astro-ph.EP", "waves": "gr-qc astro-ph.HE"}[topic]
    return SamplePaper(arxiv_id, kw.pop("version", 1), title, authors, kw.pop("categories", cats), created,
                       abstract, sections, **kw)


def sample_papers() -> list[SamplePaper]:
    rng = random.Random(SEED)
    papers = [
        _paper(rng, "2401.00001", "stars", "Winds and Rotation of Massive Stars in Young Clusters",
               [("Ada", "Lovelace"), ("Cecilia", "Payne")], "Mon, 1 Jan 2024 10:00:00 GMT", version=2),
        _paper(rng, "2401.00002", "galaxies", "Quenching of Star Formation in Massive Galaxies",
               [("Vera", "Rubin"), ("Edwin", "Hubble")], "Tue, 2 Jan 2024 11:00:00 GMT", source="gzip_tex"),
        _paper(rng, "2401.00003", "cosmology", "The Expansion History from Baryon Acoustic Oscillations",
               [("Henrietta", "Leavitt")], "Wed, 3 Jan 2024 12:00:00 GMT", source=None,
               journal_ref="Annu. Rev. Astron. Astrophys. 62 (2024) 1-40"),
        _paper(rng, "2401.00004", "planets", "Transmission Spectra of Hot Jupiters and the Radius Valley",
               [("Sara", "Seager"), ("Didier", "Queloz")], "Thu, 4 Jan 2024 13:00:00 GMT", source=None,
               scanned_pages=[1]),
        _paper(rng, "2401.00005", "waves", "Detectability of Stellar-Origin Binaries with Space-Based Detectors",
               [("Kip", "Thorne"), ("Rainer", "Weiss")], "Fri, 5 Jan 2024 14:00:00 GMT"),
        _paper(rng, "2401.00006", "galaxies", "Tidal Streams Around Nearby Spiral Galaxies",
               [("Jocelyn", "Bell")], "Sat, 6 Jan 2024 15:00:00 GMT", source=None, in_metadata=False),
    ]
    papers.append(redeposited(papers[1], "2401.00007", "Sun, 7 Jan 2024 16:00:00 GMT", rng))
    return papers


def redeposited(p: SamplePaper, arxiv_id: str, created: str, rng: random.Random, rate: float = 0.01) -> SamplePaper:
    """The same paper deposited again under another id, with about ``rate`` of its words edited."""
    def edit(text: str) -> str:
        words = text.split(" ")
        for i in range(len(words)):
            if rng.random() < rate:
                words[i] = rng.choice(["notably", "however", "indeed", "roughly", "also"])
        return " ".join(words)

    sections = [Section(s.title, [edit(t) for t in s.paragraphs], s.equation, s.equation_text) for s in p.sections]
    return SamplePaper(arxiv_id, 1, p.title, p.authors, p.categories, created, p.abstract, sections, source="gzip_tex")


QUESTIONS = [  # in the AstroMLab-1 layout, with answers; the first is lifted from paper 2401.00005, so it contaminates it
    {"index": 1, "question": "Space-based detectors will observe thousands of double white dwarfs in the Milky Way. "
                             "In which frequency band do these detectors observe?",
     "A": "Nanohertz", "B": "Millihertz", "C": "Kilohertz", "D": "Megahertz", "answer": "B"},
    {"index": 2, "question": "Which quantity does transit photometry of an exoplanet measure most directly?",
     "A": "Its mass", "B": "Its radius", "C": "Its age", "D": "Its albedo", "answer": "B"},
    {"index": 3, "question": "What powers a main-sequence star like the Sun?",
     "A": "Gravitational contraction", "B": "Hydrogen fusion in the core", "C": "Radioactive decay", "D": "Accretion",
     "answer": "B"},
    {"index": 4, "question": "Which object is left after a low-mass star sheds its envelope?",
     "A": "A neutron star", "B": "A black hole", "C": "A white dwarf", "D": "A brown dwarf", "answer": "C"},
    {"index": 5, "question": "What does a larger cosmological redshift of a galaxy indicate?",
     "A": "It is closer", "B": "It is farther away", "C": "It is hotter", "D": "It is younger", "answer": "B"},
    {"index": 6, "question": "Which radiation fills the universe with a blackbody spectrum near 2.7 K?",
     "A": "The cosmic microwave background", "B": "Cosmic rays", "C": "The solar wind", "D": "Gamma-ray bursts",
     "answer": "A"},
    {"index": 7, "question": "What are pulsars?",
     "A": "Rotating neutron stars", "B": "Pulsating red giants", "C": "Binary white dwarfs", "D": "Active galactic nuclei",
     "answer": "A"},
    {"index": 8, "question": "Which quantity do rotation curves of spiral galaxies reveal beyond the visible disk?",
     "A": "Missing mass", "B": "Missing metals", "C": "Extra magnetic fields", "D": "Extra dust", "answer": "A"},
    {"index": 9, "question": "Which element is the most abundant in the interstellar medium by number?",
     "A": "Helium", "B": "Carbon", "C": "Hydrogen", "D": "Oxygen", "answer": "C"},
    {"index": 10, "question": "What does the Hubble constant describe?",
     "A": "The age of the Sun", "B": "The expansion rate of the universe", "C": "The mass of the Milky Way",
     "D": "The speed of light", "answer": "B"},
    {"index": 11, "question": "Which instrument combines light from separated telescopes to sharpen images?",
     "A": "A spectrograph", "B": "A bolometer", "C": "An interferometer", "D": "A coronagraph", "answer": "C"},
    {"index": 12, "question": "What marks the boundary of a non-rotating black hole?",
     "A": "The photon sphere", "B": "The event horizon", "C": "The ergosphere", "D": "The accretion disk", "answer": "B"},
]
"""The benchmark questions: what decontamination and Q&A selection keep out of training, and what the
demo's ``eval`` step asks the merged model (12 questions: the accuracy of a tiny random model is chance)."""


# ---------------------------------------------------------------------------------------------
# LaTeX sources


MACROS = "\\newcommand{\\msun}{M$_\\odot$}\n\\newcommand{\\kms}{km\\,s$^{-1}$}\n"


def latex_body(p: SamplePaper) -> str:
    out = []
    for s in p.sections:
        out.append(f"\\section{{{s.title}}}\n")
        for para in s.paragraphs:
            out.append(para.replace("%", "\\%") + " % a comment the converter must drop\n\n")
        if s.equation:
            out.append(f"\\begin{{equation}}\n{s.equation}\n\\end{{equation}}\n")
            out.append("Typical masses are 10\\,\\msun\\ and velocities of 100\\,\\kms.\n\n")
    return "".join(out)


def latex_main(p: SamplePaper, body: str) -> str:
    authors = " \\and ".join(f"{f} {l}" for f, l in p.authors)
    return (
        "\\documentclass[twocolumn]{aastex631}\n\\usepackage{amsmath}\n" + MACROS +
        f"\\begin{{document}}\n\\title{{{p.title}}}\n\\author{{{authors}}}\n"
        f"\\begin{{abstract}}\n{p.abstract}\n\\end{{abstract}}\n\\maketitle\n" + body +
        "\\bibliographystyle{aasjournal}\n\\begin{thebibliography}{}\n\\bibitem{x} A. Author, 2020, ApJ, 1, 1\n"
        "\\end{thebibliography}\n\\end{document}\n"
    )


def _tar_gz(files: dict[str, str]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, text in sorted(files.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))
    return _gzip(raw.getvalue())


def _gzip(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=MTIME, filename="") as f:
        f.write(data)
    return out.getvalue()


def source_bundle(p: SamplePaper) -> bytes | None:
    body = latex_body(p)
    if p.source == "tar":
        main = latex_main(p, "\\input{sections}\n")
        return _tar_gz({"ms.tex": main, "sections.tex": body, "README": "figures omitted\n"})
    if p.source == "gzip_tex":
        return _gzip(latex_main(p, body).encode())
    return None


# ---------------------------------------------------------------------------------------------
# PDFs


def _html(p: SamplePaper) -> str:
    authors = ", ".join(f"{f} {l}" for f, l in p.authors)
    parts = [f"<h2>{p.title}</h2><p><i>{authors}</i></p><p><b>Abstract.</b> {p.abstract}</p>"]
    for n, s in enumerate(p.sections, 1):
        parts.append(f"<h3>{n} {s.title.upper()}</h3>")
        parts += [f"<p>{para}</p>" for para in s.paragraphs]
        if s.equation_text:
            parts.append(f"<p style='text-align:center'>{s.equation_text}&nbsp;&nbsp;&nbsp;(1)</p>")
            parts.append("<p>Typical masses are 10 M☉ and velocities of 100 km s⁻¹.</p>")
    return "".join(parts)


def pdf_bytes(p: SamplePaper) -> bytes:
    story = pymupdf.Story(_html(p), user_css="body {font-size: 10pt;}")
    buf = io.BytesIO()
    writer = pymupdf.DocumentWriter(buf)
    page_rect = pymupdf.paper_rect("letter")
    columns = (pymupdf.Rect(54, 72, 300, 740), pymupdf.Rect(312, 72, 558, 740))
    more, page_no = 1, 0
    while more:
        dev = writer.begin_page(page_rect)
        for col in columns:
            more, _ = story.place(col)
            story.draw(dev)
            if not more:
                break
        page_no += 1
        writer.end_page()
    writer.close()
    doc = pymupdf.open("pdf", buf.getvalue())
    for i, page in enumerate(doc):  # running header and page number, as journals print them
        page.insert_text((54, 40), f"{p.authors[0][1]} et al.", fontsize=8)
        page.insert_text((300, 770), str(i + 1), fontsize=8)
    doc.set_metadata({"title": p.title, "author": ", ".join(f"{f} {l}" for f, l in p.authors)})
    for index in p.scanned_pages:  # a scanned page: its image only, no text layer
        pix = doc[index].get_pixmap(dpi=110)
        rect = doc[index].rect
        doc.delete_page(index)
        new = doc.new_page(index, width=rect.width, height=rect.height)
        new.insert_image(rect, pixmap=pix)
    doc.subset_fonts()
    return doc.tobytes(garbage=3, deflate=True, no_new_id=True)


# ---------------------------------------------------------------------------------------------
# metadata


def metadata_record(p: SamplePaper) -> dict:
    versions = [{"version": f"v{v}", "created": p.created} for v in range(1, p.version + 1)]
    return {
        "id": p.arxiv_id, "submitter": f"{p.authors[0][0]} {p.authors[0][1]}",
        "authors": ", ".join(f"{f} {l}" for f, l in p.authors), "title": p.title, "comments": "6 pages",
        "journal-ref": p.journal_ref, "doi": p.doi, "report-no": None, "categories": p.categories,
        "license": "http://creativecommons.org/licenses/by/4.0/", "abstract": p.abstract,
        "versions": versions, "update_date": "2024-01-31",
        "authors_parsed": [[l, f, ""] for f, l in p.authors],
    }


OTHER_FIELD = {
    "id": "2401.00099", "submitter": "Alan Turing", "authors": "Alan Turing", "title": "On Computable Numbers, Again",
    "comments": None, "journal-ref": None, "doi": None, "report-no": None, "categories": "cs.LG",
    "license": None, "abstract": "Not astronomy.", "versions": [{"version": "v1", "created": "Mon, 1 Jan 2024 09:00:00 GMT"}],
    "update_date": "2024-01-02", "authors_parsed": [["Turing", "Alan", ""]],
}


def write_samples(out: str | Path) -> Path:
    """Write the sample inputs into ``out`` (created if needed); return the folder."""
    out = Path(out)
    (out / "pdf").mkdir(parents=True, exist_ok=True)
    (out / "src").mkdir(parents=True, exist_ok=True)
    lines = []
    for p in sample_papers():
        (out / "pdf" / f"{p.arxiv_id}v{p.version}.pdf").write_bytes(pdf_bytes(p))
        bundle = source_bundle(p)
        if bundle is not None:
            (out / "src" / f"{p.arxiv_id}.gz").write_bytes(bundle)
        if p.in_metadata:
            lines.append(json.dumps(metadata_record(p)))
    lines.append(json.dumps(OTHER_FIELD))
    (out / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    (out / "questions.json").write_text(json.dumps(QUESTIONS, indent=1) + "\n")
    return out


MODELS = {"generator": 1, "grader": 2, "base": 3, "instruct": 4}
"""The demo's tiny random chat models (folder name: seed): one writes Q&A, another grades them, the third is
the base model that ``train_cpt`` continues on the corpus and ``train_sft`` then fine-tunes, and the fourth
stands for the general instruct model the fine-tuned one is merged with (AstroSage: Llama-3.1-8B-Instruct)."""


def write_models(out: str | Path) -> dict[str, Path]:
    """Build the demo's tiny local models into ``out/models/`` (``examples/tiny_lm.py``; same bytes every
    time); return their folders. Their context is long enough for the Q&A prompts."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiny_lm import build_tiny_lm

    return {name: build_tiny_lm(Path(out) / "models" / name, seed=seed, context=4096) for name, seed in MODELS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="samples", help="folder to write (default: samples)")
    parser.add_argument("--no-models", action="store_true", help="skip the tiny models of the Q&A steps")
    args = parser.parse_args()
    print(f"sample inputs written to {write_samples(args.out)}")
    if not args.no_models:
        for name, folder in write_models(args.out).items():
            print(f"tiny {name} model written to {folder}")


if __name__ == "__main__":
    main()
