"""Benchmarks of gcseg against PaddleSeg 2.8 (needs PaddleSeg installed; not part of the
gcseg package)."""
