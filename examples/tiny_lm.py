"""Build a tiny random causal language model in a local folder: for tests and the CPU demo, no download.

The folder holds what ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained`` and
``transformers serve`` load: a 2-layer Llama with random weights (``model.safetensors``,
``config.json``, ``generation_config.json``) and a byte-level BPE tokenizer trained on the fly
(``tokenizer.json``, ``tokenizer_config.json``) with a ChatML-style chat template. The template
marks assistant content with ``{% generation %}`` ... ``{% endgeneration %}``, so
``apply_chat_template(..., return_assistant_tokens_mask=True)`` (TRL's ``assistant_only_loss``)
works with it.

The model writes garbage, as any untrained model does; it exists so that code which loads, batches,
prompts, parses and fine-tunes a real model can run end to end in seconds. The same ``seed`` gives
the same bytes; two seeds give two different models (the demo's generator and grader).

    python examples/tiny_lm.py OUT_DIR [--seed N]
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

TEXT = """\
The flux density of the source is 12.3 mJy at 1.4 GHz, and its spectral index is -0.7.
Galaxies recede with a velocity proportional to their distance: this is the Hubble law, v = H0 d.
The Hubble constant measured from Cepheids and type Ia supernovae is about 73 km/s/Mpc.
The cosmic microwave background has a blackbody spectrum with a temperature of 2.725 K.
Dark matter halos dominate the mass of galaxies beyond a few disk scale lengths.
We fit the rotation curve with a Navarro-Frenk-White profile and a stellar disk.
The star formation rate of the Milky Way is about two solar masses per year.
Exoplanets are found by transits, radial velocities, microlensing and direct imaging.
A white dwarf more massive than the Chandrasekhar limit of 1.4 solar masses collapses.
Neutron stars spin down as their magnetic dipole radiates; pulsars are the ones we see.
The metallicity of a star is the abundance of elements heavier than helium, [Fe/H].
Gravitational waves from merging black holes were first detected by LIGO in 2015.
Active galactic nuclei are powered by accretion onto supermassive black holes.
The initial mass function describes the distribution of stellar masses at birth.
Question: What is the temperature of the cosmic microwave background? Answer: 2.725 K.
Question: Which survey measured the redshift of the quasar? Answer: the Sloan Digital Sky Survey.
{"question": "What powers active galactic nuclei?", "answer": "Accretion onto black holes."}
{"correctness": 5, "standalone": 4, "pertinence": 5, "overall": 5}
Smith et al. (2021) measured the mass of the halo; Balázs et al. (2019) modelled the disk.
"""
"""The built-in training text of the tokenizer: a little astronomy, Q&A and JSON."""

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{% generation %}{{- message['content'] + '<|im_end|>' }}{% endgeneration %}{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""ChatML: ``<|im_start|>role\\ncontent<|im_end|>\\n`` per message; a reply ends with ``<|im_end|>`` (EOS)."""


def build_tiny_lm(
    folder: str | Path,
    seed: int = 0,
    texts: Sequence[str] | None = None,
    *,
    vocab_size: int = 1000,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    context: int = 512,
) -> Path:
    """Build, save and return a tiny random Llama and its tokenizer in ``folder``.

    ``texts``: what the byte-level BPE tokenizer is trained on (default :data:`TEXT`); ``vocab_size``
    is an upper bound (a small text gives fewer merges). ``context``: the model's maximum positions
    (``max_position_embeddings``). ``seed`` sets the weights; the tokenizer depends only on ``texts``
    and ``vocab_size``. Same arguments, same bytes.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )
    from transformers.utils import logging as hf_logging

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [line for text in (texts if texts is not None else [TEXT]) for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("texts hold no text to train the tokenizer on")

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    bpe.train_from_iterator(lines, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token="<pad>", bos_token="<s>", eos_token="<|im_end|>", unk_token=None,
        model_max_length=context, chat_template=CHAT_TEMPLATE,
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
        max_position_embeddings=context, pad_token_id=ids["<pad>"], bos_token_id=ids["<s>"],
        eos_token_id=ids["<|im_end|>"], tie_word_embeddings=False,
        initializer_range=0.3,  # the default 0.02 gives near-uniform logits: greedy repeats one token
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<s>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<pad>"],
    )
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # "Writing model shards" for one tiny file
    try:
        model.save_pretrained(folder)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text(
        f"---\nlicense: apache-2.0\n---\nTiny randomly initialised Llama (seed {seed}) built by sagecorpus's "
        "examples/tiny_lm.py for tests and the CPU demo; its replies are garbage.\n"
    )
    return folder


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", help="folder to write the model into")
    parser.add_argument("--seed", type=int, default=0, help="weights seed (default 0)")
    args = parser.parse_args(argv)
    print(build_tiny_lm(args.out_dir, seed=args.seed))


if __name__ == "__main__":
    main()
