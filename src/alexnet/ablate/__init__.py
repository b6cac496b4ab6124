"""`alexnet ablate`: the paper's claims as studies (studies), their runs on disk (plan), run and resumed (runner),
numbers from each run's metrics.csv (metrics, stats), the hand-crafted baselines and 10-crop evaluations
(baselines), and the reports (report); api wires them for the CLI."""
