"""The parts `alexnet.train.fit()` wires together, one job per module; each takes explicit objects and knows nothing
about the command line.

    determinism  seeds of every random draw, RNG states, deterministic kernels
    batches      where each step's images come from (uint8 cache or DataLoader), and the validation batches
    optim        the optimizer and the learning-rate schedule
    curve        train_curve.csv: the training error several times per epoch (--curve-points; Figure 1)
    epoch        one epoch of optimisation (`train_one_epoch`), its totals, loss read-back, non-finite and chance checks
    estimate     how long a first run with no recipe will take, said before it starts
    state        the training state: position, best score, optimizer/schedule/scaler, totals, warnings given
    loop         the epochs: steps, periodic checkpoints, signals, validation, metrics, best.pt
    signals      SIGTERM/SIGINT: finish the step, save, stop
    report       what the user reads: log lines, the progress bar, the d2l note's per-epoch line
"""
