"""On CPU, CPT trains with transformers' plain causal-LM loss instead of TRL's fused LM head (its torch
fallback costs ~20% of a step, bench/train.py): the loss and its gradients must be TRL's own."""

from __future__ import annotations

import pytest

pytest.importorskip("trl")


def test_cpu_loss_and_gradients_equal_trls_fused_head(tmp_path, tiny_lm):
    import torch
    from tiny_lm import TEXT
    from trl import SFTTrainer

    from schemas import DOCUMENT, write_table
    from trainer.config import CPTConfig
    from trainer.cpt import build_cpt_trainer

    texts = [TEXT * 3, TEXT[::-1] * 2, TEXT.upper()]
    rows = [{"paper_id": f"p{i}", "text": t, "extractor": "latex", "reason": "test", "n_pages": 0,
             "n_chars": len(t), "pages": [], "input_sha256": None} for i, t in enumerate(texts)]
    write_table(DOCUMENT, rows, tmp_path / "corpus.parquet")
    config = CPTConfig(model=str(tiny_lm), corpus=str(tmp_path / "corpus.parquet"), output_dir=str(tmp_path / "out"),
                       device="cpu", validation_fraction=0.0, max_length=64, per_device_train_batch_size=3)
    trainer, _, _ = build_cpt_trainer(config)
    batch = next(iter(trainer.get_train_dataloader()))
    batch["labels"][0, :5] = -100  # a masked span: both losses must ignore it
    n_items = (batch["labels"][:, 1:] != -100).sum()

    def loss_and_grads(compute_loss):
        trainer.model.zero_grad()
        loss = compute_loss(trainer, trainer.model, dict(batch), num_items_in_batch=n_items)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in trainer.model.parameters()]

    trainer.model.train()
    ours, ours_grads = loss_and_grads(type(trainer).compute_loss)
    assert not trainer._metrics["train"]["entropy"]  # the fused head (which logs entropy) did not run
    fused, fused_grads = loss_and_grads(SFTTrainer.compute_loss)
    assert len(trainer._metrics["train"]["entropy"]) == 1
    assert torch.isfinite(ours) and ours.item() > 0
    torch.testing.assert_close(ours, fused, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours_grads, fused_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
