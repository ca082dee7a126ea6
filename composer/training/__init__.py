"""Training: from a prepared experiment to a saved run folder.

The flow, one module each:
- ``experiment``: ``prepare`` binds the blueprint to its data, fits preprocessing on the train
  split only and compiles the model (an ``Experiment``);
- ``plan_trainer``: ``PlanTrainer`` executes the loss plan (per-task masked losses, their
  fusion, GradNorm and PE-LTR's TensorFlow step); ``jax_steps`` their JAX step;
- ``loop``: ``fit`` trains and validates every epoch (Keras ``fit`` on TensorFlow and torch),
  ``jax_loop`` the scanned loop on JAX with the data on the device, ``streamed`` the path for
  data read in chunks from disk;
- ``checkpoint``: the state saved after every epoch and ``--resume``;
- ``evaluation``: exact AUC / GAUC per task and scenario on a split;
- ``run_folder``: what a run folder holds, written atomically, and reading it back.
"""
from .evaluation import planted_report, report
from .experiment import Experiment, fit_preprocessing, prepare
from .loop import fit, finish_training, predict, start_training, valid_loss
from .run_folder import RUN_FILES, check_run_folder, default_run_dir, load_run, save_run

__all__ = ["Experiment", "RUN_FILES", "check_run_folder", "default_run_dir", "finish_training", "fit",
           "fit_preprocessing", "load_run", "planted_report", "predict", "prepare", "report", "save_run",
           "start_training", "valid_loss"]
