"""A Ray Tune experiment that the same command, run again, resumes.

Both of the project's sweeps (tune's hyperparameter search and compare's svm-rbf
grid) start their ``Tuner`` here, so an interrupted one always comes back the
same way.
"""

from __future__ import annotations

import pickle

from hdr_dist.common.errors import UserError


def start_or_restore(path: str, trainable, param_space: dict, tune_config, run_config):
    """A new Tuner, or, when ``path`` holds this experiment from an earlier run, the restored one.

    Restoring re-runs the unfinished and errored trials and keeps the finished ones, so
    running the same command again after a Ctrl-C or a killed driver loses nothing but
    the epochs since each trial's last checkpoint.
    """
    from ray import tune

    if tune.Tuner.can_restore(path):
        try:
            return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True), True
        except (EOFError, pickle.UnpicklingError, ValueError, ImportError, AttributeError) as e:
            # ImportError, AttributeError: saved by a version of hdr-dist whose modules have since moved.
            raise UserError(
                f"{path}: the sweep saved there cannot be read back ({e or type(e).__name__}); "
                "move it away to start afresh"
            ) from None
    return tune.Tuner(
        trainable, param_space=param_space, tune_config=tune_config, run_config=run_config
    ), False
