from tiny_runs import audio_run, image_run  # noqa: F401  (fixtures shared by tests/explain, tests/serve, tests/cli)
