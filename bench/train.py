"""Benchmark: continued-pretraining tokens/s through our trainer vs a plain ``transformers.Trainer`` loop.

Figures (one JSON line each at the end):

* ``tokens_per_s`` — CPT through our layer (``trainer.cpt.train_cpt`` with a ``CPTConfig``: TRL's
  ``SFTTrainer``, packing, our data loading) against a plain ``transformers.Trainer`` on the same packed
  sequences, model and settings, in the same run (target ratio >= 0.95). The two runs alternate
  (``--pairs`` pairs, the order swapped each pair) and the figure's ratio is the median of the per-pair
  ratios, so load from other processes on a shared machine falls on both sides.
* CUDA only (``torch.cuda.is_available()``): ``tokens_per_s_cuda_100m`` and ``peak_gpu_mib_cuda_100m``
  (and the anchor's, ``peak_gpu_mib_cuda_100m_anchor``) — a ~100M-parameter Llama trained for a few steps at
  sequence 2048 in bf16, ours vs the plain loop, and ``torch.cuda.max_memory_allocated`` of each.

What is the same on both sides: the model folder (a random Llama with a BPE tokenizer trained on the
fixture texts), the texts (the unarXive full texts and arXiv abstracts of the shared fixtures, read from
one DOCUMENT Parquet file), their tokenisation (text + the tokenizer's EOS, tokenised as TRL does) and
packing (``wrapped``: documents concatenated and cut into blocks of ``--seq`` tokens), batch size,
optimiser and schedule (AdamW, lr 6e-5 cosine to 10%, weight decay 0.1, betas 0.9/0.95, clip 1.0),
steps, seed, precision (fp32 on CPU; on CUDA bf16 autocast over fp32 weights, as TRL loads a model), and
what is off: gradient checkpointing (TRL defaults it on), evaluation, saving, logging, reporting,
dataloader workers. One torch thread on CPU by default (``--threads``). tokens/s = trained tokens
((steps - 1) x batch x sequence length) / the wall time of the training loop after its first step: from
``on_step_end`` of step 1 to ``on_train_end`` of one callback added the same way to both trainers, so model
loading, dataset preparation, first-step warm-up and the final save are outside it.

Usage: ``python bench/train.py [--quick] [--pairs N] [--steps N] [--threads N]``. Human-readable progress on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
from functools import partial
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))
FIXTURES = Path(os.environ.get("SAGECORPUS_FIXTURES", ROOT.parent / "shared" / "fixtures"))

from _emit import emit as emit_figure  # noqa: E402

NAME = "train"

# The reference CPT optimiser and schedule (the AstroSage figures), given to both sides.
SETTINGS = dict(
    learning_rate=6e-5,
    lr_scheduler_type="cosine_with_min_lr",
    lr_scheduler_kwargs={"min_lr_rate": 0.1},
    weight_decay=0.1,
    adam_beta1=0.9,
    adam_beta2=0.95,
    max_grad_norm=1.0,
    gradient_accumulation_steps=1,
    # TRL's SFTConfig turns activation (gradient) checkpointing on by default, transformers' Trainer does not:
    # the same on both sides, off (it recomputes each layer's forward in the backward pass: ~1/3 more compute)
    gradient_checkpointing=False,
    seed=0,
    # off on both sides
    eval_strategy="no",
    save_strategy="no",
    logging_strategy="no",
    report_to=[],
    disable_tqdm=True,
    dataloader_num_workers=0,
)


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


emit = partial(emit_figure, NAME)


# ------------------------------------------------------------------------------------------ inputs


def fixture_texts() -> list[str]:
    """The fixtures' unarXive full texts (4 astro-ph papers) and arXiv abstracts (100)."""
    texts = []
    for line in (FIXTURES / "metadata" / "unarxive_2212_astro_subset4.jsonl").read_text().splitlines():
        rec = json.loads(line)
        texts.append("\n\n".join(p["text"] for p in rec["body_text"]))
    for line in (FIXTURES / "metadata" / "arxiv_kaggle_metadata_head100.jsonl").read_text().splitlines():
        rec = json.loads(line)
        texts.append(f"{rec['title'].strip()}\n\n{rec['abstract'].strip()}")
    return texts


