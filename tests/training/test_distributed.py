"""Training under ``accelerate launch`` with the repo's ZeRO-3 config (accelerate/zero3.yaml).

* DeepSpeed's own config checker (``deepspeed.runtime.config.DeepSpeedConfig``) reads the
  DeepSpeed config that ``accelerate launch`` and the Trainer build from that file and from
  configs/rft.yaml / configs/cgrpo.yaml, as they would on 8 GPUs.
* The same file, with only what a CPU needs changed, runs both trainers for real: DeepSpeed's
  CPU accelerator, gloo, 2 processes, the tiny model and the toy set, a few steps each.
"""

from __future__ import annotations

import copy
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("deepspeed", reason="DeepSpeed is the `deepspeed` extra (in `dev`)")

import habitat_eqarm
from habitat_eqarm.data import read_jsonl, write_jsonl
from habitat_eqarm.training.checkpoints import MARKER

REPO = Path(__file__).resolve().parents[2]
ZERO3 = REPO / "configs" / "accelerate" / "zero3.yaml"
# the package under test, for the launched processes
PACKAGE_ROOT = str(Path(habitat_eqarm.__file__).resolve().parents[1])
# what a CPU run needs on the trainer's side (as the other training tests), small inputs
CPU_ARGS = ["--bf16", "false", "--use_cpu", "true", "--activation_checkpointing", "false"]
CPU_ARGS += ["--report_to", "none", "--model_init_kwargs", "{}", "--logging_steps", "1"]
CPU_ARGS += ["--num_keyframes", "3", "--max_pixels", "20000"]


