"""The `lm_eval` evaluator: EleutherAI lm-evaluation-harness tasks on the loaded model.

Owns finding and checking the tasks before any model work (a `TaskManager` over the
spec's `include_path`, lm-eval's built-in tasks only with `builtin_tasks: true`; unknown
names get "did you mean", unreadable task YAMLs and missing data files are named), building
them once, and running them through `lm_eval.simple_evaluate` on the already-loaded model
wrapped in `HFLM`. Relative `data_files` in a task YAML are resolved against that YAML's
folder (lm-eval itself resolves them against the working directory). Metrics are
`<task>.<metric>` (`acc,none` -> `acc`; another filter is kept: `exact_match.strip`) and
`<task>.<metric>_stderr`; per-example scores are `<task>/<doc_id>`. It does not load the
model, restores the model's train/eval modes and the global random generators after the
run, and does not record results.
"""

from __future__ import annotations

import dataclasses
import glob
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from evaluators.base import EvalResult, Evaluator, EvaluatorInputError, ExampleScore, ModelHandle
from service.errors import did_you_mean
from service.spec import ExistingPath

DETAIL_CHARS = 500
LISTED_TASKS = 20  # an unknown-task message lists the available tasks up to this many


@dataclass
class LoadedTasks:
    """Tasks built in `prepare`: lm-eval's task manager and the Task/Group objects."""

    manager: Any
    objects: list[Any]

    def leaf_tasks(self) -> dict[str, Any]:
        """Return every leaf Task by name (groups expanded)."""
        tasks: dict[str, Any] = {}
        for obj in self.objects:
            inner = obj.get_all_tasks() if hasattr(obj, "get_all_tasks") else [obj]
            tasks.update({task.task_name: task for task in inner})
        return tasks


class LmEvalEvaluator(Evaluator):
    """Score the model on lm-evaluation-harness tasks (local YAML tasks by default)."""

    name = "lm_eval"

    class Config(Evaluator.Config):
        tasks: list[str] = Field(
            min_length=1, description="Task, group or tag names, e.g. [evalctl_mc_orders]."
        )
        include_path: ExistingPath | None = Field(
            default=None,
            description="Folder of task YAMLs (relative to the spec); data_files inside a "
            "YAML are relative to that YAML.",
        )
        builtin_tasks: bool = Field(
            default=False,
            description="Also index lm-eval's built-in tasks (slow, about 10 s; their data "
            "usually comes from the hub).",
        )
        num_fewshot: int | None = Field(
            default=None, ge=0, description="Few-shot examples (default: the task's own)."
        )
        limit: int | None = Field(
            default=None, ge=1, description="Use only the first N documents of each task."
        )
        batch_size: int = Field(default=8, ge=1, description="Requests per forward pass.")
        max_length: int | None = Field(
            default=None, ge=2, description="Context window in tokens (default: the model's)."
        )
        gen_kwargs: dict[str, Any] | None = Field(
            default=None,
            description="Generation settings merged into generate_until tasks' own, e.g. "
            "{max_gen_toks: 32}.",
        )
        apply_chat_template: bool = Field(
            default=False, description="Wrap prompts in the tokenizer's chat template."
        )
        bootstrap_iters: int = Field(
            default=1000,
            ge=0,
            description="Bootstrap resamples for the stderr of non-mean metrics (0: none).",
        )

        @model_validator(mode="after")
        def _has_task_source(self) -> LmEvalEvaluator.Config:
            if self.include_path is None and not self.builtin_tasks:
                raise ValueError("set include_path (a folder of task YAMLs) or builtin_tasks")
            return self

    config: Config

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._loaded: LoadedTasks | None = None

    def prepare(self) -> None:
        """Find the tasks, check their YAMLs and data files, and build them.

        Raises:
            EvaluatorInputError: include_path is not a folder, a task name is unknown
                ("did you mean"), a task YAML does not load (names the file), or a data
                file is missing or unreadable.
        """
        self._loaded = load_tasks(
            self.config.tasks,
            include_path=self.config.include_path,
            builtin_tasks=self.config.builtin_tasks,
        )

    def evaluate(self, handle: ModelHandle) -> EvalResult:
        """Run the tasks with lm-eval on the loaded model; return metrics and per-doc scores."""
        import lm_eval
        from lm_eval.models.huggingface import HFLM

        from evaluators.generation import eval_mode

        if self._loaded is None:
            self.prepare()
        loaded = self._loaded
        assert loaded is not None
        cfg = self.config
        # HFLM calls model.eval() and simple_evaluate reseeds the global generators: undo
        # both, so evaluating mid-training leaves dropout and the data order untouched.
        with eval_mode(handle.model), _random_state_kept():
            lm = HFLM(
                pretrained=handle.model,
                tokenizer=_tokenizer_for_lm_eval(handle.tokenizer),
                batch_size=cfg.batch_size,
                max_length=cfg.max_length,
            )
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=list(loaded.objects),
                task_manager=loaded.manager,
                num_fewshot=cfg.num_fewshot,
                limit=cfg.limit,
                gen_kwargs=dict(cfg.gen_kwargs) if cfg.gen_kwargs else None,
                apply_chat_template=cfg.apply_chat_template,
                bootstrap_iters=cfg.bootstrap_iters,
                log_samples=True,
            )
        return to_eval_result(results, loaded.leaf_tasks())


