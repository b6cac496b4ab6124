"""The native kernel's cache holds code: a library is loaded only when it is provably this user's own build.

Every fault is real: libraries compiled by the test and planted under the cached name (with a constructor that
leaves a marker file if it ever runs), records with the wrong hash, folders chmod 0777, symlinks, files chown'ed to
another user. A refusal must leave a one-line warning, load nothing, overwrite nothing, and run the Python kernel.
"""

import hashlib
import logging
import os
import shutil
import subprocess

import pytest
import torch

from alexnet.models import native
from alexnet.models.lrn import fast_local_response_norm, local_response_norm, lrn_kernel

pytestmark = pytest.mark.skipif(native.compiler() is None, reason="no C compiler on PATH: nothing to build or plant")

PLANTED_C = """
#include <stdio.h>
/* Runs as soon as the library is dlopened: the marker file proves the planted code ran. */
__attribute__((constructor)) static void planted(void) { FILE *f = fopen(MARK, "w"); if (f) fclose(f); }
int alexnet_lrn_abi(void) { return ABI; }
int alexnet_lrn(void) { return 0; }
"""


@pytest.fixture(scope="module")
def genuine(tmp_path_factory):
    """One real build (library and record), made once by `native` itself and copied into each test's cache."""
    root = tmp_path_factory.mktemp("genuine-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALEXNET_CACHE", str(root))
        native.reset()
        assert native.load() is not None
        path = native.library_path(native.compiler())
    native.reset()
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache for this test, and a process that has not loaded the kernel yet."""
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    native.reset()
    yield tmp_path / "cache"
    native.reset()


def _target():
    return native.library_path(native.compiler())


def _install(genuine_path, folder=None):
    """Copy the genuine build and its record to where this test's cache expects them; returns the library path."""
    path = _target()
    folder = folder or path.parent
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copy(genuine_path, folder / path.name)
    shutil.copy(native.digest_path(genuine_path), folder / native.digest_path(path).name)
    return path


def _plant(path, tmp_path):
    """Compile a library that announces itself (a marker file) and put it at `path`; returns the marker's path."""
    marker = tmp_path / "planted-code-ran"
    src = tmp_path / "planted.c"
    src.write_text(PLANTED_C)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    subprocess.run([*native.compiler(), "-shared", "-fPIC", f'-DMARK="{marker}"', f"-DABI={native.ABI}", str(src),
                    "-o", str(path)], check=True)
    return marker


def _assert_refused(caplog, *, says: str):
    """Nothing loaded, nothing built, one warning line that says why, and the Python kernel gives the numbers."""
    with caplog.at_level(logging.WARNING, logger="alexnet.models.native"):
        assert native.load() is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert says in warnings[0] and "Python kernel" in warnings[0], warnings[0]
    assert native.compiles == 0
    x = torch.randn(2, 7, 4, 4)
    assert lrn_kernel(x) == "python"
    ref = local_response_norm(x, 5, 0.9, 0.75, 1.0)
    torch.testing.assert_close(fast_local_response_norm(x, 5, 0.9, 0.75, 1.0), ref)
    return warnings[0]


def test_a_planted_library_without_a_record_never_runs(cache, tmp_path, caplog):
    path = _target()
    marker = _plant(path, tmp_path)
    planted = path.read_bytes()
    _assert_refused(caplog, says="no SHA-256 record")
    assert not marker.exists()  # its constructor never ran
    assert path.read_bytes() == planted  # left for the user to look at, not silently replaced


def test_a_library_swapped_after_its_build_never_runs(cache, tmp_path, caplog, genuine):
    path = _install(genuine)
    marker = _plant(path, tmp_path)  # same name, the genuine record beside it
    _assert_refused(caplog, says="is not the one its build recorded")
    assert not marker.exists()


def test_a_truncated_build_is_refused_not_loaded(cache, caplog, genuine):
    path = _install(genuine)
    path.write_bytes(path.read_bytes()[:4096])  # what a killed copy or a full disk leaves
    _assert_refused(caplog, says="is not the one its build recorded")


def test_a_record_names_its_library_so_it_cannot_vouch_for_another(cache, tmp_path, caplog):
    path = _target()
    marker = _plant(path, tmp_path)
    # The right hash of the planted bytes, but recorded for another library name (a record copied from elsewhere).
    native.digest_path(path).write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  lrn-other.so\n")
    _assert_refused(caplog, says="is not the one its build recorded")
    assert not marker.exists()


