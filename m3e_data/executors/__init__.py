"""Executors drive the stages in m3e_data/stages/: `local` (processes on this machine, the default) and
`ray` (tasks and Ray Data pipelines on a Ray cluster). Both call the same pure functions over batches, so
they must write the same rows; tests/test_ray_*.py assert it."""

EXECUTORS = ("local", "ray")
