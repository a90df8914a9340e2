"""imgproc's benchmark suite: ``python -m bench`` (``make bench``), ``--quick`` for a short run.

Every figure is a ratio of two things measured side by side in the same run, alternating
(A, B, A, B, ...) over several rounds, and reported as the median with its spread: the machine
it runs on may be busy with other work, which moves absolute timings a lot and ratios much less.
Results go to ``bench/results/`` (JSON) and ``docs/benchmarks.md`` (tables and plots).
"""
