"""Issue 9 for the data layer: caches and temporaries, a full disk, bounded IDX/image input, vanishing files, loops.

Every fault is real: planted symlinks, truncated and bit-flipped cache files, a 2 MiB tmpfs, crafted gzip bombs,
files deleted in the middle of a scan, symlinked folder loops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import data_factories as f
from alexnet.data import build_datasets, cache_split
from alexnet.data.cache import allocate, cache_key
from alexnet.data.limits import sealed_json
from alexnet.errors import DataError


@pytest.fixture
def bundle(tmp_path):
    root = f.image_folder(tmp_path / "photos", ("cat", "dog"), per_class=4, size=(30, 22))
    return build_datasets(str(root), image_size=16, val_split=0.5)


def _files(cached) -> tuple[Path, Path]:
    data = Path(cached.path)
    return data, data.with_suffix(".json")


# --- 1. Every cache and temporary file -------------------------------------------------------------------------


def test_cache_files_are_private_and_ignore_a_symlink_planted_at_the_old_temporary_name(bundle, tmp_path):
    folder = Path(os.environ["ALEXNET_CACHE"]) / "uint8"
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(bundle.train, "train", bundle.preset, 16, 3)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    # The names the previous version wrote through (PATH.PID.tmp): an attacker on a shared machine could guess them.
    for name in (f"{key}.u8.{os.getpid()}.tmp", f"{key}.json.{os.getpid()}.tmp"):
        (folder / name).symlink_to(victim)
    cached = cache_split(bundle, "train")
    assert cached.built
    assert victim.read_text() == "precious"
    data, meta = _files(cached)
    assert stat.S_IMODE(data.stat().st_mode) == 0o600 and stat.S_IMODE(meta.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not [p for p in folder.iterdir() if p.name.startswith(f".{key}") and p.name.endswith(".tmp")]


def _truncate(data: Path, meta: Path) -> None:
    data.write_bytes(data.read_bytes()[:-1])


def _append(data: Path, meta: Path) -> None:
    data.write_bytes(data.read_bytes() + b"\0")


def _flip_first_byte(data: Path, meta: Path) -> None:
    raw = bytearray(data.read_bytes())
    raw[0] ^= 0xFF
    data.write_bytes(bytes(raw))


def _edit_label_keep_seal(data: Path, meta: Path) -> None:
    stored = json.loads(meta.read_text())
    stored["content"]["labels"][0] = 1 - stored["content"]["labels"][0]
    meta.write_text(json.dumps(stored))


def _garbage_meta(data: Path, meta: Path) -> None:
    meta.write_bytes(b"\xff\xfe{not json")


def _old_unsealed_meta(data: Path, meta: Path) -> None:
    content = json.loads(meta.read_text())["content"]
    meta.write_text(json.dumps(content))  # what version 1 wrote: no checksum


def _resealed(**changes):
    def corrupt(data: Path, meta: Path) -> None:
        content = json.loads(meta.read_text())["content"]
        content.update(changes)
        meta.write_text(sealed_json(content))  # a consistent seal over wrong content: the fields are still checked

    corrupt.__name__ = f"resealed_{'_'.join(changes)}"
    return corrupt


def _data_is_a_symlink(data: Path, meta: Path) -> None:
    real = data.with_name("elsewhere.bin")
    real.write_bytes(data.read_bytes())
    data.unlink()
    data.symlink_to(real)


def _data_missing(data: Path, meta: Path) -> None:
    data.unlink()


@pytest.mark.parametrize("corrupt", [
    _truncate, _append, _flip_first_byte, _edit_label_keep_seal, _garbage_meta, _old_unsealed_meta,
    _resealed(shape=[4, 3, 8, 8]), _resealed(labels=[0, 1, 7, 0]), _resealed(labels=[0, 1, True, 0]),
    _resealed(labels=[0, 1]), _data_is_a_symlink, _data_missing,
], ids=lambda c: c.__name__)  # fmt: skip
def test_a_bad_cache_is_rebuilt_with_a_one_line_warning(bundle, corrupt, caplog):
    first = cache_split(bundle, "train")
    expected = first.images.clone()
    data, meta = _files(first)
    corrupt(data, meta)
    with caplog.at_level(logging.WARNING, logger="alexnet.data"):
        again = cache_split(bundle, "train")
    assert again.built
    warnings = [r.getMessage() for r in caplog.records if "uint8 cache" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and str(data) in warnings[0] and "rebuilding" in warnings[0]
    assert torch.equal(again.images, expected) and again.labels.tolist() == bundle.train.targets
    assert not data.is_symlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alexnet.data"):
        assert not cache_split(bundle, "train").built  # the rebuilt cache is trusted again, quietly
    assert not caplog.records


def test_temporaries_of_a_killed_build_are_removed_unless_a_live_build_owns_them(bundle):
    folder = Path(os.environ["ALEXNET_CACHE"]) / "uint8"
    folder.mkdir(parents=True, exist_ok=True)
    key = cache_key(bundle.val, "val", bundle.preset, 16, 3)
    stale = [folder / f".{key}.u8.k1ll3d00.tmp", folder / f".{key}.json.k1ll3d01.tmp",
             folder / ".0ldk3y.u8.k1ll3d02.tmp"]  # the last: a key whose dataset has changed since, never rebuilt
    for p in stale:
        p.write_bytes(b"\0" * 100)
    live = folder / ".l1vek3y.u8.bu1ld1ng.tmp"  # another process is building this key right now: it holds the lock
    live.write_bytes(b"\0" * 100)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(folder / '.l1vek3y.lock')!r}, os.O_RDWR | os.O_CREAT, 0o600)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        assert cache_split(bundle, "val").built
    finally:
        holder.kill()
        holder.wait()
    assert not any(p.exists() for p in stale) and live.exists()


# --- 2. uint8 cache on a full disk --------------------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a tmpfs here ({e})")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


@pytest.mark.slow
def test_a_cache_that_does_not_fit_is_a_clean_error_in_a_real_process(tmp_path, tiny_tmpfs):
    root = f.image_folder(tmp_path / "photos", ("cat", "dog"), per_class=6, size=(40, 30))
    env = {**os.environ, "ALEXNET_CACHE": str(tiny_tmpfs / "cache")}
    # 12 images x 3 x 300 x 300 = 3.2 MB > 2 MiB: with a sparse map this process died of SIGBUS.
    done = subprocess.run([sys.executable, "-m", "alexnet", "data", "cache", str(root), "--image-size", "300"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode > 0, f"killed by signal {signal.Signals(-done.returncode).name}" if done.returncode < 0 else done
    err = done.stderr.strip()
    assert "not enough disk space" in err and str(tiny_tmpfs / "cache" / "uint8") in err and "MiB" in err
    assert "Traceback" not in err
    left = [p.name for p in (tiny_tmpfs / "cache" / "uint8").iterdir() if p.name.endswith(".tmp")]
    assert left == []


def test_allocate_turns_enospc_into_a_data_error_naming_the_space(tiny_tmpfs):
    target = tiny_tmpfs / "big.u8"
    target.write_bytes(b"")
    with pytest.raises(DataError, match=r"tiny: not enough disk space .* needs 4\.0 MiB \(4,194,304 bytes\)"):
        allocate(str(target), 4 << 20)
    allocate(str(target), 1 << 20)  # what fits is really allocated
    assert target.stat().st_size == 1 << 20 and target.stat().st_blocks * 512 >= 1 << 20


def test_a_full_tmpfs_fails_before_any_temporary_in_process(bundle, tiny_tmpfs):
    folder = tiny_tmpfs / "u8"
    with pytest.raises(DataError, match="not enough disk space"):
        cache_split(bundle, "train", size=600, folder=str(folder))  # 4 x 3 x 600 x 600 = 4.3 MB
    assert [p.name for p in folder.iterdir() if p.name.endswith(".tmp")] == []


# --- verification store ---------------------------------------------------------------------------------------


def _store_of(root) -> Path:
    from alexnet.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_SIDE
    from alexnet.data.verify import store_path

    return Path(store_path(os.fspath(root), DEFAULT_MIN_SIDE, DEFAULT_MAX_PIXELS))


def test_verification_store_is_private_and_ignores_a_planted_symlink(tmp_path):
    from alexnet.data.folders import scan_folder

    root = f.image_folder(tmp_path / "data", ("cat", "dog"), per_class=2)
    store = _store_of(root)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    Path(f"{store}.{os.getpid()}.tmp").symlink_to(victim)  # the name the previous version wrote through
    scan_folder(root, val_split=0.0)
    assert victim.read_text() == "precious"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600 and stat.S_IMODE(store.parent.stat().st_mode) == 0o700


def test_a_forged_verification_store_is_dropped_and_every_file_checked_again(tmp_path, caplog):
    from alexnet.data.folders import scan_folder

    root = f.image_folder(tmp_path / "data", ("cat", "dog"), per_class=2)
    bad = f.write_bytes(root / "dog" / "dog_9.jpg", b"")
    assert [os.path.basename(p) for p, _ in scan_folder(root, val_split=0.0).skipped] == ["dog_9.jpg"]
    store = _store_of(root)
    stored = json.loads(store.read_text())
    for key in stored["content"]:
        if key.startswith(os.path.realpath(bad)):
            stored["content"][key] = [None, []]  # "this file is fine", without the checksum that would say so
    store.write_text(json.dumps(stored))
    with caplog.at_level(logging.WARNING, logger="alexnet.data"):
        scan = scan_folder(root, val_split=0.0)
    assert [os.path.basename(p) for p, _ in scan.skipped] == ["dog_9.jpg"]
    assert any("verification store" in r.getMessage() and "checksum mismatch" in r.getMessage()
               for r in caplog.records)


# --- 5. Paths: vanishing files, deep trees, loops ---------------------------------------------------------------


class _DeleteWhenLogged(logging.Handler):
    """Removes `victims` the moment the scan logs a record naming `trigger`: a real deletion in mid-scan."""

    def __init__(self, trigger: str, victims: list[Path]):
        super().__init__(logging.INFO)
        self.trigger, self.victims = trigger, victims

    def emit(self, record: logging.LogRecord) -> None:
        if self.trigger in record.getMessage():
            for v in self.victims:
                if v.is_dir():
                    for p in sorted(v.rglob("*"), reverse=True):
                        p.unlink() if p.is_file() else p.rmdir()
                    v.rmdir()
                elif v.exists():
                    v.unlink()


@contextlib.contextmanager
def _handler(h: logging.Handler):
    logger = logging.getLogger("alexnet.data")
    old = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(h)
    try:
        yield
    finally:
        logger.removeHandler(h)
        logger.setLevel(old)


def test_files_and_folders_that_vanish_mid_scan_are_skipped_and_listed(tmp_path):
    from alexnet.data.folders import scan_folder
    from alexnet.data.walk import VANISHED

    root = f.image_folder(tmp_path / "data", ("cat", "dog"), per_class=3)
    f.write_bytes(root / "cat" / ".hidden", b"x")  # sorted first in cat/: its "ignored" record fires the deletion
    sub = root / "cat" / "zz-more"
    sub.mkdir()
    f.write_jpeg(sub / "more.jpg", f.noise(seed=77))
    victim = root / "cat" / "cat_1.jpg"
    with _handler(_DeleteWhenLogged(str(root / "cat" / ".hidden"), [victim, sub])):
        scan = scan_folder(root, val_split=0.0)
    reasons = dict(scan.skipped)
    assert reasons[str(victim)] == VANISHED and reasons[str(sub)] == VANISHED
    assert sorted(os.path.basename(p) for p, _ in scan.train) == ["cat_0.jpg", "cat_2.jpg", "dog_0.jpg", "dog_1.jpg",
                                                                    "dog_2.jpg"]


def test_a_very_deep_class_tree_is_cut_at_the_depth_cap(tmp_path):
    from alexnet.data.folders import MAX_DEPTH, scan_folder

    root = f.image_folder(tmp_path / "data", ("cat", "dog"), per_class=2)
    deep = str(root / "cat")
    try:
        for _ in range(200):  # a loop: os.makedirs itself recurses
            deep = os.path.join(deep, "d")
            os.mkdir(deep)
        f.write_jpeg(Path(deep) / "lost.jpg", f.noise(seed=5))
        f.write_jpeg(root / "cat" / "d" / "d" / "kept.jpg", f.noise(seed=6))
        scan = scan_folder(root, val_split=0.0)
        names = [os.path.basename(p) for p, _ in scan.train]
        assert "kept.jpg" in names and "lost.jpg" not in names
        assert [r for _, r in scan.skipped] == [f"folder nested more than {MAX_DEPTH} levels deep, not searched"]
    finally:
        subprocess.run(["rm", "-rf", str(root / "cat" / "d")], timeout=60)  # shutil.rmtree would recurse too deep


# --- colour statistics and the built-in dataset's folder ---------------------------------------------------------


def test_damaged_colour_statistics_are_recomputed_with_a_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))  # only this test's statistics file in stats/
    root = f.image_folder(tmp_path / "data", ("cat", "dog"), per_class=3)
    first = build_datasets(str(root), image_size=24, preset="paper")
    (stored,) = (Path(os.environ["ALEXNET_CACHE"]) / "stats").glob("*.v2.json")
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    content = json.loads(stored.read_text())["content"]
    for damage in (sealed_json({**content, "std": [0.0, 0.0, 0.0]}), sealed_json({**content, "mean": [0.5]}),
                   stored.read_text()[:-9]):
        stored.write_text(damage)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="alexnet.data"):
            again = build_datasets(str(root), image_size=24, preset="paper")
        assert again.std == first.std and again.mean == first.mean and again.pca == first.pca
        assert [r.getMessage().split(":")[0] for r in caplog.records] == [f"colour statistics {stored}"]


TINY = {"image_size": 16, "train_per_class": 2, "val_per_class": 1}


def test_shapes_generation_folder_is_exclusive_and_stale_ones_are_removed(tmp_path):
    from alexnet.data.synthetic import ShapesConfig, make_shapes

    cfg = ShapesConfig(**TINY)
    final = tmp_path / "out" / "shapes"
    final.parent.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    # The previous version generated into NAME.tmp-PID: a symlink planted there made it write into `victim`.
    Path(f"{final}.tmp-{os.getpid()}").symlink_to(victim)
    stale = final.parent / ".shapes.k1ll3d.tmp"
    (stale / "train").mkdir(parents=True)
    assert make_shapes(cfg, str(final)) == str(final)
    assert list(victim.iterdir()) == [] and not stale.exists()
    assert final.is_dir() and not final.is_symlink() and len(list((final / "train" / "star").iterdir())) == 2
    assert [p.name for p in final.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_a_damaged_cached_shapes_dataset_is_regenerated_and_a_damaged_output_refused(tmp_path, caplog):
    from alexnet.data.synthetic import ShapesConfig, make_shapes

    cfg = ShapesConfig(**TINY)
    cached = Path(make_shapes(cfg))
    assert stat.S_IMODE(cached.stat().st_mode) == 0o700
    lost = cached / "train" / "star" / sorted(os.listdir(cached / "train" / "star"))[0]
    lost.unlink()
    with caplog.at_level(logging.WARNING, logger="alexnet.data"):
        assert make_shapes(cfg) == str(cached)
    assert lost.exists() and any("train/star holds 1 files, expected 2" in r.getMessage() for r in caplog.records)
    out = Path(make_shapes(cfg, str(tmp_path / "mine")))
    marker = json.loads((out / "shapes.json").read_text())
    (out / "shapes.json").write_text(json.dumps({**marker, "images": 999}))
    with pytest.raises(DataError, match="not a complete shapes dataset .shapes.json checksum mismatch"):
        make_shapes(cfg, str(out))


# --- 3. IDX: gzip bombs -----------------------------------------------------------------------------------------


def _gzip_bomb(path: Path, claimed_images: int, real_bytes: int) -> Path:
    """A real gzip IDX file: an images header claiming `claimed_images` 28x28 images, then `real_bytes` zeros."""
    import struct
    import zlib

    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: a gzip container
    zeros = bytes(1 << 20)
    with open(path, "wb") as out:
        out.write(comp.compress(b"\x00\x00\x08\x03" + struct.pack(">III", claimed_images, 28, 28)))
        left = real_bytes
        while left:
            out.write(comp.compress(zeros[: min(left, len(zeros))]))
            left -= min(left, len(zeros))
        out.write(comp.flush())
    return path


def _peak_mib(fn) -> float:
    """Peak traced allocation of fn() in MiB (numpy's buffers are traced; what the reader holds shows here)."""
    tracemalloc.start()
    try:
        with contextlib.suppress(DataError):
            fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_whose_header_claims_a_billion_images_is_refused_at_once(tmp_path):
    from alexnet.data.idx import IdxError, read_idx

    bomb = _gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", 10**9, 8 << 20)  # 8 MiB of zeros, 8 KiB on disk
    with pytest.raises(IdxError, match=r"784,000,000,000 data bytes .* can hold at most") as err:
        read_idx(bomb)
    assert str(err.value).startswith(str(bomb)) and "\n" not in str(err.value)
    assert _peak_mib(lambda: read_idx(bomb)) < 8


def test_an_honest_looking_gzip_bomb_is_refused_before_it_fills_memory(tmp_path):
    from alexnet.data.idx import IdxError, read_idx

    n = (72 << 20) // 784  # the header tells the truth: 72 MiB of zeros follow, from ~75 KB on disk
    bomb = _gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", n, n * 784)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(IdxError, match=r"refused as a gzip bomb"):
        read_idx(bomb)
    assert _peak_mib(lambda: read_idx(bomb)) < 8
    # The limit is a choice, not a wall: a caller who trusts the file can raise it.
    assert read_idx(bomb, max_ratio=2000).shape == (n, 28, 28)


def test_an_idx_header_over_the_absolute_cap_is_refused(tmp_path):
    from alexnet.data.idx import IdxError, read_idx

    ok = f.write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 28, 28), np.uint8))
    with pytest.raises(IdxError, match=r"at most 1,000 data bytes \(the reader's limit\)"):
        read_idx(ok, max_bytes=1000)


