"""Shared test set-up: keep every test off the user's real cache and small enough for a 2-core machine."""

import os

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # The built-in dataset and the uint8 caches go here instead of ~/.cache/alexnet.
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path_factory.getbasetemp() / "alexnet-cache"))


# Two cores are shared by the test process and any torchrun workers it starts: one intra-op thread each keeps
# the suite from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