def load_tasks(names: list[str], *, include_path: Path | None, builtin_tasks: bool) -> LoadedTasks:
    """Index the task YAMLs, check the requested names and build their Task objects.

    Raises:
        EvaluatorInputError: see `LmEvalEvaluator.prepare`.
    """
    from lm_eval.tasks import TaskManager

    if include_path is not None and not include_path.is_dir():
        what = "not a folder" if include_path.exists() else "folder not found"
        raise EvaluatorInputError(f"include_path: {what}: {include_path}")
    manager = TaskManager(include_path=include_path, include_defaults=builtin_tasks)
    for name in names:
        if name not in manager.all_tasks:
            broken = unreadable_yamls(include_path) if include_path is not None else {}
            raise EvaluatorInputError(_unknown_task(name, manager.all_tasks, broken))
    sources: dict[str, Path] = {}
    if include_path is not None:
        for task in _leaf_names(manager.task_index, names):
            sources[task] = _localize(manager.task_index, task, include_path.resolve())
    objects = []
    for name in names:
        try:
            loaded = manager.load([name])
        except Exception as exc:  # lm-eval and datasets raise many types; all mean bad input
            where = sources.get(name) or _source(manager.task_index, name) or name
            raise EvaluatorInputError(f"task '{name}' ({where}): {_one_line(exc)}") from None
        groups, tasks = loaded.get("groups") or {}, loaded["tasks"]
        objects.extend([groups[name]] if name in groups else tasks.values())
    return LoadedTasks(manager=manager, objects=objects)


def unreadable_yamls(folder: Path) -> dict[Path, str]:
    """Return the YAML files under `folder` that lm-eval cannot read, with the reason.

    lm-eval's index skips such files silently, so their tasks would just be "unknown".
    """
    import yaml
    from lm_eval.tasks._yaml_loader import load_yaml

    broken = {}
    for path in sorted(folder.glob("**/*.yaml")):
        try:
            load_yaml(path, resolve_func=False, recursive=True)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
            broken[path] = f"{path}{where}: invalid YAML: {exc.problem or exc.context}"
        except Exception as exc:  # a missing include, a non-mapping document, ...
            broken[path] = f"{path}: {_one_line(exc)}"
    return broken