def write_corpus(texts: list[str], path: Path) -> Path:
    """The texts as a DOCUMENT table (what ``sagecorpus`` curation writes as ``corpus.parquet``)."""
    from schemas import DOCUMENT, write_table

    rows = [{"paper_id": f"bench{i:05d}", "text": t, "extractor": "latex", "reason": "bench", "n_pages": 0,
             "n_chars": len(t), "pages": [], "input_sha256": None} for i, t in enumerate(texts)]
    write_table(DOCUMENT, rows, path)
    return path


def build_model(folder: Path, texts: list[str], *, hidden: int, layers: int, heads: int, context: int,
                vocab: int) -> Path:
    from tiny_lm import build_tiny_lm

    return build_tiny_lm(folder, seed=0, texts=texts, vocab_size=vocab, hidden_size=hidden, num_layers=layers,
                         num_heads=heads, context=context)


def packed_blocks(model_dir: Path, texts: list[str], seq: int) -> list[list[int]]:
    """The anchor's data, as ``train_cpt`` prepares it: the documents shuffled with the seed, each text +
    EOS tokenised as TRL does (the EOS string appended to the text, then the tokenizer), concatenated, cut
    into blocks of ``seq`` tokens (TRL's ``wrapped`` packing: the last block of each 1,000-document map
    batch is shorter)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    texts = list(texts)
    random.Random(SETTINGS["seed"]).shuffle(texts)
    blocks = []
    for start in range(0, len(texts), 1000):  # datasets.map's default batch: TRL packs per batch
        ids = [i for t in texts[start : start + 1000] for i in tok(t + tok.eos_token)["input_ids"]]
        blocks += [ids[k : k + seq] for k in range(0, len(ids), seq)]
    return blocks


# --------------------------------------------------------------------------------------- the clock


class Clock:
    """Wall time of the training loop of every trainer built while it is active (on_train_begin ->
    on_train_end), added as a callback to ``transformers.Trainer`` — ours (TRL's SFTTrainer is a Trainer)
    and the anchor alike."""

    def __init__(self):
        self.runs: list[tuple[float, int]] = []  # (seconds, steps)

    @contextlib.contextmanager
    def active(self):
        from transformers import Trainer, TrainerCallback

        clock = self

        class Timer(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                self.step0 = state.global_step

            def on_step_end(self, args, state, control, **kw):
                if state.global_step == self.step0 + 1:  # the first step (lazy set-up, warm-up) is not timed
                    _sync()
                    self.t0 = time.perf_counter()

            def on_train_end(self, args, state, control, **kw):
                _sync()
                clock.runs.append((time.perf_counter() - self.t0, state.global_step - self.step0))

        original = Trainer.__init__

        def init(trainer, *a, **k):
            original(trainer, *a, **k)
            trainer.add_callback(Timer())

        Trainer.__init__ = init
        try:
            yield self
        finally:
            Trainer.__init__ = original

    def last(self) -> tuple[float, int]:
        if not self.runs:
            raise RuntimeError("the trainer ran no training loop")
        return self.runs[-1]


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ------------------------------------------------------------------------------------- the two sides


def run_anchor(model_dir: Path, blocks: list[list[int]], out: Path, *, batch: int, steps: int, cuda: bool,
               clock: Clock) -> float:
    """A plain ``transformers.Trainer`` on the packed blocks; returns tokens/s of the training loop."""
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    tok = AutoTokenizer.from_pretrained(model_dir)
    # fp32 weights, as TRL loads a model given by path; on CUDA `bf16=True` autocasts (mixed precision)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=batch, max_steps=steps,
                             bf16=cuda, use_cpu=not cuda, **SETTINGS)
    data = Dataset.from_dict({"input_ids": blocks})
    collator = DataCollatorForLanguageModeling(tok, mlm=False)  # labels = input_ids, padding -> -100
    with clock.active(), contextlib.redirect_stdout(sys.stderr):  # the Trainer prints its metrics on stdout
        Trainer(model=model, args=args, train_dataset=data, data_collator=collator).train()
    seconds, done = clock.last()
    if done != steps:
        raise RuntimeError(f"anchor trained {done} steps, not {steps}")
    return (steps - 1) * batch * len(blocks[0]) / seconds  # the first step is not timed


def run_ours(model_dir: Path, corpus: Path, out: Path, *, batch: int, seq: int, steps: int, cuda: bool,
             clock: Clock) -> float:
    """``trainer.cpt.train_cpt`` on the DOCUMENT Parquet file; returns tokens/s of the training loop."""
    from trainer.config import CPTConfig
    from trainer.cpt import train_cpt

    config = CPTConfig(model=str(model_dir), corpus=str(corpus), output_dir=str(out), device="cuda" if cuda else "cpu",
                       validation_fraction=0.0, max_length=seq, per_device_train_batch_size=batch, max_steps=steps,
                       **SETTINGS)
    with clock.active(), contextlib.redirect_stdout(sys.stderr):
        train_cpt(config)
    seconds, done = clock.last()
    if done != steps:
        raise RuntimeError(f"ours trained {done} steps, not {steps}")
    return (steps - 1) * batch * seq / seconds  # the first step is not timed


# ------------------------------------------------------------------------------------------- figures


def alternate(n_pairs: int, ours, anchor) -> tuple[list[float], list[float]]:
    """Run the two sides in ``n_pairs`` pairs, swapping which goes first each pair."""
    mine, theirs = [], []
    for i in range(n_pairs):
        order = [("ours", ours), ("anchor", anchor)] if i % 2 == 0 else [("anchor", anchor), ("ours", ours)]
        for name, fn in order:
            gc.collect()
            rate = fn(i)
            (mine if name == "ours" else theirs).append(rate)
            log(f"  pair {i + 1}/{n_pairs} {name:6s} {rate:9.1f} tokens/s")
    return mine, theirs


def bench_cpu(tmp: Path, texts: list[str], corpus: Path, *, pairs: int, steps: int, batch: int, seq: int):
    model_dir = build_model(tmp / "model", texts, hidden=512, layers=4, heads=8, context=seq, vocab=8000)
    blocks = packed_blocks(model_dir, texts, seq)
    if len(blocks) < steps * batch:
        raise SystemExit(f"{len(blocks)} packed blocks of {seq} tokens: too few for {steps} steps of {batch}")
    log(f"CPU: Llama hidden 512, 4 layers, 8 heads, {len(blocks)} packed blocks of {seq} tokens, "
        f"batch {batch}, {steps} steps, {pairs} pairs")
    clock = Clock()
    mine, theirs = alternate(
        pairs,
        lambda i: run_ours(model_dir, corpus, tmp / f"ours{i}", batch=batch, seq=seq, steps=steps, cuda=False,
                           clock=clock),
        lambda i: run_anchor(model_dir, blocks, tmp / f"anchor{i}", batch=batch, steps=steps, cuda=False,
                             clock=clock),
    )
    ratios = [m / t for m, t in zip(mine, theirs)]
    log(f"  per-pair ratios: {', '.join(f'{r:.3f}' for r in ratios)}; step time ours "
        f"{batch * seq / statistics.median(mine):.2f} s, anchor {batch * seq / statistics.median(theirs):.2f} s")
    emit("tokens_per_s", statistics.median(mine), "tokens/s", anchor="transformers.Trainer (plain loop, same run)",
         anchor_value=statistics.median(theirs), target=0.95, target_on="ratio", ratio=statistics.median(ratios))


def bench_cuda(tmp: Path, texts: list[str], corpus: Path, *, steps: int, batch: int):
    import torch

    seq = 2048
    model_dir = build_model(tmp / "model100m", texts, hidden=768, layers=14, heads=12, context=seq, vocab=8000)
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_dir)
    blocks = packed_blocks(model_dir, texts, seq)
    n_params = _count_params(cfg)
    log(f"CUDA {torch.cuda.get_device_name()}: Llama {n_params / 1e6:.0f}M parameters, sequence {seq}, bf16, "
        f"batch {batch}, {steps} steps, {len(blocks)} blocks")
    clock = Clock()
    figures = {}
    for name in ("anchor", "ours", "anchor", "ours"):  # warm-up pair first (kernels, allocator), second pair kept
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        if name == "ours":
            rate = run_ours(model_dir, corpus, tmp / "ours_cuda", batch=batch, seq=seq, steps=steps, cuda=True,
                            clock=clock)
        else:
            rate = run_anchor(model_dir, blocks, tmp / "anchor_cuda", batch=batch, steps=steps, cuda=True,
                              clock=clock)
        figures[name] = (rate, torch.cuda.max_memory_allocated() / 2**20)
        log(f"  {name:6s} {rate:10.0f} tokens/s, peak {figures[name][1]:8.0f} MiB")
    emit("tokens_per_s_cuda_100m", figures["ours"][0], "tokens/s", anchor="transformers.Trainer (plain loop, same run)",
         anchor_value=figures["anchor"][0])
    emit("peak_gpu_mib_cuda_100m", figures["ours"][1], "MiB", anchor="transformers.Trainer (plain loop, same run)",
         anchor_value=figures["anchor"][1], better="lower")


def _count_params(cfg) -> int:
    h, i, n, v = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers, cfg.vocab_size
    return n * (4 * h * h + 3 * h * i + 2 * h) + 2 * v * h + h


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 pairs of 3 steps (a smoke run)")
    ap.add_argument("--pairs", type=int, default=None, help="alternated pairs of runs (default 5)")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps per run (default 6)")
    ap.add_argument("--batch-size", type=int, default=4, help="sequences per step (default 4)")
    ap.add_argument("--seq", type=int, default=512, help="tokens per sequence on CPU (default 512)")
    ap.add_argument("--threads", type=int, default=1, help=(
        "torch CPU threads for the CPU figure (default 1: on a shared 2-core machine one thread is far less "
        "disturbed by other work than two)"))
    ap.add_argument("--cpu-only", action="store_true", help="skip the CUDA figures even when a GPU is present")
    args = ap.parse_args(argv)
    if not FIXTURES.is_dir():
        sys.exit(f"fixtures not found at {FIXTURES} (set SAGECORPUS_FIXTURES)")
    import torch

    torch.set_num_threads(args.threads)
    pairs = args.pairs or (2 if args.quick else 5)
    steps = args.steps or (3 if args.quick else 6)
    if steps < 2:
        sys.exit("--steps must be at least 2: the first step is not timed")
    texts = fixture_texts()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        tmp = Path(tmp)
        corpus = write_corpus(texts, tmp / "corpus.parquet")
        bench_cpu(tmp, texts, corpus, pairs=pairs, steps=steps, batch=args.batch_size, seq=args.seq)
        if torch.cuda.is_available() and not args.cpu_only:
            cuda_texts = texts * 4  # enough packed blocks of 2048 tokens for the steps
            bench_cuda(tmp, cuda_texts, write_corpus(cuda_texts, tmp / "corpus_cuda.parquet"),
                       steps=5 if args.quick else 10, batch=8)
        elif not torch.cuda.is_available():
            log("no CUDA device: the 100M-parameter figures are skipped")


if __name__ == "__main__":
    main()
