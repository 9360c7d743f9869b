"""Every difference between Paddle 2.6 and Paddle 3.x that gcseg meets, in one place.

Most differences are avoided rather than branched on, by writing the one form both versions
accept:

- forwards that are translated to static graphs (export, the evaluation predictor) never call
  ``super()``: Paddle 2.6's dygraph-to-static converter loses the ``__class__`` cell
  (``gcseg/models/layers.py``, ``gcseg/models/gcnet.py``);
- losses compute in float32 with int64 labels and never multiply the two, which Paddle 3.x
  rejects (``gcseg/losses.py``).

What cannot be avoided is the file ``paddle.jit.save`` writes, handled here.
"""
import os

# paddle.jit.save's program file: Paddle 3.x writes the PIR program as JSON, Paddle 2.6 a protobuf.
SAVED_PROGRAM_SUFFIXES = (".json", ".pdmodel")


def saved_program_file(save_dir: str, prefix: str) -> str:
    """The name of the program file ``paddle.jit.save(..., <save_dir>/<prefix>)`` wrote."""
    for suffix in SAVED_PROGRAM_SUFFIXES:
        if os.path.isfile(os.path.join(save_dir, prefix + suffix)):
            return prefix + suffix
    raise FileNotFoundError(f"{save_dir}: paddle.jit.save wrote no {prefix}"
                            f"{'/'.join(SAVED_PROGRAM_SUFFIXES)} file")