@pytest.mark.parametrize("which", ["native folder", "cache root"])
def test_a_cache_folder_writable_by_others_is_refused(cache, caplog, genuine, which):
    path = _install(genuine)
    folder = path.parent if which == "native folder" else cache
    os.chmod(folder, 0o777)  # anyone could have replaced the library, or could between our check and our load
    says = "other users can write to it" if which == "native folder" else "can be written by other users"
    _assert_refused(caplog, says=says)


def test_a_symlinked_cache_folder_is_refused(cache, tmp_path, caplog, genuine):
    elsewhere = tmp_path / "elsewhere"
    _install(genuine, folder=elsewhere)  # even a genuine build, once reached through a link someone could repoint
    cache.mkdir()
    os.symlink(elsewhere, cache / "native")
    _assert_refused(caplog, says="not a real folder")
    assert (cache / "native").is_symlink()  # left as it was


def test_a_symlink_in_place_of_the_library_is_refused(cache, tmp_path, caplog, genuine):
    elsewhere = tmp_path / "elsewhere"
    real = _install(genuine, folder=elsewhere)
    path = _target()
    path.parent.mkdir(mode=0o700, parents=True)
    shutil.copy(native.digest_path(elsewhere / real.name), native.digest_path(path))
    os.symlink(elsewhere / real.name, path)
    _assert_refused(caplog, says="cannot open the library")


def test_a_library_writable_by_others_is_refused(cache, caplog, genuine):
    path = _install(genuine)
    os.chmod(path, 0o666)  # the hash matches now, but anyone may change it before the next process checks
    _assert_refused(caplog, says="other users can write to the library")


@pytest.mark.skipif(os.getuid() != 0, reason="making a file another user's needs root (chown)")
@pytest.mark.parametrize("which", ["folder", "library", "record"])
def test_files_of_another_user_are_refused(cache, caplog, genuine, which):
    path = _install(genuine)
    target = {"folder": path.parent, "library": path, "record": native.digest_path(path)}[which]
    os.chown(target, 12345, -1)
    _assert_refused(caplog, says="belongs to user id 12345")


# --- what a build writes, and what a load maps ---------------------------------------------------------------------


def test_a_build_records_its_hash_and_keeps_its_files_private(cache):
    assert native.load() is not None
    path = _target()
    assert native.compiles == 1
    assert native.digest_path(path).read_text() == native.digest_record(path, path.read_bytes())
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert os.stat(path).st_mode & 0o777 == 0o700
    assert os.stat(native.digest_path(path)).st_mode & 0o777 == 0o600


def test_a_recorded_build_is_loaded_without_rebuilding(cache, genuine):
    _install(genuine)
    assert native.load() is not None
    assert native.compiles == 0


@pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="loads through an anonymous memory file (Linux)")
def test_the_code_that_runs_is_the_hashed_copy_not_the_file(cache, genuine):
    # The check and the load read the same bytes: the library is mapped from a private memory copy, so the file can
    # be swapped after the check without changing what runs.
    path = _install(genuine)
    assert native.load() is not None
    with open("/proc/self/maps") as f:
        maps = f.read()
    assert "memfd:alexnet-lrn" in maps and str(path) not in maps
    path.write_bytes(b"swapped after the check")
    x = torch.randn(2, 7, 4, 4)
    assert lrn_kernel(x) == "native"
    ref = local_response_norm(x, 5, 0.9, 0.75, 1.0)
    torch.testing.assert_close(fast_local_response_norm(x, 5, 0.9, 0.75, 1.0), ref)


def test_a_record_without_its_library_is_rebuilt(cache, genuine):
    # A build killed between the record's rename and the library's: the next process builds, it does not refuse.
    path = _install(genuine)
    path.unlink()
    assert native.load() is not None
    assert native.compiles == 1
    assert native.digest_path(path).read_text() == native.digest_record(path, path.read_bytes())


def test_a_killed_builds_temporary_is_removed(cache, genuine):
    path = _install(genuine)
    stale = path.parent / f".{path.name}.k1lled99.tmp"  # atomic_write's temporary, left by a SIGKILL mid-build
    stale.write_bytes(b"half a library")
    assert native.load() is not None
    assert not stale.exists() and native.compiles == 0
