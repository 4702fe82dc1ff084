"""Experiments at scale: hyper-parameter sweeps (Optuna), multi-seed runs, run comparison.

Each experiment is made of ordinary run directories (see ``cnntool.training.rundir``); this package
only schedules them and summarises what they wrote. Multi-process training (torchrun / DDP) lives
in ``cnntool.training.distributed`` because the Trainer itself uses it.
"""
