"""Hardware models: a device registry as data, calibration, and the models that predict a case's cost.

Plain functions over numbers; nothing here imports the harness or the workloads.
"""
