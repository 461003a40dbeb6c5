"""The built-in stages: importing this module registers them for recipes, ``rebuild`` and the CLI."""

import corpus.ingest.stage  # noqa: F401
import corpus.extract.stage  # noqa: F401
import corpus.curate.stages  # noqa: F401
