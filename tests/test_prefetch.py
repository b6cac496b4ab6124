"""Batches made ahead in a thread, and the loss read back from the device in groups: same numbers, clean shutdown.

Prefetch and the grouped read-back change when things happen, never what is computed: the tests compare weights
and batches bit for bit with each switch on and off, and check that errors, signals and non-finite losses still stop
the run cleanly (no thread left behind, no checkpoint with NaN weights).
"""

import csv
import math
import signal
import sys
import threading
import time

import pytest
import torch

from alexnet.data.augment import BatchAugment
from alexnet.data.prefetch import Prefetcher
from alexnet.runtime.distributed import DistInfo
from alexnet.store.checkpoint import load_checkpoint
from alexnet.train import RunInterrupted, TrainingError, fit, resume_config
from alexnet.training.batches import PREFETCH_DEPTH, BatchPlan, TrainBatches
from alexnet.training.epoch import (
    EpochHooks,
    EpochSettings,
    EpochTotals,
    StepReadback,
    StepStats,
    WeightUpdate,
    train_one_epoch,
)
from alexnet.training.optim import LRSchedule
from data_factories import make_folder
from tiny_runs import tiny_config, untimed_rows

SINGLE = DistInfo(rank=0, world_size=1, local_rank=0)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("pets"))  # 32 training images: 4 steps of 8 per epoch


def prefetch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("alexnet-")]


# --- the Prefetcher alone ----------------------------------------------------------------------------------------


def test_prefetcher_yields_everything_in_order_and_its_thread_ends():
    with Prefetcher(iter(range(50)), depth=2) as ahead:
        assert list(ahead) == list(range(50))
        assert not ahead.alive
    assert prefetch_threads() == []


def test_a_producer_exception_reaches_the_consumer_with_its_message_and_no_thread_is_left():
    def source():
        yield 1
        yield 2
        raise OSError("disk on fire at batch 3")

    ahead = Prefetcher(source(), depth=1)
    got = []
    with pytest.raises(OSError, match="disk on fire at batch 3") as info:
        for item in ahead:
            got.append(item)
    assert got == [1, 2]  # the error arrives where the failed item would have been
    assert "source" in "".join(str(f.name) for f in info.traceback)  # the producer's frames are kept
    assert not ahead.alive and prefetch_threads() == []


def test_leaving_early_stops_the_producer_and_runs_the_sources_cleanup():
    cleaned = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            cleaned.set()

    ahead = Prefetcher(endless(), depth=2)
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    time.sleep(0.05)  # let it block on the full queue
    ahead.close()
    assert cleaned.is_set() and not ahead.alive and prefetch_threads() == []
    with pytest.raises(StopIteration):
        next(ahead)


def test_a_keyboard_interrupt_in_the_consumer_leaves_no_thread():
    def slow():
        for i in range(1000):
            time.sleep(0.001)
            yield i

    with pytest.raises(KeyboardInterrupt), Prefetcher(slow(), depth=1) as ahead:
        for i in ahead:
            if i == 5:
                raise KeyboardInterrupt
    assert prefetch_threads() == []


# --- TrainBatches: the same batches with prefetch on and off ------------------------------------------------------


