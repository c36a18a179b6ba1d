"""Where the code runs: device, precision, seeding, processes (torchrun) and safe file writes.

Everything here sits below data, models, export, report and the engine, which all use it.
"""
