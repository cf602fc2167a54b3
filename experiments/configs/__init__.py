"""Experiment configs as data: ``get_config(arg)`` returns an ml_collections ConfigDict."""
