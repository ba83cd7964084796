"""Multi-GPU launching: the accelerate command lines, config files, and a real 2-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runners.launch import build_launch_command
from service.spec import DistributedSpec
from tests.helpers import write_tiny_spec

STRATEGIES = ["ddp", "fsdp", "deepspeed"]
SPEC = Path("/jobs/spec.yaml")


def _accelerate_args(argv: list[str]):
    """Parse and validate argv the way `accelerate launch` itself does (no processes)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    assert argv[1:3] == ["-m", "accelerate.commands.launch"]
    args = launch_command_parser().parse_args(argv[3:])
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


def test_one_gpu_is_a_plain_evalctl_run(tmp_path: Path):
    plan = build_launch_command(
        spec_path=SPEC, run_id=7, gpus=1, strategy="fsdp", work_dir=tmp_path, python="py"
    )
    assert plan.argv == ["py", "-m", "evalctl", "run", str(SPEC), "--resume", "7"]
    assert plan.config_file is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("gpus", [2, 8])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_several_gpus_use_accelerate_launch(tmp_path: Path, gpus: int, strategy: str):
    plan = build_launch_command(
        spec_path=SPEC,
        run_id=3,
        gpus=gpus,
        strategy=strategy,  # type: ignore[arg-type]
        work_dir=tmp_path,
        extra_env={"CUDA_VISIBLE_DEVICES": "0,1"},
        main_process_port=29611,
    )
    flag = {"ddp": "--multi_gpu", "fsdp": "--use_fsdp", "deepspeed": "--use_deepspeed"}[strategy]
    assert plan.argv == [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(tmp_path / f"accelerate-{strategy}-{gpus}.yaml"),
        flag,
        "--num_processes",
        str(gpus),
        "--num_machines",
        "1",
        "--mixed_precision",
        "bf16",
        "--main_process_port",
        "29611",
        "-m",
        "evalctl",
        "run",
        str(SPEC),
        "--resume",
        "3",
    ]
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert plan.env["PATH"] == os.environ["PATH"]
    assert plan.config_file is not None and plan.config_file.is_file()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_config_file_loads_as_accelerate_cluster_config(tmp_path: Path, strategy: str):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.utils import DistributedType

    plan = build_launch_command(
        spec_path=SPEC,
        run_id=1,
        gpus=8,
        strategy=strategy,
        work_dir=tmp_path,  # type: ignore[arg-type]
    )
    config = load_config_from_file(str(plan.config_file))
    assert isinstance(config, ClusterConfig)
    expected = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}[strategy]
    assert config.distributed_type == DistributedType(expected)
    assert (config.num_processes, config.num_machines, config.mixed_precision) == (8, 1, "bf16")
    raw = yaml.safe_load(plan.config_file.read_text())
    # Every key is a field of accelerate's config dataclass (a typo would be ignored).
    assert set(raw) <= set(ClusterConfig.__dataclass_fields__) | {
        "compute_environment",
        "distributed_type",
        "mixed_precision",
        "use_cpu",
        "debug",
    }
    assert bool(config.fsdp_config) == (strategy == "fsdp")
    assert bool(config.deepspeed_config) == (strategy == "deepspeed")


def test_fsdp_options_reach_the_processes_environment(tmp_path: Path):
    from accelerate.utils.launch import prepare_multi_gpu_env

    plan = build_launch_command(
        spec_path=SPEC,
        run_id=1,
        gpus=2,
        strategy="fsdp",
        work_dir=tmp_path,
        options=DistributedSpec(cpu_offload=True),
    )
    args, _ = _accelerate_args(plan.argv)
    assert args.use_fsdp and not args.multi_gpu
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert env["FSDP_VERSION"] == "2"
    assert env["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_OFFLOAD_PARAMS"] == "true"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_options_reach_accelerate(tmp_path: Path, stage: int):
    plan = build_launch_command(
        spec_path=SPEC,
        run_id=1,
        gpus=4,
        strategy="deepspeed",
        work_dir=tmp_path,
        options=DistributedSpec(strategy="ddp", zero_stage=stage, cpu_offload=True),
    )
    args, defaults = _accelerate_args(plan.argv)
    assert args.use_deepspeed and args.num_processes == 4
    assert args.zero_stage == stage
    assert args.offload_optimizer_device == "cpu"
    assert args.offload_param_device == ("cpu" if stage == 3 else "none")
    assert bool(args.zero3_save_16bit_model) == (stage == 3)
    # Left to the Trainer ("auto"): a fixed value here would clash with the spec's.
    assert "gradient_accumulation_steps" not in defaults.deepspeed_config