def launch(config: Path, script: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    """``accelerate launch --config_file config <script>``; fails the test unless it exits 0."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([PACKAGE_ROOT, os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config)]
    cmd += ["--main_process_port", "0", *script]  # 0: a free port
    proc = subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400, check=False
    )
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def zero3_on_cpu(tmp_path_factory) -> Path:
    """configs/accelerate/zero3.yaml with three changes a 2-core CPU machine needs."""
    config = yaml.safe_load(ZERO3.read_text())
    assert config["distributed_type"] == "DEEPSPEED"
    assert config["deepspeed_config"]["zero_stage"] == 3
    config["mixed_precision"] = "no"  # float32, as the other CPU training tests
    config["num_processes"] = 2
    # DeepSpeed's CPU accelerator (gloo without oneCCL). Not `accelerate launch --cpu`: that
    # flag makes accelerate drop DeepSpeed and start one plain process.
    config["use_cpu"] = True
    path = tmp_path_factory.mktemp("accelerate") / "zero3_cpu.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def small_toy(toy_set, tmp_path_factory) -> tuple[Path, Path]:
    """The first 12 toy instances and the toy candidate cache (4 candidates each)."""
    instances, candidates = toy_set
    path = tmp_path_factory.mktemp("small-toy") / "instances.jsonl"
    return write_jsonl(path, read_jsonl(instances)[:12]), candidates


def logged_steps(checkpoint: Path) -> dict[int, dict]:
    """The per-step log entries of a checkpoint's trainer state, by step."""
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return {e["step"]: e for e in state["log_history"] if "loss" in e}


# -- DeepSpeed's config checker ------------------------------------------------------------------


ENV_SCRIPT = (
    "import json, os, sys\n"
    "env = {k: v for k, v in os.environ.items() if k.startswith('ACCELERATE_')}\n"
    "env['WORLD_SIZE'] = os.environ['WORLD_SIZE']\n"
    "open(os.path.join(sys.argv[1], 'env-' + os.environ['RANK'] + '.json'), 'w')"
    ".write(json.dumps(env))\n"
)


def launch_environment(tmp_path: Path) -> dict[str, str]:
    """The ``ACCELERATE_*`` variables that ``accelerate launch`` gives each of zero3.yaml's
    processes: the real launcher starts its 8 processes of a script that writes them down."""
    script = tmp_path / "dump_env.py"
    script.write_text(ENV_SCRIPT)
    launch(ZERO3, [str(script), str(tmp_path)], tmp_path)
    written = sorted(tmp_path.glob("env-*.json"))
    assert len(written) == 8  # num_processes: 8
    return json.loads((tmp_path / "env-0.json").read_text())


@pytest.fixture(scope="module")
def zero3_launch_env(tmp_path_factory) -> dict[str, str]:
    return launch_environment(tmp_path_factory.mktemp("launch-env"))


@pytest.fixture
def as_launched(zero3_launch_env, monkeypatch):
    """This process with the environment of one of zero3.yaml's launched processes; after the
    test, the ZeRO-3 config that TrainingArguments registered in transformers is dropped, or
    every later model load in this process would be partitioned (``deepspeed.zero.Init``)."""
    from transformers.integrations.deepspeed import (
        is_deepspeed_zero3_enabled,
        unset_hf_deepspeed_config,
    )

    for key, value in zero3_launch_env.items():
        if key.startswith("ACCELERATE_"):
            monkeypatch.setenv(key, value)
    yield zero3_launch_env
    unset_hf_deepspeed_config()
    assert not is_deepspeed_zero3_enabled()


@pytest.mark.parametrize("trainer", ["rft", "cgrpo"])
def test_zero3_config_passes_deepspeed_checker(trainer, as_launched, tmp_path, tiny_model_path):
    from deepspeed.runtime.config import DeepSpeedConfig
    from transformers import AutoModelForImageTextToText
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    assert as_launched["WORLD_SIZE"] == "8"
    assert as_launched["ACCELERATE_USE_DEEPSPEED"] == "true"
    # loaded before the config exists: after it, from_pretrained would partition the model
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path)
    parser = importlib.import_module(f"habitat_eqarm.cli.train_{trainer}").make_parser()
    paper = REPO / "configs" / f"{trainer}.yaml"
    # --use_cpu: this machine has no GPU for bf16; it does not enter the DeepSpeed config
    args = ["--config", str(paper), "--output_dir", str(tmp_path), "--use_cpu", "true"]
    cfg = parser.parse_args_and_config([*args, "--model_name_or_path", str(tiny_model_path)])[0]
    assert cfg.deepspeed_plugin is not None  # what ACCELERATE_USE_DEEPSPEED does
    # what the Trainer does with it (transformers' propagate_args_to_deepspeed, deepspeed_init)
    hf_config = HfTrainerDeepSpeedConfig(copy.deepcopy(cfg.deepspeed_plugin.deepspeed_config))
    hf_config.trainer_config_process(cfg)
    hf_config.trainer_config_finalize(cfg, model, num_training_steps=100)
    checked = DeepSpeedConfig(hf_config.config)  # raises on an invalid or inconsistent config
    assert checked.zero_optimization_stage == 3
    assert checked.zero_config.gather_16bit_weights_on_model_save  # a whole model is saved
    assert checked.bfloat16_config.enabled and not checked.float16_config.enabled
    assert checked.gradient_clipping == cfg.max_grad_norm == 5.0
    micro, accumulation = cfg.per_device_train_batch_size, cfg.gradient_accumulation_steps
    assert checked.train_micro_batch_size_per_gpu == micro
    assert checked.train_batch_size == micro * accumulation  # one process here
    if trainer == "cgrpo":  # the README's 8 GPUs x batch 1: one prompt's group of G per step
        assert 8 * 1 * accumulation % cfg.num_generations == 0


def test_deepspeed_checker_refuses_a_clipping_that_contradicts_the_trainer(
    as_launched, tmp_path, tiny_model_path
):
    """zero3.yaml's gradient_clipping must agree with max_grad_norm: the check is live."""
    from transformers import AutoModelForImageTextToText
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig

    from habitat_eqarm.training.rft_config import RFTConfig

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_path)
    cfg = RFTConfig(output_dir=str(tmp_path), use_cpu=True, max_grad_norm=1.0)
    hf_config = HfTrainerDeepSpeedConfig(copy.deepcopy(cfg.deepspeed_plugin.deepspeed_config))
    hf_config.trainer_config_process(cfg)
    with pytest.raises(ValueError, match="gradient_clipping"):
        hf_config.trainer_config_finalize(cfg, model, num_training_steps=100)


