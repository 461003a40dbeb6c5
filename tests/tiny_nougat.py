"""A tiny Nougat-architecture model built on the fly, for tests and benchmarks (no download).

Not part of the library: tests import it directly (they run with ``tests/`` importable), and
``bench/ocr.py`` puts ``tests/`` on ``sys.path`` to import it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_TINY_TEXT = """\
# Introduction
The flux density of the source is $S_\\nu = 12.3 \\pm 0.4$ mJy at 1.4 GHz.
We fit a power law \\(S \\propto \\nu^{\\alpha}\\) with \\(\\alpha = -0.7\\) to the spectrum.
Galaxies recede with velocity proportional to distance, \\[v = H_0 d,\\] the Hubble law.
The mass of the halo and the mass of the disk are given in Table 1.
\\begin{tabular}{l c c} Object & m & M \\\\ NGC 6822 & 0.214 & -15.7 \\end{tabular}
[MISSING_PAGE_POST] [MISSING_PAGE_EMPTY:3] [MISSING_PAGE_FAIL:2]
"""


def build_tiny_nougat(
    folder: str | Path,
    *,
    seed: int = 0,
    image_size: tuple[int, int] = (64, 48),
    script: str | None = None,
    loop: bool = False,
    vocab_size: int = 400,
) -> Path:
    """Build, save and return a tiny Nougat model (DonutSwin encoder + MBart decoder) in ``folder``.

    For tests and benchmarks on CPU, with no download: the tokenizer is a byte-level BPE with
    Nougat's own pre-tokenizer, trained on a few lines of astronomy text; the image processor is
    Nougat's with a small ``image_size`` (height, width).

    * ``script=None``: randomly initialised weights (output is garbage, as with any untrained model).
    * ``script="text"``: weights set by hand so that greedy decoding writes exactly ``text``
      (then EOS) whatever the image; with ``loop=True`` the text is repeated for every position
      instead, so the page never ends by itself, and EOS is the model's second choice at every step
      (a repetition guard on retry therefore ends the page). A scripted model holds at most 60
      tokens; use ``max_new_tokens`` < 60 with it.
    """
    import torch
    from tokenizers import pre_tokenizers, trainers
    from transformers import (
        DonutSwinConfig,
        MBartConfig,
        NougatProcessor,
        NougatTokenizer,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
    )
    from transformers.models.nougat.image_processing_pil_nougat import NougatImageProcessorPil

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "[START_REF]"]
    base = NougatTokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    base._tokenizer.no_padding()
    base._tokenizer.no_truncation()
    base._tokenizer.train_from_iterator(_TINY_TEXT.splitlines() * 4, trainer=trainer)
    bpe = json.loads(base._tokenizer.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in bpe["merges"]]
    tokenizer = NougatTokenizer(vocab=bpe["vocab"], merges=merges)
    image_processor = NougatImageProcessorPil(size={"height": image_size[0], "width": image_size[1]})
    processor = NougatProcessor(image_processor=image_processor, tokenizer=tokenizer)

    scripted = script is not None
    d_model = 64 if scripted else 32
    encoder = DonutSwinConfig(
        image_size=list(image_size), patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4,
    )
    decoder = MBartConfig(
        vocab_size=len(tokenizer), d_model=d_model, decoder_layers=1, encoder_layers=1,
        decoder_attention_heads=2, encoder_attention_heads=2, decoder_ffn_dim=64, encoder_ffn_dim=64,
        max_position_embeddings=128, is_decoder=True, add_cross_attention=True, scale_embedding=True,
        tie_word_embeddings=not scripted, dropout=0.0,
    )
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = VisionEncoderDecoderModel(config)
    if scripted:
        ids = tokenizer(script, add_special_tokens=False, padding=False, truncation=False)["input_ids"]
        if not ids:
            raise ValueError("script must not be empty")
        positions = d_model - 2  # the last dimension carries the constant EOS preference
        if not loop and len(ids) >= positions:
            raise ValueError(f"script has {len(ids)} tokens; a scripted tiny model holds at most {positions - 1}")
        steps = (ids * positions)[:positions] if loop else ids
        _script_decoder(model, steps, eos=tokenizer.eos_token_id, end_with_eos=not loop, d_model=d_model)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    kind = "scripted" if scripted else "randomly initialised"
    (folder / "README.md").write_text(
        f"---\nlicense: apache-2.0\n---\nTiny {kind} Nougat-architecture model built by "
        "sagecorpus's tests/tiny_nougat.py for tests; it cannot read pages.\n"
    )
    return folder


def _script_decoder(model: Any, steps: list[int], eos: int, end_with_eos: bool, d_model: int) -> None:
    """Set decoder weights so greedy decoding emits ``steps`` whatever the image and earlier tokens.

    Token embeddings and every decoder layer are zeroed (layers then pass the hidden state through
    unchanged), so the hidden state at step p is the layer-normed position embedding, set to the
    unit vector e_p. The output head maps e_p to ``steps[p]`` and a constant last dimension to EOS
    with a lower score, so EOS wins only when the scripted token is banned or the script is over.
    """
    import torch

    dec = model.decoder.model.decoder
    with torch.no_grad():
        dec.embed_tokens.weight.zero_()
        for p in dec.layers.parameters():
            p.zero_()
        dec.embed_positions.weight.zero_()
        offset = getattr(dec.embed_positions, "offset", 2)
        for p in range(len(steps) + 1):
            dec.embed_positions.weight[p + offset, p] = 1.0
        dec.layernorm_embedding.weight.fill_(1.0)
        dec.layernorm_embedding.bias.zero_()
        dec.layer_norm.weight.fill_(1.0)
        dec.layer_norm.bias.zero_()
        dec.layer_norm.bias[d_model - 1] = 1.0
        head = model.decoder.lm_head.weight
        head.zero_()
        for p, tok in enumerate(steps):
            head[tok, p] += 2.0
        if end_with_eos:
            head[eos, len(steps)] += 2.0
        head[eos, d_model - 1] = 5.0
