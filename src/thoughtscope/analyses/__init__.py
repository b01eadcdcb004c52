"""Analyses built on the engine: each is plan → run → records.

``importance`` (ablation sweeps), ``answers`` (scored answers), ``thoughts`` (recorded
states and their lens decoding); ``interventions`` holds the ablation kinds, schedules
and named conditions they share.
"""
