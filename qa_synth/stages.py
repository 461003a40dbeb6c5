"""The Q&A stages: importing this module registers them for recipes, ``rebuild`` and the CLI
(``sagecorpus qa chunk|generate|grade|select``), through the ``sagecorpus.stages`` entry point."""

from corpus.run.stage import register_verb_group

register_verb_group("qa", "synthesise Q&A for fine-tuning: chunk papers, generate pairs, grade them, select the best")

# in the flow's order: the command line lists the verbs in the order stages register
import qa_synth.chunk  # noqa: F401,E402  qa chunk
import qa_synth.generate  # noqa: F401,E402  qa generate
import qa_synth.grade  # noqa: F401,E402  qa grade
import qa_synth.select  # noqa: F401,E402  qa select
