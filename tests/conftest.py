"""Shared test set-up: keep every test off the user's real cache and small enough for a 2-core machine, and the
fixtures that several test modules share (their helpers live in data_factories.py and tiny_runs.py)."""

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # The built-in dataset and the uint8 caches go here instead of ~/.cache/alexnet.
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path_factory.getbasetemp() / "alexnet-cache"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run: (data folder, run folder). Module-scoped: one run per test module that asks for it."""
    from alexnet.train import fit
    from data_factories import make_folder
    from tiny_runs import tiny_config

    root = tmp_path_factory.mktemp("trained")
    data = make_folder(root / "data", train=8, val=3)
    fit(tiny_config(data, root / "run", **{"run.epochs": 1, "optim.lr": 0.003}), progress=False)
    return data, root / "run"


# Two cores are shared by the test process and any torchrun workers it starts: one intra-op thread each keeps
# the suite from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