@pytest.mark.parametrize("preset", ["paper", "seed"])  # crops + flips + PCA colour; rotation + flip
def test_cache_batches_are_bit_identical_with_prefetch_on_and_off(preset):
    g = torch.Generator().manual_seed(0)
    stored = 44 if preset == "paper" else 40  # paper crops 40 from the shorter side scaled to 40 * 256 / 224
    images = torch.randint(0, 256, (40, 3, stored, stored), dtype=torch.uint8, generator=g)
    labels = torch.arange(40) % 2

    def source(prefetch: bool) -> TrainBatches:
        generator = torch.Generator()
        augment = BatchAugment(preset, 40, train=True, generator=generator, augment=True)
        return TrainBatches(
            images, labels, augment, generator, BatchPlan(8, seed=3, info=SINGLE, device=torch.device("cpu")),
            prefetch=prefetch,
        )

    def collect(batches: TrainBatches, epoch: int, start: int) -> list:
        out = []
        for step, x, y, n in batches.batches(epoch, start):
            kept = x.clone()
            time.sleep(0.02)  # the producer runs ahead as far as it may: it must not write into the batch in use
            assert torch.equal(x, kept), f"batch {step} was overwritten while in use"
            out.append((step, kept, y.clone(), n))
        return out

    plain, ahead = source(False), source(True)
    assert ahead.ring == PREFETCH_DEPTH + 2
    for epoch, start in ((0, 0), (1, 0), (1, 3)):  # a resume starts mid-epoch
        a, b = collect(plain, epoch, start), collect(ahead, epoch, start)
        assert [s for s, *_ in a] == [s for s, *_ in b] == list(range(start, 5))
        for (_, xa, ya, na), (_, xb, yb, nb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and na == nb
    assert prefetch_threads() == []


# --- fit: prefetch and grouped reads change nothing but timing ----------------------------------------------------


def final_weights(run) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), f"{name} differs"


@pytest.mark.parametrize("extra", [{"data.augment": True}, {"data.preset": "paper"}], ids=["seed-rotate", "paper"])
def test_prefetch_on_and_off_train_to_bit_identical_weights(tiny_data, tmp_path, extra):
    runs = {}
    for prefetch in (False, True):
        out = tmp_path / f"prefetch-{prefetch}"
        fit(
            tiny_config(
                tiny_data,
                out,
                **{"run.epochs": 2, "run.max_steps": 6, "run.deterministic": True, "data.prefetch": prefetch, **extra},
            ),
            progress=False,
        )
        runs[prefetch] = out
    assert_same_weights(final_weights(runs[False]), final_weights(runs[True]))
    assert prefetch_threads() == []


def test_reading_the_loss_every_3_steps_gives_the_same_weights_and_metrics(tiny_data, tmp_path):
    rows = {}
    for every in (1, 3):
        out = tmp_path / f"every-{every}"
        result = fit(
            tiny_config(tiny_data, out, **{"run.epochs": 2, "run.deterministic": True, "run.sync_every": every}),
            progress=False,
        )
        rows[every] = [(r["train_loss"], r["train_acc"], r["val_top1"]) for r in result.rows]
    assert rows[1] == rows[3]  # the same sums, added in the same order
    assert_same_weights(final_weights(tmp_path / "every-1"), final_weights(tmp_path / "every-3"))


def test_data_wait_is_recorded_per_epoch_in_metrics_and_log(tiny_data, tmp_path):
    out = tmp_path / "run"
    fit(tiny_config(tiny_data, out, **{"run.epochs": 2}), progress=False)
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for row in rows:
        wait, share, seconds = float(row["data_wait_s"]), float(row["data_wait_share"]), float(row["seconds"])
        assert 0 < wait < seconds and share == pytest.approx(wait / seconds, rel=0.2) and 0 < share < 1
    log = (out / "log.txt").read_text()
    assert "data wait, epoch 1: waited" in log and "data wait, epoch 2: waited" in log


@pytest.fixture
def run_batches_only(monkeypatch):
    """No first-run estimate (training.estimate): its probe draws batches from the run's source too, before the
    signal handlers are installed, and the tests that count BatchAugment calls count the run's own."""
    import alexnet.train

    monkeypatch.setattr(alexnet.train, "log_first_run_estimate", lambda *args: None)


def test_a_failing_batch_stops_fit_with_its_message_and_no_thread_left(tiny_data, tmp_path, monkeypatch, run_batches_only):
    calls = {"n": 0}
    original = BatchAugment.__call__

    def failing(self, batch, out=None):
        if self.train:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("augmentation exploded on batch 3")
        return original(self, batch, out=out)

    monkeypatch.setattr(BatchAugment, "__call__", failing)
    with pytest.raises(RuntimeError, match="augmentation exploded on batch 3"):
        fit(tiny_config(tiny_data, tmp_path / "run", **{"run.epochs": 1, "data.prefetch": True}), progress=False)
    assert prefetch_threads() == []


