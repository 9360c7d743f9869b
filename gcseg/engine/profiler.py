"""``--profiler_options``: Paddle's profiler over a range of training steps, with PaddleSeg's
option string.

The string is ``"key=value; key=value"`` with PaddleSeg's keys: ``batch_range=[10, 20]`` (as in
PaddleSeg: the profiler starts after this process's 11th step and stops after its 21st, so it
records the 10 steps in between), ``state`` (``CPU``, ``GPU`` or ``All``), ``sorted_key`` of the
printed summary (``total``, ``ave``, ``max``, ``min``), ``tracer_option`` (``Default``;
``OpDetail`` / ``AllOpDetail`` list every operator), ``profile_path`` (where the trace goes,
default ``<save_dir>/profile.json``) and ``exit_on_finished`` (default true: training ends once
the range is profiled, after a checkpoint). The trace is a Chrome tracing JSON file (open it in
``chrome://tracing`` or Perfetto); under ``paddle.distributed.launch`` rank ``r > 0`` writes
``<profile_path>.rank<r>``.
"""
import logging
import os
import re
from typing import Any, Dict, Optional

import paddle
import paddle.profiler as paddle_profiler

from gcseg.errors import UsageError

logger = logging.getLogger(__name__)

FLAG = "--profiler_options"
DEFAULT_FILE = "profile.json"
STATES = ("CPU", "GPU", "All")
SORTED_KEYS = ("total", "ave", "max", "min")
TRACER_OPTIONS = ("Default", "OpDetail", "AllOpDetail")
_KEYS = ("batch_range", "state", "sorted_key", "tracer_option", "profile_path",
         "exit_on_finished")


def _batch_range(text: str) -> list:
    numbers = re.fullmatch(r"\[?\s*(\d+)\s*,\s*(\d+)\s*\]?", text)
    if numbers is None or int(numbers.group(1)) >= int(numbers.group(2)):
        raise UsageError(f"{FLAG}: batch_range: expected [first, last] with 0 <= first < last, "
                         f"got {text!r}")
    return [int(numbers.group(1)), int(numbers.group(2))]


def _choice(key: str, value: str, choices: tuple) -> str:
    if value not in choices:
        raise UsageError(f"{FLAG}: {key}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def parse_profiler_options(text: str, save_dir: str) -> Dict[str, Any]:
    """PaddleSeg's option string as a dict of every key (defaults filled in)."""
    options = {"batch_range": [10, 20], "state": "All", "sorted_key": "total",
               "tracer_option": "Default", "profile_path": os.path.join(save_dir, DEFAULT_FILE),
               "exit_on_finished": True}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or key not in _KEYS:
            raise UsageError(f"{FLAG}: {item!r}: expected key=value with a key among "
                             f"{', '.join(_KEYS)}")
        if key == "batch_range":
            options[key] = _batch_range(value)
        elif key == "exit_on_finished":
            options[key] = value.lower() in ("yes", "true", "t", "1")
        elif key == "profile_path":
            options[key] = value
        else:
            choices = {"state": STATES, "sorted_key": SORTED_KEYS,
                       "tracer_option": TRACER_OPTIONS}[key]
            options[key] = _choice(key, value, choices)
    return options


def _targets(state: str) -> list:
    has_gpu = paddle.is_compiled_with_cuda()
    if state == "GPU" and not has_gpu:
        raise UsageError(f"{FLAG}: state=GPU: this Paddle build has no CUDA support")
    cpu, gpu = paddle_profiler.ProfilerTarget.CPU, paddle_profiler.ProfilerTarget.GPU
    return {"CPU": [cpu], "GPU": [gpu], "All": [cpu, gpu] if has_gpu else [cpu]}[state]


class StepProfiler:
    """Starts and stops Paddle's profiler as :meth:`after_step` counts the steps."""

    def __init__(self, options: Dict[str, Any], rank: int = 0) -> None:
        self.options, self.steps = options, 0
        self.path = options["profile_path"] + (f".rank{rank}" if rank else "")
        self.profiler: Optional[paddle_profiler.Profiler] = None
        _targets(options["state"])  # a GPU profile on a CPU-only Paddle fails before training

    def after_step(self) -> bool:
        """Count a step; True once the range is profiled and training should end."""
        first, last = self.options["batch_range"]
        finished = False
        if self.profiler is not None:
            self.profiler.step()
        if self.steps == first:
            self.profiler = paddle_profiler.Profiler(targets=_targets(self.options["state"]),
                                                     on_trace_ready=lambda profiler: None)
            self.profiler.start()
        elif self.steps == last and self.profiler is not None:
            self.finish()
            finished = self.options["exit_on_finished"]
        self.steps += 1
        return finished

    def finish(self) -> None:
        """Stop, write the trace and print the summary (also when training ends early)."""
        if self.profiler is None:
            return
        profiler, self.profiler = self.profiler, None
        profiler.stop()
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        profiler.export(self.path, format="json")
        device = "GPU" if self.options["state"] == "GPU" else "CPU"
        sorted_by = getattr(paddle_profiler.SortedKeys,
                            device + self.options["sorted_key"].capitalize().replace("Ave", "Avg"))
        profiler.summary(sorted_by=sorted_by, time_unit="ms",
                         op_detail=self.options["tracer_option"] != "Default")
        first, last = self.options["batch_range"]
        logger.info("profile of this run's steps %d-%d written to %s", first + 2, last + 1,
                    self.path)
