"""Hyperparameter sweeps on Ray Tune (the `tune` extra): one dlcli run per trial.

space.py reads and checks the search space without Ray; sweep.py drives Tune; trial.py is the
trainable that Ray's workers run. Ray is imported only by the last two, once a sweep starts.
"""