def test_a_nan_found_at_a_later_read_stops_without_saving_over_the_good_checkpoint(tiny_data, tmp_path, monkeypatch, run_batches_only):
    """Reads every 3 steps: the NaN batch (epoch 2, step 2) is applied before the read at step 3 finds it; the weights
    since are never saved, so last.pt is still epoch 1's (load_checkpoint refuses non-finite weights)."""
    calls = {"n": 0}
    original = BatchAugment.__call__

    def poisoned(self, batch, out=None):
        result = original(self, batch, out=out)
        if self.train:
            calls["n"] += 1
            if calls["n"] == 6:  # 4 steps per epoch: epoch 2, step 2
                result.fill_(float("nan"))
        return result

    monkeypatch.setattr(BatchAugment, "__call__", poisoned)
    run = tmp_path / "run"
    cfg = tiny_config(tiny_data, run, **{"run.epochs": 3, "run.sync_every": 3, "data.prefetch": True})
    with pytest.raises(
        TrainingError,
        match=r"non-finite loss \(nan\) at epoch 2, step 2: stopped at step 3 "
        r"\(the loss is read from the device every 3 steps.*checkpoint is intact",
    ):
        fit(cfg, progress=False)
    ckpt = load_checkpoint(run, prefer="last")
    assert tuple(ckpt.train_state[k] for k in ("epoch", "step_in_epoch", "global_step")) == (1, 0, 4)
    assert all(torch.isfinite(t).all() for t in ckpt.weights.values() if t.is_floating_point())
    assert prefetch_threads() == []


def test_sigterm_mid_group_saves_at_a_read_step_and_resumes_to_the_same_weights(tiny_data, tmp_path, monkeypatch, run_batches_only):
    """A signal between reads: the run reads at the next step, saves consistent totals there, and a resume ends
    where the uninterrupted run ends (weights and metrics)."""
    overrides = {"run.epochs": 2, "run.deterministic": True, "run.sync_every": 3, "data.prefetch": True}
    reference = tmp_path / "reference"
    fit(tiny_config(tiny_data, reference, **overrides), progress=False)

    calls = {"n": 0}
    original = BatchAugment.__call__

    def signalling(self, batch, out=None):
        if self.train:
            calls["n"] += 1
            if calls["n"] == 2:
                signal.raise_signal(signal.SIGTERM)  # handled in the main thread, whatever thread raises it
        return original(self, batch, out=out)

    monkeypatch.setattr(BatchAugment, "__call__", signalling)
    run = tmp_path / "run"
    with pytest.raises(RunInterrupted, match="SIGTERM: finished step"):
        fit(tiny_config(tiny_data, run, **overrides), progress=False)
    assert prefetch_threads() == []
    stopped = load_checkpoint(run, prefer="last")
    assert 1 <= stopped.train_state["global_step"] < 8
    monkeypatch.setattr(BatchAugment, "__call__", original)
    result = fit(resume_config(run), resume=run, progress=False)
    assert result.global_step == 8
    assert_same_weights(final_weights(reference), final_weights(run))
    assert untimed_rows(reference) == untimed_rows(run)


# --- train_one_epoch: how often it waits for the device -----------------------------------------------------------