def test_multinode_launch_line_starts_every_rank(tmp_path):
    """The README's multi-node line, two "nodes" on this machine (2 processes each)."""
    import socket

    script = tmp_path / "dump_env.py"
    script.write_text(ENV_SCRIPT)
    with socket.socket() as sock:  # a free port for the main node's rendezvous
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = []
    for rank in (0, 1):
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ZERO3)]
        cmd += ["--num_machines", "2", "--num_processes", "4", "--machine_rank", str(rank)]
        cmd += ["--main_process_ip", "127.0.0.1", "--main_process_port", port]
        cmd += ["--deepspeed_multinode_launcher", "standard", str(script), str(tmp_path)]
        node = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        nodes.append(node)
    for node in nodes:
        out, _ = node.communicate(timeout=120)
        assert node.returncode == 0, out.decode()[-4000:]
    written = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("env-*.json")}
    assert sorted(written) == [f"env-{r}.json" for r in range(4)]
    for env_of_rank in written.values():
        assert env_of_rank["WORLD_SIZE"] == "4"
        assert env_of_rank["ACCELERATE_USE_DEEPSPEED"] == "true"
        assert env_of_rank["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == "3"


# -- real runs: DeepSpeed ZeRO-3 on CPU, 2 processes -------------------------------------------


@pytest.mark.slow
def test_rft_under_zero3_on_two_processes_resumes_where_it_stopped(
    tmp_path, zero3_on_cpu, tiny_model_path, small_toy
):
    import torch
    from transformers import AutoModelForImageTextToText

    instances, candidates = small_toy
    # the cache lacks the last instance: the main process runs the evaluator for it, alone
    cache = tmp_path / "candidates.jsonl"
    wanted = {inst.question_id for inst in read_jsonl(instances)}
    lines = [
        line
        for line in candidates.read_text().splitlines(keepends=True)
        if json.loads(line)["judgement"]["question_id"] in wanted
    ]
    cache.write_text("".join(lines[:-1]))
    script = ["-m", "habitat_eqarm.cli.main", "train", "rft", "--data", str(instances)]
    script += ["--model_name_or_path", str(tiny_model_path), "--candidates", str(cache)]
    script += ["--n_rft", "4", "--candidate_max_new_tokens", "16", "--learning_rate", "1e-2"]
    script += ["--max_steps", "4", "--save_steps", "2", "--per_device_train_batch_size", "2"]
    script += CPU_ARGS
    out = tmp_path / "run"
    first = launch(zero3_on_cpu, [*script, "--output_dir", str(out)], tmp_path)
    assert first.stdout.count("trained 4 steps") == 1  # one report, from the main process
    assert len(cache.read_text().splitlines()) == len(lines)  # one evaluator run, one new line
    for step in (2, 4):
        checkpoint = out / f"checkpoint-{step}"
        assert (checkpoint / MARKER).is_file()
        # ZeRO-3 split the weights and the optimizer state over both processes
        shards = {p.name for p in (checkpoint / f"global_step{step}").iterdir()}
        for rank in (0, 1):
            assert f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt" in shards
            assert f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt" in shards
            assert (checkpoint / f"rng_state_{rank}.pth").is_file()
    history = logged_steps(out / "checkpoint-4")
    assert sorted(history) == [1, 2, 3, 4]
    assert all(math.isfinite(e["loss"]) and math.isfinite(e["grad_norm"]) for e in history.values())
    # the model is saved whole (ZeRO-3 gathers the shards) and loads back with every weight at
    # full size, trained. (Its file names the language model's weights `model.model.*`, not
    # `model.*` as a one-process save does; from_pretrained maps both.)
    saved, info = AutoModelForImageTextToText.from_pretrained(out, output_loading_info=True)
    assert not (info["missing_keys"] or info["unexpected_keys"] or info["mismatched_keys"])
    start = AutoModelForImageTextToText.from_pretrained(tiny_model_path).state_dict()
    trained = saved.state_dict()
    assert trained.keys() == start.keys()
    assert all(trained[k].shape == start[k].shape for k in start)
    assert any(not torch.equal(trained[k], start[k]) for k in start)

    # a crash after step 2: resuming from checkpoint-2 repeats steps 3 and 4 of the whole run
    resumed = tmp_path / "resumed"
    shutil.copytree(out / "checkpoint-2", resumed / "checkpoint-2")
    second = launch(zero3_on_cpu, [*script, "--output_dir", str(resumed)], tmp_path)
    assert second.stdout.count("trained 4 steps") == 1
    again = logged_steps(resumed / "checkpoint-4")
    for step in (3, 4):
        # same weights, optimizer state, batches and RNG state in float32, so the same sums:
        # a 1e-6 relative margin is float32 rounding (6e-8) over a few hundred terms, while
        # weights not restored would differ by an Adam step of lr 1e-2 (about 1e-2 per weight)
        assert again[step]["loss"] == pytest.approx(history[step]["loss"], rel=1e-6)


@pytest.mark.slow
def test_cgrpo_under_zero3_on_two_processes(tmp_path, zero3_on_cpu, tiny_model_path, small_toy):
    out = tmp_path / "run"
    script = ["-m", "habitat_eqarm.cli.main", "train", "cgrpo", "--data", str(small_toy[0])]
    script += ["--model_name_or_path", str(tiny_model_path), "--output_dir", str(out)]
    # 2 processes x 2 completions: one prompt's group of G = 4 spans both, so its rewards and
    # the perturbed scores behind the boosts are gathered across processes
    script += ["--per_device_train_batch_size", "2", "--num_generations", "4"]
    script += ["--max_completion_length", "16", "--max_steps", "2", "--save_steps", "2"]
    proc = launch(zero3_on_cpu, [*script, *CPU_ARGS], tmp_path)
    assert proc.stdout.count("trained 2 steps") == 1
    checkpoint = out / "checkpoint-2"
    assert (checkpoint / MARKER).is_file()
    history = logged_steps(checkpoint)
    assert sorted(history) == [1, 2]
    for entry in history.values():
        assert math.isfinite(entry["loss"])
        for column in ("accuracy_reward", "format_reward", "boost_temporal", "boost_spatial"):
            assert math.isfinite(entry[f"rewards/{column}/mean"])
    assert (out / "model.safetensors").is_file() and (out / "cgrpo_curves.png").is_file()


@pytest.mark.slow
def test_agent_grpo_under_zero3_on_two_processes(
    tmp_path, zero3_on_cpu, tiny_model_path, agent_toy
):
    """The agent trainer with an in-process EQA-RM on each process: the RM loads whole and
    scores alone (a process with no parsable answer makes no RM call, so lockstep generation
    across processes would hang), while the agent trains partitioned."""
    questions, agent = agent_toy
    out = tmp_path / "run"
    script = ["-m", "habitat_eqarm.cli.main", "train", "agent", "--data", str(questions)]
    script += ["--model_name_or_path", str(agent), "--rm_model", str(tiny_model_path)]
    script += ["--output_dir", str(out), "--per_device_train_batch_size", "2"]
    script += ["--num_generations", "4", "--max_completion_length", "24", "--max_steps", "2"]
    script += ["--save_steps", "2", "--rm_max_new_tokens", "16", "--rm_batch_size", "4"]
    proc = launch(zero3_on_cpu, [*script, *CPU_ARGS], tmp_path)
    checkpoint = out / "checkpoint-2"
    assert (checkpoint / MARKER).is_file(), proc.stdout[-2000:]
    history = logged_steps(checkpoint)
    assert sorted(history) == [1, 2]
    for entry in history.values():
        assert math.isfinite(entry["loss"])
        assert math.isfinite(entry["rewards/rm_reward/mean"])
        assert 0.0 <= entry["agent/unparsable"] <= 1.0
    assert (out / "model.safetensors").is_file()
