"""The command-line programs (``gcseg-train``, ``gcseg-val``, ...; ``scripts/*.py`` run the same):
argparse plus one library call each. Each ``run()`` sets up the CPU environment before anything
imports Paddle."""
