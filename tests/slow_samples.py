"""Run a gcseg script with every sample whose image path contains a given text sleeping for an
hour (how tests/engine/test_bad_samples.py makes a loader stuck):

    python tests/slow_samples.py TEXT scripts/train.py ARGS...
"""
import os
import runpy
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_with_slow_samples(slow: str, script: str) -> None:
    """Run ``script`` (argv after it) with every sample whose image path contains ``slow``
    sleeping for an hour in ``__getitem__`` (inherited by forked loader workers)."""
    sys.path.insert(0, ROOT)
    from gcseg.data.datasets import SegDataset
    original = SegDataset.__getitem__

    def sleepy(self, idx):
        if slow in self.file_list[idx][0]:
            print(f"sleeping on {slow}", file=sys.stderr, flush=True)
            time.sleep(3600)
        return original(self, idx)
    SegDataset.__getitem__ = sleepy
    sys.argv = [script, *sys.argv[3:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    run_with_slow_samples(sys.argv[1], sys.argv[2])
