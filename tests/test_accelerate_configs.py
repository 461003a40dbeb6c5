"""The accelerate config files shipped in examples/accelerate/ load and launch as their comments say.

Each file goes through accelerate's own code: the loader (`load_config_from_file`, which refuses unknown
top-level keys), the `accelerate launch` argument validation and environment preparation (which silently
ignore unknown keys inside `fsdp_config` / `deepspeed_config`, hence the key check), and the plugin the
training processes build from that environment. No GPU needed: nothing is launched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("accelerate")

from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DistributedType

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "accelerate"
FSDP = CONFIGS / "fsdp.yaml"
ZERO3 = CONFIGS / "deepspeed_zero3.yaml"


def launch_args(config: Path):
    """`accelerate launch --config_file CONFIG -m trainer cpt cpt.yaml`, validated as the launcher does it."""
    args = launch_command_parser().parse_args(["--config_file", str(config), "-m", "trainer", "cpt", "cpt.yaml"])
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


def apply_env(monkeypatch, env: dict[str, str]) -> None:
    """Give this process the variables the launcher sets for its workers (FSDP_*, ACCELERATE_*)."""
    for key, value in env.items():
        if key.startswith(("FSDP_", "ACCELERATE_")):
            monkeypatch.setenv(key, value)


@pytest.mark.parametrize(
    ("path", "kind"), [(FSDP, DistributedType.FSDP), (ZERO3, DistributedType.DEEPSPEED)], ids=["fsdp", "zero3"]
)
def test_config_loads_with_accelerates_loader(path, kind):
    config = load_config_from_file(str(path))
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == kind
    assert config.mixed_precision == "bf16"
    assert (config.num_machines, config.num_processes, config.machine_rank) == (1, 8, 0)
    assert config.use_cpu is False


@pytest.mark.parametrize(("path", "section"), [(FSDP, "fsdp_config"), (ZERO3, "deepspeed_config")], ids=["fsdp", "zero3"])
def test_every_section_key_is_a_launch_option(path, section):
    """accelerate copies these keys onto the launch arguments without checking them: a typo would be ignored."""
    options = {action.dest for action in launch_command_parser()._actions}
    keys = set(getattr(load_config_from_file(str(path)), section))
    assert keys, f"{path.name} has no {section}"
    assert keys <= options, f"{path.name}: {sorted(keys - options)} are not accelerate launch options"


def test_fsdp_plugin_gets_full_shard_llama_wrap_checkpointing_and_a_loadable_save(monkeypatch, tiny_lm):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env
    from torch.distributed.fsdp import StateDictType
    from transformers import AutoModelForCausalLM

    args, _ = launch_args(FSDP)
    assert args.use_fsdp and args.num_processes == 8 and args.mixed_precision == "bf16"
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true"
    apply_env(monkeypatch, env)

    plugin = FullyShardedDataParallelPlugin()  # what each training process builds from that environment
    assert plugin.fsdp_version == 2
    assert plugin.reshard_after_forward is True  # FSDP2's full shard
    assert plugin.transformer_cls_names_to_wrap == ["LlamaDecoderLayer"]
    assert plugin.activation_checkpointing is True
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT  # Trainer.save_model writes weights
    assert plugin.cpu_ram_efficient_loading is True
    assert type(plugin.cpu_offload).__name__ == "OffloadPolicy"  # the base policy: no offload

    # the wrap class names a module of a real Llama: accelerate resolves it (it raises when it cannot)
    model = AutoModelForCausalLM.from_pretrained(tiny_lm)
    plugin.set_auto_wrap_policy(model)
    assert plugin.auto_wrap_policy is not None
    assert any(type(m).__name__ == "LlamaDecoderLayer" for m in model.modules())


def test_deepspeed_plugin_gets_zero3_no_offload_16bit_save_and_leaves_the_rest_to_the_trainer(monkeypatch):
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args, defaults = launch_args(ZERO3)
    assert args.use_deepspeed and args.num_processes == 8 and args.mixed_precision == "bf16"
    args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)  # as launch_command does
    cmd, env = prepare_deepspeed_cmd_env(args)
    assert cmd is None  # one node: processes started by accelerate itself, no `deepspeed` runner
    apply_env(monkeypatch, env)

    plugin = DeepSpeedPlugin()  # needs no deepspeed install to build its config
    zero = plugin.deepspeed_config["zero_optimization"]
    assert zero["stage"] == 3
    assert zero["offload_optimizer"]["device"] == "none" and zero["offload_param"]["device"] == "none"
    assert zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert plugin.zero3_init_flag is True
    # filled by transformers from the trainer config, so it is set in one place only
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == "auto"
    assert plugin.deepspeed_config["gradient_clipping"] == "auto"
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == "auto"


@pytest.mark.parametrize("path", [FSDP, ZERO3], ids=["fsdp", "zero3"])
def test_multi_node_as_the_comments_say(path):
    """--num_machines/--num_processes/--machine_rank/--main_process_ip given on each node give 8 processes per
    node meeting at node 0's address (static rendezvous; for DeepSpeed the `standard` launcher, i.e. no
    pdsh/ssh hostfile)."""
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    argv = ["--config_file", str(path), "--num_machines", "4", "--num_processes", "32", "--machine_rank", "2",
            "--main_process_ip", "10.0.0.1", "--main_process_port", "29500", "-m", "trainer", "cpt", "cpt.yaml"]
    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(argv))
    if path == ZERO3:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        cmd, _ = prepare_deepspeed_cmd_env(args)
        assert cmd is None
    else:
        prepare_multi_gpu_env(args)
    assert (args.nproc_per_node, args.nnodes, args.node_rank) == ("8", "4", 2)
    assert (args.rdzv_backend, args.rdzv_endpoint) == ("static", "10.0.0.1:29500")


@pytest.mark.slow
def test_accelerate_launch_trains_cpt_in_two_cpu_processes(tmp_path, tiny_lm):
    """`accelerate launch -m trainer cpt CONFIG` with 2 processes, on the CPU (torch.distributed over gloo;
    ~10 s): both processes train the same 2 steps on their share of each batch, the main one saves a model
    that loads and generates. (On a CPU accelerate runs the processes data-parallel whatever the config
    file says: FSDP sharding and DeepSpeed need GPUs, so this runs the launcher's plain multi-process mode.)"""
    import json
    import os
    import subprocess
    import sys

    import torch
    from tiny_lm import TEXT
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from schemas import DOCUMENT, write_table

    texts = [TEXT * 3, TEXT[::-1] * 2, TEXT.upper() * 2, TEXT * 2]
    rows = [{"paper_id": f"p{i}", "text": t, "extractor": "latex", "reason": "test", "n_pages": 0,
             "n_chars": len(t), "pages": [], "input_sha256": None} for i, t in enumerate(texts)]
    write_table(DOCUMENT, rows, tmp_path / "corpus.parquet")
    (tmp_path / "cpt.yaml").write_text(
        f"model: {tiny_lm}\ncorpus: {tmp_path / 'corpus.parquet'}\noutput_dir: {tmp_path / 'out'}\ndevice: cpu\n"
        "max_length: 64\nvalidation_fraction: 0.0\nmax_steps: 2\nper_device_train_batch_size: 2\n"
        "gradient_checkpointing: false\nsave_strategy: 'no'\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
           "-m", "trainer", "cpt", str(tmp_path / "cpt.yaml")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]

    out = tmp_path / "out"
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    estimate = json.loads((out / "manifest.json").read_text())["steps"][0]["estimate"]
    assert estimate["processes"] == 2  # the world the trainer saw: two processes, not one
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer("The Hubble constant", return_tensors="pt").input_ids
    with torch.no_grad():
        generated = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > ids.shape[1]