def test_the_loss_is_read_from_the_device_once_per_group_of_steps(monkeypatch):
    """`.item()` and `.tolist()` calls made by the training loop during an epoch of 8 steps read every 3: one
    `.tolist()` per read (steps 3, 6 and the epoch's last), nothing per step."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(64) % 2
    generator = torch.Generator()
    augment = BatchAugment("d2l", 8, generator=generator, in_channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    source = TrainBatches(
        images, labels, augment, generator, BatchPlan(8, seed=0, info=SINGLE, device=torch.device("cpu")), prefetch=True
    )
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    from alexnet.config import OptimSpec

    # The files that hold the loop and its read-back, wherever they live: the host syncs are counted in them alone.
    loop_files = {train_one_epoch.__code__.co_filename, StepReadback.read.__code__.co_filename}
    calls = []
    for name in ("item", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            if sys._getframe(1).f_code.co_filename in loop_files:
                calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    reads = []

    def after_step(step, images, stats):
        if stats is not None:
            reads.append((step, len(stats)))
        return False

    totals = EpochTotals()
    position = train_one_epoch(
        model,
        WeightUpdate(optimizer, LRSchedule(OptimSpec(lr=0.1), 1, len(source))),
        source,
        0,
        0,
        totals,
        EpochSettings(seed=0, info=SINGLE, device=torch.device("cpu"), sync_every=3),
        EpochHooks(after_step=after_step),
    )
    assert position == 8 and totals.count == 64 and math.isfinite(totals.loss_sum)
    assert reads == [(2, 3), (5, 3), (7, 2)]
    assert calls.count("item") == 0 and calls.count("tolist") == 3, calls


def test_step_readback_adds_in_step_order_and_names_the_first_bad_step():
    pending = StepReadback()
    totals = EpochTotals()
    for step, value in enumerate([1.5, 2.5, 3.0]):
        pending.add(step, torch.tensor(value), torch.tensor(step), 4)
    assert pending.read(totals, epoch=0, sync_every=3) == [StepStats(0.375, 0, 4), StepStats(0.625, 1, 4),
                                                           StepStats(0.75, 2, 4)]
    assert (totals.loss_sum, totals.correct, totals.count) == (7.0, 3, 12) and len(pending) == 0
    for step, value in ((3, 1.0), (4, math.inf), (5, math.nan)):
        pending.add(step, torch.tensor(value), torch.tensor(0), 4)
    with pytest.raises(TrainingError, match=r"\(inf\) at epoch 1, step 5: stopped at step 6"):
        pending.read(totals, epoch=0, sync_every=3)
    assert totals.count == 12  # nothing from the bad group is counted


def test_prefetch_and_sync_every_flags_parse():
    from alexnet.cli import build_parser
    from alexnet.cli.train import overrides_from
    from alexnet.config import resolve_config

    args = build_parser().parse_args(["train", "--no-prefetch", "--sync-every", "10"])
    cfg = resolve_config(overrides=overrides_from(args))
    assert cfg.data.prefetch is False and cfg.run.sync_every == 10
    assert resolve_config().data.prefetch is None and resolve_config().run.sync_every == 0
    from alexnet.errors import ConfigError

    with pytest.raises(ConfigError, match="run.sync_every"):
        resolve_config(overrides={"run.sync_every": -1})


def test_prefetch_defaults_on_for_cuda_and_as_measured_on_the_cpu():
    from alexnet.training.batches import PREFETCH_ON_CPU, resolve_prefetch

    assert resolve_prefetch(None, torch.device("cuda", 0)) is True
    assert resolve_prefetch(None, torch.device("cpu")) is PREFETCH_ON_CPU
    assert resolve_prefetch(None, torch.device("mps")) is False
    assert (
        resolve_prefetch(True, torch.device("cpu")) is True and resolve_prefetch(False, torch.device("cuda")) is False
    )


@pytest.mark.parametrize("preset", ["seed", "paper"])
def test_cache_batches_come_in_the_models_layout_with_the_same_values(preset):
    # A channels_last model gets channels_last batches straight from the uint8 -> float copy, so the step's
    # .contiguous(channels_last) is free; the values are those of the contiguous batches.
    images = torch.randint(0, 256, (20, 3, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(20) % 2
    out = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        generator = torch.Generator()
        augment = BatchAugment(preset, 40, train=True, generator=generator, augment=True)
        source = TrainBatches(images, labels, augment, generator,
                              BatchPlan(8, seed=3, info=SINGLE, device=torch.device("cpu")), memory_format=fmt)
        out[fmt] = [(x.clone(memory_format=torch.preserve_format), y) for _, x, y, _ in source.batches(0, 0)]
    for (a, ya), (b, yb) in zip(out[torch.contiguous_format], out[torch.channels_last], strict=True):
        assert b.is_contiguous(memory_format=torch.channels_last) and not b.is_contiguous()
        assert torch.equal(a, b) and torch.equal(ya, yb)