def test_ddp_argv_is_accepted_by_accelerate(tmp_path: Path):
    from accelerate.utils.launch import prepare_multi_gpu_env

    plan = build_launch_command(
        spec_path=SPEC, run_id=1, gpus=2, strategy="ddp", work_dir=tmp_path, mixed_precision="no"
    )
    args, _ = _accelerate_args(plan.argv)
    env = prepare_multi_gpu_env(args)
    assert args.multi_gpu and not args.use_fsdp and not args.use_deepspeed
    assert "ACCELERATE_USE_FSDP" not in env and env["ACCELERATE_MIXED_PRECISION"] == "no"
    assert args.training_script == "evalctl" and args.module
    assert args.training_script_args == ["run", str(SPEC), "--resume", "1"]


def test_zero_gpus_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="at least 1"):
        build_launch_command(spec_path=SPEC, run_id=1, gpus=0, strategy="ddp", work_dir=tmp_path)


def test_spec_defaults_to_ddp_and_checks_the_strategy():
    from pydantic import ValidationError

    from service.spec import TrainingSpec

    assert TrainingSpec().distributed.strategy == "ddp"
    with pytest.raises(ValidationError):
        TrainingSpec.model_validate({"distributed": {"strategy": "megatron"}})


# The runner agent's part, run with EVALCTL_HOME set: create the run row before any
# process starts ("create"), and read back what the launch recorded ("show").
_REGISTRY_SCRIPT = """
import json, sys
from mlflow.tracking import MlflowClient
from rich.console import Console
from runners.run import RunContext, create_run
from service.local import LocalRegistry
from service.settings import get_settings
from service.spec_loader import load_spec

s = get_settings()
registry = LocalRegistry(s.db_url)
if sys.argv[1] == "create":
    ctx = RunContext(
        spec=load_spec(sys.argv[2]), registry=registry, settings=s, console=Console()
    )
    print(create_run(ctx).id)
else:
    run = registry.get_run(ref=sys.argv[2])
    client = MlflowClient(s.tracking_uri)
    experiment = client.get_experiment_by_name("tiny-orders")
    mlflow_runs = client.search_runs([experiment.experiment_id]) if experiment else []
    print(json.dumps({
        "status": run.status.value,
        "mlflow_run_id": run.mlflow_run_id,
        "steps": [c.step for c in registry.list_checkpoints(run_id=run.id)],
        "evaluations": [
            [e.checkpoint_id, e.evaluator] for e in registry.list_evaluations(run_id=run.id)
        ],
        "mlflow_runs": [r.info.run_id for r in mlflow_runs],
    }))
"""


def _registry(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _REGISTRY_SCRIPT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def _launch_tiny_run(tmp_path: Path, model_dir: Path, *, device: str, precision: str) -> dict:
    """Create a run of the tiny spec, launch it on 2 processes, return what was recorded."""
    home = tmp_path / "home"
    spec = write_tiny_spec(tmp_path / "exp", model_dir, device=device)
    env = {k: v for k, v in os.environ.items() if k != "EVALCTL_DATABASE_URL"}
    env["EVALCTL_HOME"] = str(home)
    run_id = int(_registry(env, "create", str(spec)))
    plan = build_launch_command(
        spec_path=spec,
        run_id=run_id,
        gpus=2,
        strategy="ddp",
        work_dir=home / "runs" / str(run_id),
        extra_env=env,
        mixed_precision=precision,  # type: ignore[arg-type]
    )
    done = subprocess.run(
        plan.argv, env=plan.env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # Both ranks ran: DDP's reducer prefixes its messages with the rank.
    assert "[rank1]" in done.stderr, done.stderr[-2000:]
    return json.loads(_registry(env, "show", str(run_id)))


def _assert_recorded_once(info: dict) -> None:
    assert info["status"] == "succeeded"
    assert info["steps"] == [0, 2, 4]
    # 2 evaluators x 3 checkpoints: one row each, none written by rank 1.
    pairs = [tuple(p) for p in info["evaluations"]]
    assert len(pairs) == 6 and len(set(pairs)) == 6
    # Rank 1 would have opened a second MLflow run.
    assert info["mlflow_runs"] == [info["mlflow_run_id"]]


def test_two_process_cpu_launch_records_each_checkpoint_once(tmp_path: Path, tiny_model_dir: Path):
    # accelerate's `--cpu` flag starts one process; `--multi_gpu` on a machine without
    # CUDA starts torch.distributed.run, and the Trainer (use_cpu) joins over gloo.
    torch = pytest.importorskip("torch")
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is needed for a multi-process CPU run")
    info = _launch_tiny_run(tmp_path, tiny_model_dir, device="cpu", precision="no")
    _assert_recorded_once(info)


@pytest.mark.gpu
def test_two_gpu_launch_records_each_checkpoint_once(tmp_path: Path, tiny_model_dir: Path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA GPUs")
    info = _launch_tiny_run(tmp_path, tiny_model_dir, device="cuda", precision="bf16")
    _assert_recorded_once(info)
