"""``grade@1``: one question-answer pair graded 1-5 on four criteria, the source chunk given, few-shot.

Criteria after the reference recipe (AstroSage-8B): Correctness, Stand-alone, Pertinence, Overall.
The three worked examples show a good pair, a pair that leans on the paper, and a wrong answer.
"""

from __future__ import annotations

from qa_synth.prompts import Example, Template

CRITERIA = ("correctness", "standalone", "pertinence", "overall")

SYSTEM = """You grade question-answer pairs written from a passage of a research paper. They will teach a
language model the field's science, so grade strictly. Give each criterion an integer from 1 (worst)
to 5 (best):
- correctness: is the answer right and complete, judged against the source passage?
- standalone: can a reader who has never seen the paper understand the question and the answer?
  Pairs that say "the paper", "this study", "we" or lean on unstated context score low.
- pertinence: is the pair about the science (results, physics, methods), not the document itself?
- overall: how much the pair would teach an expert model (not an average of the others)."""

USER = """Source passage:
<<<
{text}
>>>

Question: {question}
Answer: {answer}

Grade this pair."""

SCHEMA = {
    "type": "object",
    "properties": {c: {"type": "integer", "minimum": 1, "maximum": 5} for c in CRITERIA},
    "required": list(CRITERIA),
    "additionalProperties": False,
}

SHAPE = '{"correctness": 1-5, "standalone": 1-5, "pertinence": 1-5, "overall": 1-5}'

_PASSAGE = ("We measure the Hubble constant from 42 Type Ia supernovae calibrated with Cepheid distances in "
            "their host galaxies, finding $H_0 = 73.0 \\pm 1.0$ km s$^{-1}$ Mpc$^{-1}$. The result differs by "
            "$5\\sigma$ from the value inferred from the cosmic microwave background under $\\Lambda$CDM.")

EXAMPLES = (
    Example(
        {"text": _PASSAGE,
         "question": "What value of the Hubble constant did Riess et al. (2022) find from Cepheid-calibrated Type Ia supernovae?",
         "answer": "Riess et al. (2022) found $H_0 = 73.0 \\pm 1.0$ km s$^{-1}$ Mpc$^{-1}$ from 42 Type Ia supernovae "
                   "whose host galaxies have Cepheid distances, 5$\\sigma$ away from the CMB-based $\\Lambda$CDM value."},
        {"correctness": 5, "standalone": 5, "pertinence": 5, "overall": 5},
    ),
    Example(
        {"text": _PASSAGE,
         "question": "How many supernovae did the authors use in this study?",
         "answer": "They used 42."},
        {"correctness": 5, "standalone": 1, "pertinence": 2, "overall": 1},
    ),
    Example(
        {"text": _PASSAGE,
         "question": "Why does a Cepheid-calibrated distance ladder give a Hubble constant independent of the CMB?",
         "answer": "Because Cepheids are used to measure the temperature of the cosmic microwave background directly."},
        {"correctness": 1, "standalone": 4, "pertinence": 4, "overall": 1},
    ),
)

GRADE_V1 = Template(name="grade", version=1, system=SYSTEM, user=USER, schema=SCHEMA, shape=SHAPE, examples=EXAMPLES)
