from tiny_runs import audio_run, image_run  # noqa: F401  (fixtures shared with tests/explain)
