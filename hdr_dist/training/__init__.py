"""Training on Ray Train (and without Ray): the epoch code, ranks, each reader kind's batches and
objective, Tune sweeps, the classical models, and compare's field test sets.
"""
