"""Launching a run on several GPUs: the `accelerate launch` command line and its config file.

Owns turning "this run, on N GPUs, with strategy ddp | fsdp | deepspeed" into a command a
runner can start: plain `python -m evalctl run` for one GPU, `accelerate launch` for more,
with a generated accelerate config file (so a user's `accelerate config` default never
leaks in), and the rank checks that keep ranks > 0 from recording anything. It does not
distribute training itself (accelerate and torch.distributed do), pick GPUs (the runner
sets CUDA_VISIBLE_DEVICES through `extra_env`), or start processes (the runner agent does).

Every process is started as `evalctl run SPEC --resume RUN_ID`: the run row already exists
(the runner made it), so all ranks attach to the same run, and a re-queued job continues
from its last recorded checkpoint.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from service.spec import DistributedSpec

Strategy = Literal["ddp", "fsdp", "deepspeed"]
MixedPrecision = Literal["no", "bf16", "fp16"]

# accelerate's own names: the launcher flag and the config file's distributed_type.
_FLAGS: dict[str, str] = {
    "ddp": "--multi_gpu",
    "fsdp": "--use_fsdp",
    "deepspeed": "--use_deepspeed",
}
_TYPES: dict[str, str] = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}


@dataclass(frozen=True)
class LaunchPlan:
    """What a runner starts: the command, its environment, and the generated config."""

    argv: list[str]
    env: dict[str, str]
    config_file: Path | None


def build_launch_command(
    *,
    spec_path: Path,
    run_id: int,
    gpus: int,
    strategy: Strategy,
    work_dir: Path,
    python: str = sys.executable,
    extra_env: Mapping[str, str] | None = None,
    options: DistributedSpec | None = None,
    mixed_precision: MixedPrecision = "bf16",
    main_process_port: int | None = None,
) -> LaunchPlan:
    """Return the command that trains run `run_id` of `spec_path` on `gpus` GPUs.

    Args:
        spec_path: The experiment spec (YAML) the run was created from.
        run_id: The run row every process attaches to (`--resume`).
        gpus: Processes to start, one per GPU; 1 means no launcher at all.
        strategy: ddp, fsdp or deepspeed (the spec's `training.distributed.strategy`).
        work_dir: Where the accelerate config file is written (the run's folder).
        python: The interpreter of the environment evalctl is installed in.
        extra_env: Variables added to the current environment (CUDA_VISIBLE_DEVICES, ...).
        options: The spec's `training.distributed` (ZeRO stage, CPU offload).
        mixed_precision: accelerate's mixed precision; match the spec's dtype.
        main_process_port: Rendezvous port; default a free one, so that two jobs on one
            machine do not collide on accelerate's 29500.

    Returns:
        The argv, the full environment, and the config file (None for one GPU).

    Raises:
        ValueError: gpus < 1, or a strategy accelerate does not know.
    """
    if gpus < 1:
        raise ValueError(f"gpus must be at least 1, got {gpus}")
    if strategy not in _FLAGS:
        raise ValueError(f"unknown strategy {strategy!r}; use one of {', '.join(_FLAGS)}")
    env = {**os.environ, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
    run_args = ["-m", "evalctl", "run", str(spec_path), "--resume", str(run_id)]
    if gpus == 1:
        return LaunchPlan(argv=[python, *run_args], env=env, config_file=None)
    options = (options or DistributedSpec()).model_copy(update={"strategy": strategy})
    port = main_process_port or free_port()
    config = accelerate_config(options, gpus=gpus, mixed_precision=mixed_precision, port=port)
    work_dir.mkdir(parents=True, exist_ok=True)
    config_file = work_dir / f"accelerate-{strategy}-{gpus}.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    argv = [
        python,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(config_file),
        _FLAGS[strategy],
        "--num_processes",
        str(gpus),
        "--num_machines",
        "1",
        "--mixed_precision",
        mixed_precision,
        "--main_process_port",
        str(port),
        *run_args,
    ]
    return LaunchPlan(argv=argv, env=env, config_file=config_file)


def accelerate_config(
    options: DistributedSpec, *, gpus: int, mixed_precision: MixedPrecision, port: int
) -> dict[str, object]:
    """Return an accelerate config (the YAML `accelerate config` writes) for one machine."""
    config: dict[str, object] = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": _TYPES[options.strategy],
        "num_processes": gpus,
        "num_machines": 1,
        "machine_rank": 0,
        "main_process_port": port,
        "gpu_ids": "all",
        "mixed_precision": mixed_precision,
        "use_cpu": False,
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
        "enable_cpu_affinity": False,
        "debug": False,
    }
    if options.strategy == "fsdp":
        config["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",  # wraps model._no_split_modules
            # Full weights in each checkpoint folder: rank 0 hashes and records them.
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_offload_params": options.cpu_offload,
            "fsdp_reshard_after_forward": True,
            # Every rank loads the weights itself: runners.sources loads before the
            # Trainer exists, so meta-device loading on ranks > 0 cannot apply.
            "fsdp_cpu_ram_efficient_loading": False,
            "fsdp_activation_checkpointing": False,
        }
    elif options.strategy == "deepspeed":
        offload = "cpu" if options.cpu_offload else "none"
        # gradient_accumulation_steps and gradient_clipping are left out on purpose: they
        # default to "auto" and the Trainer fills them from the spec (a value here that
        # differed from the Trainer's would be a startup error).
        config["deepspeed_config"] = {
            "zero_stage": options.zero_stage,
            "offload_optimizer_device": offload,
            "offload_param_device": offload if options.zero_stage == 3 else "none",
            "zero3_init_flag": False,
            # ZeRO-3 shards weights; gather them at save time so checkpoints are complete.
            "zero3_save_16bit_model": options.zero_stage == 3,
        }
    return config


def free_port() -> int:
    """Return a TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_main_process() -> bool:
    """Return whether this process records the run: rank 0, or the only process.

    `accelerate launch` and torchrun both set RANK; reading it needs no torch import, so
    `runners.run` can ask before anything heavy is loaded.
    """
    return int(os.environ.get("RANK", "0")) == 0


def bind_local_gpu(device: str) -> None:
    """Make "cuda" mean this process's own GPU (LOCAL_RANK) under a multi-process launch.

    Without it every rank would load the base model onto GPU 0 before the Trainer moves it.
    """
    local_rank = os.environ.get("LOCAL_RANK")
    if device != "cuda" or local_rank is None:
        return
    import torch

    torch.cuda.set_device(int(local_rank))