def test_zero_items_with_huge_dimensions_is_an_idx_error_not_a_numpy_crash(tmp_path):
    import struct

    from alexnet.data.idx import IdxError, read_idx

    path = f.write_bytes(tmp_path / "x.idx", b"\x00\x00\x08\x03" + struct.pack(">III", 0, 0xFFFFFFFF, 0xFFFFFFFF))
    with pytest.raises(IdxError, match="dimensions numpy can represent"):
        read_idx(path)


# --- 4. Images: high bit depth without huge intermediates; bounded workers -----------------------------------------


def _old_to_8bit(img: Image.Image) -> np.ndarray:
    """The previous whole-image formulas, as the reference the strip-wise conversion must reproduce."""
    if img.mode.startswith("I;16"):
        return (np.asarray(img).astype(np.uint32) >> 8).astype(np.uint8)
    if img.mode == "I":
        arr = np.asarray(img).astype(np.int64)
        top = 65535 if arr.max(initial=0) <= 65535 else int(arr.max())
        return (np.clip(arr, 0, top) * 255 // max(top, 1)).astype(np.uint8)
    arr = np.asarray(img, dtype=np.float64)
    scale = 255.0 if arr.max(initial=0.0) <= 1.0 else 1.0
    return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)


def _high_depth(mode: str, w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "I;16B":
        return Image.frombytes("I;16B", (w, h), rng.integers(0, 65536, (h, w)).astype(">u2").tobytes())
    if mode == "I16":  # 16-bit data in a 32-bit container
        return Image.fromarray(rng.integers(-5, 65536, (h, w), dtype=np.int32))
    if mode == "I":
        return Image.fromarray(rng.integers(-10, 1 << 30, (h, w), dtype=np.int32))
    if mode == "F01":
        return Image.fromarray(rng.random((h, w), dtype=np.float32))
    return Image.fromarray(rng.uniform(-20, 300, (h, w)).astype(np.float32))


@pytest.mark.parametrize("mode", ["I;16", "I;16B", "I16", "I", "F01", "F"])
def test_strip_wise_8bit_conversion_gives_the_same_pixels(mode, monkeypatch):
    from alexnet.data import images

    monkeypatch.setattr(images, "STRIP_PIXELS", 97)  # many uneven strips on a small image
    img = _high_depth(mode, 53, 41)
    out = images._to_8bit(img)
    assert out.mode == "L" and out.size == img.size
    assert np.array_equal(np.asarray(out), _old_to_8bit(img))


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_depth_conversion_needs_no_multi_byte_copy_of_the_image(mode):
    from alexnet.data.images import _to_8bit

    img = _high_depth(mode, 4000, 2000)  # 8 megapixels
    tracemalloc.start()
    try:
        out = _to_8bit(img)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.size == img.size
    # The uint8 result (1 byte/px) plus a strip; whole-image int64/float64 intermediates were 16-24 bytes/px.
    assert peak < 2 * 8_000_000, f"{peak / 8e6:.1f} bytes per pixel"


def test_float_image_with_nan_decodes_nan_as_black(tmp_path):
    from alexnet.data.images import load_image

    arr = np.full((16, 16), 0.5, dtype=np.float32)
    arr[:8] = np.nan
    path = tmp_path / "nan.tif"
    Image.fromarray(arr).save(path)
    out = np.asarray(load_image(path, 1))
    assert (out[:8] == 0).all() and (out[8:] == 128).all()


def test_decoding_threads_are_clamped_to_the_machine_with_a_note(caplog):
    from alexnet.data.limits import MAX_WORKERS, decode_workers

    cores = os.cpu_count() or 1
    with caplog.at_level(logging.WARNING, logger="alexnet.data"):
        assert decode_workers(10_000) == min(cores, MAX_WORKERS)
        assert decode_workers(10_000) == min(cores, MAX_WORKERS)
    assert len(caplog.records) == 1 and "10000" in caplog.records[0].getMessage()  # said once, not per call
    assert decode_workers(None) == decode_workers(0) == min(4, cores, MAX_WORKERS)
    assert decode_workers(1) == 1
    with pytest.raises(DataError, match="workers must be an integer >= 0, got -3"):
        decode_workers(-3)


def test_a_huge_workers_request_builds_the_cache_with_bounded_threads(bundle):
    import threading

    before = threading.active_count()
    seen = []
    original = bundle.train.load_pil

    def counting(i):  # records how many threads are alive while decoding (the real decoder still runs)
        seen.append(threading.active_count())
        return original(i)

    bundle.train.load_pil = counting
    assert cache_split(bundle, "train", workers=100_000).built
    assert max(seen) - before <= min(os.cpu_count() or 1, 64)


def test_an_oversized_cifar_batch_is_refused_before_it_is_read(tmp_path):
    from alexnet.data import tvsources

    folder = f.write_cifar10_folder(tmp_path / "cifar-10-batches-py")
    batch = folder / "data_batch_3"
    with open(batch, "ab") as out:
        out.truncate(tvsources.MAX_BATCH_BYTES + 1)  # a sparse file: large on paper, nothing on disk
    with pytest.raises(DataError, match=r"data_batch_3: expected a CIFAR-10 batch .*268,435,457 bytes"):
        tvsources.read_cifar10(str(folder))


def test_a_folder_planted_at_the_metadata_name_is_a_one_line_error(bundle):
    from alexnet.files import FileWriteError

    first = cache_split(bundle, "val")
    data, meta = _files(first)
    meta.unlink()
    meta.mkdir()
    (meta / "x").write_text("x")
    with pytest.raises(FileWriteError, match=str(meta)):
        cache_split(bundle, "val")


def test_a_class_folder_that_vanishes_mid_scan_is_no_class(tmp_path):
    from alexnet.data.folders import scan_folder
    from alexnet.data.walk import VANISHED

    root = f.image_folder(tmp_path / "data", ("cat", "dog", "emu"), per_class=2)
    f.write_bytes(root / ".DS_Store", b"x")  # sorted first at the root: its "ignored" record fires the deletion
    with _handler(_DeleteWhenLogged(str(root / ".DS_Store"), [root / "emu"])):
        scan = scan_folder(root, val_split=0.0)
    assert scan.class_names == ["cat", "dog"] and dict(scan.skipped) == {str(root / "emu"): VANISHED}


def test_dataloader_workers_keep_zero_and_are_clamped_above_the_cores():
    from alexnet.data.limits import MAX_WORKERS, loader_workers

    assert loader_workers(0) == 0 and loader_workers(1) == 1
    assert loader_workers(5000) == min(os.cpu_count() or 1, MAX_WORKERS)


def test_a_symlink_planted_as_the_cache_folder_is_refused(bundle, tmp_path, monkeypatch):
    from alexnet.files import UnsafePathError

    monkeypatch.setenv("ALEXNET_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "attacker").mkdir()
    (tmp_path / "cache" / "uint8").symlink_to(tmp_path / "attacker")
    with pytest.raises(UnsafePathError, match=r"uint8: not a real folder"):
        cache_split(bundle, "val")
    assert list((tmp_path / "attacker").iterdir()) == []


def test_a_file_standing_at_the_cached_shapes_folder_is_replaced(caplog):
    from alexnet.data.cachedir import cache_dir
    from alexnet.data.synthetic import ShapesConfig, make_shapes

    cfg = ShapesConfig(image_size=16, train_per_class=1, val_per_class=0, seed=11)
    where = Path(cache_dir("datasets")) / cfg.name
    where.write_bytes(b"not a folder")
    with caplog.at_level(logging.WARNING, logger="alexnet.data"):
        assert make_shapes(cfg) == str(where)
    assert (where / "shapes.json").is_file() and len(caplog.records) == 1


def test_a_shapes_dataset_asking_for_a_billion_images_is_refused_at_once():
    from alexnet.data.synthetic import ShapesConfig

    with pytest.raises(DataError, match=r"train_per_class must be in 1\.\.100,000"):
        ShapesConfig(train_per_class=10**9)
    with pytest.raises(DataError, match="val_per_class"):
        ShapesConfig(val_per_class=10**9)
