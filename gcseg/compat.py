"""Every difference between Paddle 2.6 and Paddle 3.x that gcseg meets, in one place.

Most differences are avoided rather than branched on, by writing the one form both versions
accept:

- forwards that are translated to static graphs (export, the evaluation predictor) never call
  ``super()``: Paddle 2.6's dygraph-to-static converter loses the ``__class__`` cell
  (``gcseg/models/layers.py``, ``gcseg/models/gcnet.py``);
- losses compute in float32 with int64 labels and never multiply the two, which Paddle 3.x
  rejects (``gcseg/losses.py``).

What cannot be avoided is handled here: the file ``paddle.jit.save`` writes, and the records a
failed dygraph-to-static trace leaves behind (both versions).
"""
import contextlib
import os
from typing import Iterator

# paddle.jit.save's program file: Paddle 3.x writes the PIR program as JSON, Paddle 2.6 a protobuf.
SAVED_PROGRAM_SUFFIXES = (".json", ".pdmodel")


def saved_program_file(save_dir: str, prefix: str) -> str:
    """The name of the program file ``paddle.jit.save(..., <save_dir>/<prefix>)`` wrote."""
    for suffix in SAVED_PROGRAM_SUFFIXES:
        if os.path.isfile(os.path.join(save_dir, prefix + suffix)):
            return prefix + suffix
    raise FileNotFoundError(f"{save_dir}: paddle.jit.save wrote no {prefix}"
                            f"{'/'.join(SAVED_PROGRAM_SUFFIXES)} file")


def _trace_recorders() -> list:
    """The objects holding per-trace records: the ProgramTranslator's (the legacy program IR,
    Paddle 2.6) and, where Paddle 3.x traces to PIR, the module-level recorders of
    ``paddle.jit.dy2static.parameter_recorder``."""
    from paddle.jit.dy2static.program_translator import ProgramTranslator
    translator = ProgramTranslator.get_instance()
    recorders = [getattr(translator, "_params_recorder", None),
                 getattr(translator, "_inplace_map", None)]
    try:
        from paddle.jit.dy2static import parameter_recorder
    except ImportError:  # Paddle 2.6
        return recorders
    return recorders + [getattr(parameter_recorder, "_global_parameter_recorder", None),
                        getattr(parameter_recorder, "_global_inplace_map", None)]


def _drop_trace_records() -> None:
    for recorder in _trace_recorders():
        for name in ("params_dict", "tensor2value"):  # tensor2value: PIR's parameter Values
            records = getattr(recorder, name, None)
            if isinstance(records, dict):
                records.clear()


@contextlib.contextmanager
def isolated_static_trace() -> Iterator[None]:
    """Run a ``paddle.jit.to_static`` trace/save with no records of earlier traces.

    Paddle (2.6 and 3.x) records the parameters a trace touches under ``id(program)`` and drops
    them only when the trace succeeds. After a failed trace (a model that cannot be exported,
    which the ``auto`` engine tolerates) a later program that reuses that id inherits the stale
    parameters: ``paddle.jit.save`` fails with ``KeyError: '<param>_deepcopy_<n>'`` or, on
    Paddle 3.x's PIR, crashes the process reading a parameter Value of the freed program
    (SIGSEGV/SIGFPE). No trace is in flight when an export starts, so the records are cleared
    before and after it."""
    _drop_trace_records()
    try:
        yield
    finally:
        _drop_trace_records()
