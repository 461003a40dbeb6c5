"""The built-in stages: importing this module registers them for recipes, ``rebuild`` and the CLI."""

# in the flow's order: the command line lists the verbs in the order stages register
import corpus.ingest.stage  # noqa: F401, I001
import corpus.extract.stage  # noqa: F401
import corpus.curate.stages  # noqa: F401
import corpus.publish.card  # noqa: F401  (the card step: recipe only, `sagecorpus card`)
import corpus.publish.report  # noqa: F401  (recipe stage `report`; its command is `sagecorpus report RUN_DIR`)
from corpus.run.stage import register_verb_group

register_verb_group("curate", "curate the pretraining corpus: clean, dedup, filter, decontaminate")
register_verb_group("curate filter", "filter documents (apply) or train the quality classifier it applies (train)")
