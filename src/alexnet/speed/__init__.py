"""`alexnet bench`, speed measured: this machine's ceilings, then the notes' plain loop and ours side by side on the same data.

    alexnet bench [--model alexnet-bn] [--image-size 227] [--batch-size 64] [--repeats 3] [--output FILE] [--json]

Every figure is a median over `repeats` timed passes taken in this one process, and the headline is a ratio of
two figures taken in the same run (ours / plain), because absolute numbers move with the machine's load.

Before anything else it asks the precision probe (alexnet.runtime.precision) whether bf16 is fast on this CPU, and times
one training step to size the rest (`plan_work`): on a CPU where bf16 crawls (AVX2 only) the bf16 mode is skipped
and said so, and the default run ends in minutes on the slowest machine seen here. Each section prints its
progress and its time.

- ceilings: a large fp32 and bf16 matrix product (oneDNN/MKL) and a memory copy: what the hardware gives.
- train_step: images/s of forward + backward + Adam on batches already in memory. "plain" is the notes' loop:
  fp32, contiguous, eager, torch.nn.LocalResponseNorm where the model has LRN, Adam one op at a time. "ours" is
  the trainer itself (alexnet.training's `train_one_epoch` and `build_optimizer`, channels_last, the fast LRN
  kernel), in fp32 and in bf16 autocast: the faster of the two on this machine is used from then on. Achieved
  FLOP/s = images/s x 3 x the forward FLOPs (forward + backward ~ 3 forwards), against the ceiling of the same dtype.
- LRN cost: the paper model's step vs the same model with norm="none", ours; the target is >= 85%.
- data: input pipelines, images/s fed by the PIL loader (0, 1, 2 workers), the cache build, and cache + BatchAugment.
- end to end: one epoch over real 500x375 JPEG files. Plain: torchvision's ImageFolder + PIL transforms (the note's
  Resize(227) / ToTensor / Normalize), a DataLoader with no workers, the plain step. Ours: the trainer's own batch
  source (the uint8 cache, decoded once and timed apart, + whole-batch augmentation), epoch function and optimizer.
- inference: batch-64 images/s and batch-1 latency, plain (fp32 eager, no_grad) vs ours (the Predictor

Modules: `config` (BenchConfig), `machine` (ceilings), `steps` (plain and ours, training steps and inference),
`photos` (JPEG folders, input pipelines, end-to-end epochs), `plan` (sizing the run), `sections` (the registry of
sections and `run`), `table` (the printed table).
"""

from alexnet.speed.config import SECTIONS, BenchConfig
from alexnet.speed.sections import run
from alexnet.speed.steps import OURS_BF16, OURS_FP32, PLAIN, Mode, optimizer_for, prepare
from alexnet.speed.table import format_table, to_json, write_json

__all__ = ["OURS_BF16", "OURS_FP32", "PLAIN", "SECTIONS", "BenchConfig", "Mode", "format_table", "optimizer_for",
           "prepare", "run", "to_json", "write_json"]
