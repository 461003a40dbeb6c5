"""SFT: the marked chat template (loss on assistant turns only) and the trainer (trainer/sft.py)."""

from __future__ import annotations

import math

import pytest

from trainer.chat_template import (
    CHATML,
    ChatTemplateError,
    check_marked,
    has_markers,
    training_template,
)

CHAT = [
    {"role": "system", "content": "You are an astronomer."},
    {"role": "user", "content": "What is the Hubble law?"},
    {"role": "assistant", "content": "Galaxies recede with v = H0 d."},
    {"role": "user", "content": "And the CMB temperature?"},
    {"role": "assistant", "content": "It is 2.725 K."},
]

LLAMA_TOKENS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


def _trl(name: str) -> str:
    from trl import chat_template_utils

    return getattr(chat_template_utils, f"{name}_chat_template")


def tokenizer_with(tiny_lm, template: str | None):
    """The tiny model's tokenizer, with Llama 3's special tokens added and ``template`` as its chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    tok.add_tokens(LLAMA_TOKENS, special_tokens=True)
    tok.bos_token = "<|begin_of_text|>"
    tok.chat_template = template
    return tok


def masked_and_rest(tok, template: str, chat: list[dict]) -> tuple[str, str]:
    """The text of the tokens in the assistant mask, and of those outside it."""
    out = tok.apply_chat_template(chat, chat_template=template, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    return (tok.decode([i for i, m in zip(ids, mask) if m]), tok.decode([i for i, m in zip(ids, mask) if not m]))


@pytest.mark.parametrize(("name", "end", "source"), [
    ("llama3_1", "<|eot_id|>", "llama3"),  # Llama 3.1: our patch (TRL has no marked copy)
    ("llama3_2", "<|eot_id|>", "llama3"),
    ("llama3", "<|eot_id|>", "trl"),  # Llama 3: TRL's marked copy
    ("chatml", "<|im_end|>", "chatml"),
])
def test_marked_copy_masks_the_replies_and_their_end_of_turn_token_and_renders_the_same_text(tiny_lm, name, end,
                                                                                              source):
    original = CHATML if name == "chatml" else _trl(name)
    tok = tokenizer_with(tiny_lm, original)
    marked = training_template(tok)
    assert marked.source == source and marked.end_of_turn == end
    assert not has_markers(original) and has_markers(marked.template)

    masked, rest = masked_and_rest(tok, marked.template, CHAT)
    newline = "\n" if name == "chatml" else ""  # ChatML's newline after <|im_end|> sits in the span, harmlessly
    assert masked == f"Galaxies recede with v = H0 d.{end}{newline}It is 2.725 K.{end}{newline}"
    for m in CHAT:
        assert (m["content"] in rest) == (m["role"] != "assistant")

    for chat in (CHAT, CHAT[1:3], CHAT[:2]):
        for gen in (False, True):
            assert tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=gen, chat_template=marked.template) \
                == tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=gen, chat_template=original)


def test_a_template_that_already_has_markers_is_kept(tiny_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)  # tiny_lm's ChatML template is marked
    marked = training_template(tok)
    assert (marked.template, marked.source, marked.end_of_turn) == (tok.chat_template, "tokenizer", "<|im_end|>")


def test_a_config_template_wins_as_a_name_a_file_or_a_string(tiny_lm, tmp_path):
    tok = tokenizer_with(tiny_lm, CHATML)
    assert training_template(tok, "llama3_1").end_of_turn == "<|eot_id|>"
    (tmp_path / "chat.jinja").write_text(_trl("llama3_1"))
    from_file = training_template(tok, str(tmp_path / "chat.jinja"))
    assert from_file.source == "config+llama3" and from_file.end_of_turn == "<|eot_id|>"
    assert training_template(tok, CHATML).source == "config+chatml"
    with pytest.raises(ChatTemplateError, match="neither a file"):
        training_template(tok, "no_such_template")


def test_an_unknown_or_missing_template_is_refused_with_what_to_do(tiny_lm):
    tok = tokenizer_with(tiny_lm, "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}")
    with pytest.raises(ChatTemplateError, match="set chat_template in the config"):
        training_template(tok)
    with pytest.raises(ChatTemplateError, match="has no chat template"):
        training_template(tokenizer_with(tiny_lm, None))


def test_a_marked_template_that_leaves_the_end_of_turn_token_out_of_the_span_is_refused(tiny_lm):
    outside = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
               "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] }}{% endgeneration %}"
               "{% else %}{{ message['content'] }}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}")
    tok = tokenizer_with(tiny_lm, outside)
    with pytest.raises(ChatTemplateError, match="exactly the reply and its end-of-turn token"):
        training_template(tok)
    with pytest.raises(ChatTemplateError, match="renders different text"):
        check_marked(tok, outside, original=CHATML.replace("'\\n' + message['content']", "' \\n' + message['content']"))


# ---------------------------------------------------------------------------------------- the trainer

QA = [
    ("What is the temperature of the cosmic microwave background?", "It is 2.725 K."),
    ("What powers active galactic nuclei?", "Accretion onto supermassive black holes."),
    ("Who first detected gravitational waves?", "LIGO, in 2015."),
    ("What is the Hubble law?", "Galaxies recede with v = H0 d."),
    ("What is the Chandrasekhar limit?", "About 1.4 solar masses."),
    ("How are exoplanets found?", "By transits and radial velocities."),
    ("What is the metallicity of a star?", "Its abundance of elements heavier than helium."),
    ("What dominates the mass of galaxies?", "Dark matter halos."),
]


@pytest.fixture(scope="module")
def llama_lm(tiny_lm, tmp_path_factory):
    """The tiny model made Llama-3.1-base-like: Llama 3's special tokens, eos <|end_of_text|>, and the real
    (unmarked) Llama 3.1 chat template, so the trainer has to mark it and switch eos to <|eot_id|>."""
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("llama_lm")
    tok = tokenizer_with(tiny_lm, _trl("llama3_1"))
    tok.add_tokens(["<|end_of_text|>"], special_tokens=True)
    tok.eos_token = "<|end_of_text|>"
    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    model.resize_token_embeddings(len(tok))
    model.config.eos_token_id = model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    return folder


def write_sft(path, qa=QA, times=2):
    from schemas import SFT_EXAMPLE, TableWriter

    with TableWriter(SFT_EXAMPLE, path) as w:
        w.write([{"example_id": f"p{n}-{i}", "pair_id": f"p{n}-{i}", "source": "llm",
                  "messages": [{"role": "system", "content": "You are an astronomer."},
                               {"role": "user", "content": q}, {"role": "assistant", "content": a}]}
                 for n in range(times) for i, (q, a) in enumerate(qa)])
    return path


def sft_config(model, examples, out, **kw):
    return {"model": str(model), "examples": [str(examples)], "output_dir": str(out), "device": "cpu",
            "validation_fraction": 0.25, "max_steps": 4, "per_device_train_batch_size": 4, "learning_rate": 3e-3,
            "logging_steps": 1, "save_steps": 2, "eval_steps": 2, "report_to": "none", "max_length": 128, **kw}


def test_training_batches_carry_labels_only_on_the_replies_and_their_end_of_turn_token(llama_lm, tmp_path):
    from trainer.sft import SFTTrainConfig, build_sft_trainer

    config = SFTTrainConfig(**sft_config(llama_lm, write_sft(tmp_path / "sft.parquet"), tmp_path / "out"))
    trainer, _records, extra = build_sft_trainer(config)
    assert extra["chat_template"] == {"source": "llama3", "end_of_turn": "<|eot_id|>"}
    tok = trainer.processing_class
    answers = dict(QA)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 4
    for ids, labels, attention in zip(batch["input_ids"].tolist(), batch["labels"].tolist(),
                                      batch["attention_mask"].tolist()):
        text = tok.decode([i for i, a in zip(ids, attention) if a])
        question = next(q for q in answers if q in text)
        trained = [i for i, label in zip(ids, labels) if label != -100]
        assert [label for label in labels if label != -100] == trained  # labels are the input ids there
        assert tok.decode(trained) == answers[question] + "<|eot_id|>"
        assert all(label == -100 for label, a in zip(labels, attention) if not a)  # padding


def test_sft_from_the_command_line_trains_saves_a_model_that_generates_and_links_its_data(llama_lm, tmp_path):
    import json

    import yaml
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from corpus.cli import main
    from corpus.run.manifest import Manifest, output_entry
    from schemas import sha256_file

    run = tmp_path / "run"  # the SFT file as a run's output, listed in its manifest
    write_sft(run / "qa" / "sft.parquet")
    Manifest(steps=[{"stage": "qa_select"}], outputs=[output_entry(run, "qa/sft.parquet")]).save(run / "manifest.json")
    config = sft_config(llama_lm, "run/qa/sft.parquet", "ignored", max_steps=6)
    (tmp_path / "sft.yaml").write_text(yaml.safe_dump(config))  # relative paths: relative to the file
    out = tmp_path / "out"
    assert main(["train", "sft", str(tmp_path / "sft.yaml"), "--out", str(out), "--quiet"]) == 0

    losses = [e["loss"] for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert len(losses) == 6 and all(map(math.isfinite, losses)) and sum(losses[-2:]) < sum(losses[:2])

    tok = AutoTokenizer.from_pretrained(out)
    assert has_markers(tok.chat_template) and tok.eos_token == "<|eot_id|>"
    model = AutoModelForCausalLM.from_pretrained(out)
    assert tok.convert_tokens_to_ids("<|eot_id|>") in model.generation_config.eos_token_id
    prompt = tok.apply_chat_template([{"role": "user", "content": QA[0][0]}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    assert tok.decode(prompt["input_ids"][0]).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    generated = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]

    manifest = json.loads((out / "manifest.json").read_text())
    [record] = manifest["steps"][0]["datasets"]
    sft = run / "qa" / "sft.parquet"
    assert (record["path"], record["sha256"], record["table"], record["rows"]) == \
        (str(sft.resolve()), sha256_file(sft), "sft_example", 16)
    assert record["run_manifest"] == str((run / "manifest.json").resolve())
    assert record["run_manifest_sha256"] == sha256_file(run / "manifest.json")
    assert manifest["steps"][0]["examples"] == {"train": 12, "general": 0, "validation": 4, "cut_at_max_length": 0,
                                                "left_out_fully_masked": 0}
    assert manifest["steps"][0]["base_manifest"] is None  # the base is no trainer's output
    outputs = {o["path"]: o["sha256"] for o in manifest["outputs"]}
    assert outputs["model.safetensors"] == sha256_file(out / "model.safetensors")
    assert "chat_template.jinja" in outputs or "tokenizer_config.json" in outputs


def test_lora_trains_only_the_adapter_and_both_saved_forms_load_and_generate(tiny_lm, tmp_path):
    import json

    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from trainer.sft import SFTTrainConfig, build_sft_trainer, train_sft

    config = sft_config(tiny_lm, write_sft(tmp_path / "sft.parquet"), tmp_path / "out", max_steps=2,
                        lora={"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]})
    trainer, _, _ = build_sft_trainer(SFTTrainConfig(**config))
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert len(trainable) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)

    result = train_sft(config)
    out = result.output_dir
    assert all("lora_" in k for k in load_file(out / "adapter_model.safetensors"))
    assert not (out / "model.safetensors").exists()
    tok = AutoTokenizer.from_pretrained(out)
    prompt = tok.apply_chat_template([{"role": "user", "content": QA[0][0]}], add_generation_prompt=True,
                                     return_tensors="pt", return_dict=True)
    for folder in (out, out / "merged"):  # the adapter on its base (peft), and the merged plain model
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.generate(**prompt, max_new_tokens=4, do_sample=False).shape[1] > prompt["input_ids"].shape[1]
    base = load_file(tiny_lm / "model.safetensors")
    merged = load_file(out / "merged" / "model.safetensors")
    changed = {k for k in base if not torch_equal(base[k], merged[k])}
    assert changed and all("q_proj" in k or "v_proj" in k for k in changed)
    outputs = {o["path"] for o in json.loads(result.manifest.read_text())["outputs"]}
    assert {"adapter_model.safetensors", "merged/model.safetensors"} <= outputs


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)


def test_general_examples_are_mixed_in_by_ratio_from_any_accepted_shape(tiny_lm, tmp_path):
    import json

    from trainer.sft import SFTTrainConfig, build_sft_trainer

    general = tmp_path / "general.jsonl"
    general.write_text("".join(json.dumps({"instruction": f"Say the number {i}.", "output": f"{i}."}) + "\n"
                               for i in range(20)))
    examples = write_sft(tmp_path / "sft.parquet")  # 16 rows: 12 train, 4 held out
    for ratio, mixed, short in ((0.5, 6, False), (3.0, 20, True)):
        config = SFTTrainConfig(**sft_config(tiny_lm, examples, tmp_path / "out", general=[str(general)],
                                             general_ratio=ratio))
        trainer, records, extra = build_sft_trainer(config)
        assert extra["examples"]["general"] == mixed and extra["mixing"]["short"] is short
        assert len(trainer.train_dataset) == 12 + mixed and len(trainer.eval_dataset) == 4
        assert [(r["role"], r["rows"]) for r in records] == [("examples", 16), ("general", 20)]
        said = [tok for tok in (trainer.processing_class.decode(ids) for ids in trainer.train_dataset["input_ids"])
                if "Say the number" in tok]
        assert len(said) == mixed


def test_bad_examples_and_contradicting_settings_are_refused(tiny_lm, tmp_path):
    from trainer.data import DatasetError
    from trainer.sft import SFTTrainConfig, build_sft_trainer

    bad = write_sft(tmp_path / "bad.parquet", qa=[("Question?", "Answer.")], times=1)
    import pyarrow.parquet as pq

    table = pq.read_table(bad)
    rows = table.to_pylist()
    rows[0]["messages"] = rows[0]["messages"][:2]  # no assistant turn
    from schemas import SFT_EXAMPLE, TableWriter

    with TableWriter(SFT_EXAMPLE, bad) as w:
        w.write(rows)
    with pytest.raises(DatasetError, match="bad.parquet: example p0-0: the chat must end with an assistant"):
        build_sft_trainer(SFTTrainConfig(**sft_config(tiny_lm, bad, tmp_path / "out")))
    with pytest.raises(ValueError, match="'packing' cannot be set for SFT"):
        SFTTrainConfig(**sft_config(tiny_lm, bad, tmp_path / "out", packing=True))
    with pytest.raises(ValueError, match="needs `general`"):
        SFTTrainConfig(**sft_config(tiny_lm, bad, tmp_path / "out", general_ratio=0.5))


def test_the_example_config_reads_with_paths_relative_to_it():
    from pathlib import Path

    from trainer.sft import SFTTrainConfig

    path = Path(__file__).parents[1] / "examples" / "sft.yaml"
    config = SFTTrainConfig.from_yaml(path)
    root = path.parent.parent.resolve()
    assert config.examples == [str(root / "demo-out" / "qa" / "sft.parquet")]
    assert config.model == str(root / "cpt-out") and config.output_dir == str(root / "sft-out")
    assert config.lora is None and config.assistant_only_loss and config.chat_template is None
