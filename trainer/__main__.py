"""``python -m trainer cpt|sft CONFIG [--out DIR]`` (what ``accelerate launch -m trainer ...`` runs per GPU)."""

import sys

from trainer.cli import main

sys.exit(main())