def _unknown_task(name: str, known: list[str], broken: dict[Path, str]) -> str:
    # A task whose YAML does not parse is missing from the index: name that file.
    for path, problem in broken.items():
        if name in path.read_text(encoding="utf-8", errors="replace"):
            return f"cannot load task '{name}': {problem}"
    message = f"Unknown lm-eval task '{name}'.{did_you_mean(name, known)}"
    if not known:
        message += " No tasks found; check include_path."
    elif len(known) <= LISTED_TASKS:
        message += f" Available: {', '.join(known)}"
    if broken:
        message += f" ({len(broken)} unreadable YAML file(s), e.g. {next(iter(broken.values()))})"
    return message


def _leaf_names(index: dict[str, Any], names: list[str]) -> list[str]:
    """Return the names of the YAML tasks that `names` (tasks, groups, tags) expand to."""
    seen: list[str] = []
    stack = list(reversed(names))
    while stack:
        name = stack.pop()
        entry = index.get(name)
        if entry is None or name in seen:
            continue
        seen.append(name)
        if entry.kind.name == "TAG":
            stack.extend(sorted(entry.tags))
        elif entry.kind.name == "GROUP":
            members = (entry.cfg or {}).get("task") or []
            for member in members if isinstance(members, list) else [members]:
                ref = (
                    member.get("task") or member.get("group")
                    if isinstance(member, dict)
                    else member
                )
                if isinstance(ref, str):
                    stack.append(ref)
    return [name for name in seen if index[name].kind.name == "TASK"]


def _localize(index: dict[str, Any], name: str, include_path: Path) -> Path:
    """Resolve a local task's relative data_files against its YAML's folder, in the index.

    The entry is replaced by its fully loaded config (lm-eval's own loader: includes and
    !function resolved) with absolute data_files; lm-eval builds tasks from an entry's
    config when it has no YAML path. Returns the YAML path, for messages.

    Raises:
        EvaluatorInputError: the YAML does not load, or a data file does not exist.
    """
    from lm_eval.tasks._yaml_loader import load_yaml

    entry = index[name]
    path = Path(entry.yaml_path).resolve()
    if not path.is_relative_to(include_path):
        return path  # a built-in task: its data comes from the hub
    try:
        cfg = load_yaml(path, resolve_func=True, recursive=True)
    except Exception as exc:  # an unimportable !function, a broken include, ...
        raise EvaluatorInputError(f"task '{name}' ({path}): {_one_line(exc)}") from None
    kwargs = cfg.get("dataset_kwargs") or {}
    if "data_files" in kwargs:
        kwargs["data_files"] = _absolute_files(kwargs["data_files"], path, name)
    index[name] = dataclasses.replace(entry, yaml_path=None, cfg=cfg)
    return path


def _absolute_files(files: Any, yaml_path: Path, task: str) -> Any:
    """Return data_files (a path, a list, or split -> path/list) resolved against the YAML."""
    if isinstance(files, dict):
        return {split: _absolute_files(value, yaml_path, task) for split, value in files.items()}
    if isinstance(files, list):
        return [_absolute_files(value, yaml_path, task) for value in files]
    if not isinstance(files, str) or "://" in files:
        return files  # a URL (hf://, https://) is not ours to check
    path = (yaml_path.parent / Path(files).expanduser()).resolve()
    found = glob.glob(str(path)) if glob.has_magic(str(path)) else [path] if path.is_file() else []
    if not found:
        raise EvaluatorInputError(
            f"task '{task}' ({yaml_path}): data file not found: {path} "
            "(data_files are relative to the task YAML)"
        )
    return str(path)


def _source(index: dict[str, Any], name: str) -> Path | None:
    entry = index.get(name)
    return getattr(entry, "yaml_path", None)


def to_eval_result(results: dict[str, Any], tasks: dict[str, Any]) -> EvalResult:
    """Turn `simple_evaluate` output into evalctl metrics and per-example scores.

    Args:
        results: what `lm_eval.simple_evaluate(..., log_samples=True)` returned.
        tasks: the leaf Task objects by name (their aggregations score one example).
    """
    metrics: dict[str, float] = {}
    for task, row in results["results"].items():
        for key, value in row.items():
            number = _number(value)
            if "," in key and number is not None:
                metric, _, filter_name = key.partition(",")
                stderr = metric.endswith("_stderr")
                base = metric.removesuffix("_stderr") if stderr else metric
                name = _metric_name(base, filter_name) + ("_stderr" if stderr else "")
                metrics[f"{task}.{name}"] = number
        if isinstance(row.get("sample_len"), int):
            metrics[f"{task}.examples"] = float(row["sample_len"])
    examples: list[ExampleScore] = []
    for task, samples in (results.get("samples") or {}).items():
        examples.extend(_examples(task, samples, tasks.get(task)))
    return EvalResult(metrics=metrics, examples=examples)


def _examples(task: str, samples: list[dict[str, Any]], task_obj: Any) -> list[ExampleScore]:
    """Return one ExampleScore per document (a document's filters are merged)."""
    aggregations = task_obj.aggregation() if task_obj is not None else {}
    by_doc: dict[Any, ExampleScore] = {}
    for sample in samples:
        doc_id = sample["doc_id"]
        example = by_doc.get(doc_id)
        if example is None:
            example = ExampleScore(example_id=f"{task}/{doc_id}", details=_details(sample))
            by_doc[doc_id] = example
        filter_name = sample.get("filter", "none")
        for metric in sample.get("metrics", []):
            value = _number(sample.get(metric))
            if value is None and metric in aggregations:
                # Corpus metrics (perplexities, bleu) log an item per document, not a score:
                # the metric's own aggregation over that one item is the document's score.
                try:
                    value = _number(aggregations[metric]([sample[metric]]))
                except Exception:  # an aggregation that needs more than one item
                    value = None
            if value is not None:
                example.scores[_metric_name(metric, filter_name)] = value
        resps = sample.get("filtered_resps")
        if isinstance(resps, list) and len(resps) == 1 and isinstance(resps[0], float):
            example.scores["loglikelihood"] = resps[0]  # a loglikelihood_rolling document
    return list(by_doc.values())


def _details(sample: dict[str, Any]) -> dict[str, Any]:
    """Return the prompt, target and output of a sample, when they are plain values."""
    args = sample.get("arguments") or []
    details: dict[str, Any] = {}
    if args and isinstance(args[0], tuple | list) and isinstance(args[0][0], str):
        details["input"] = _short(args[0][0])
    target = sample.get("target")
    continuations = [a[1] for a in args if isinstance(a, tuple | list) and len(a) > 1]
    choices = [c.strip() for c in continuations if isinstance(c, str)]
    distinct = len(set(choices)) == len(choices)  # not so for tasks with one input per choice
    if (
        isinstance(target, int)
        and not isinstance(target, bool)
        and distinct
        and target < len(choices)
    ):
        target = choices[target]
    if isinstance(target, str | int | float):
        details["target"] = _short(str(target))
    resps = sample.get("filtered_resps")
    if isinstance(resps, list) and resps and isinstance(resps[0], str):
        details["output"] = _short(resps[0])
    elif isinstance(resps, list) and len(resps) == len(choices) and choices:
        scores = [r[0] if isinstance(r, tuple | list) else r for r in resps]
        if all(isinstance(s, float) for s in scores):
            details["output"] = choices[max(range(len(scores)), key=scores.__getitem__)]
    return details


def _metric_name(metric: str, filter_name: str) -> str:
    return metric if filter_name in ("", "none") else f"{metric}.{filter_name}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _short(text: str) -> str:
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def _one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _tokenizer_for_lm_eval(tokenizer: Any) -> Any:
    # HFLM gives a tokenizer without a pad token one; do that to a copy, not the caller's.
    if getattr(tokenizer, "pad_token", None) is None:
        import copy

        return copy.deepcopy(tokenizer)
    return tokenizer


@contextmanager
def _random_state_kept() -> Iterator[None]:
    """Restore Python's, numpy's and torch's global random generators after the block."""
    import random

    import numpy as np
    import torch

    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
