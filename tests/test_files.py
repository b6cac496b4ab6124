"""The one writer (alexnet.files): whole files or none, no planted temporaries followed, private cache folders."""

import errno
import os
import stat

import pytest

from alexnet.files import (
    FileWriteError,
    UnsafePathError,
    atomic_write,
    atomic_write_text,
    private_dir,
    remove_stale_temporaries,
)


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("old")

    def half_then_fail(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]  # no temporary left behind


def test_atomic_write_turns_an_os_error_into_one_line_naming_the_path(tmp_path):
    target = tmp_path / "metrics.csv"

    def full_disk(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(FileWriteError, match=r"metrics.csv: No space left on device \(ENOSPC\)"):
        atomic_write(target, full_disk)
    assert not target.exists()


def test_atomic_write_does_not_follow_a_planted_symlink_at_a_temporary_name(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    # Names an older writer used (path + pid + .tmp) are guessable; plant links at several such names.
    for name in (f"out.txt.{os.getpid()}.tmp", ".out.txt.tmp", "out.txt.tmp"):
        (tmp_path / name).symlink_to(victim)
    atomic_write_text(tmp_path / "out.txt", "new")
    assert victim.read_text() == "precious"
    assert (tmp_path / "out.txt").read_text() == "new"
    assert not (tmp_path / "out.txt").is_symlink()


def test_atomic_write_mode(tmp_path):
    atomic_write_text(tmp_path / "private", "x", mode=0o600)
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o600


def test_remove_stale_temporaries_only_removes_ours(tmp_path):
    (tmp_path / ".last.pt.abc123.tmp").write_text("stale")
    (tmp_path / "last.pt").write_text("keep")
    (tmp_path / ".notes.txt").write_text("keep")
    removed = remove_stale_temporaries(tmp_path, name="*.pt")
    assert [p.name for p in removed] == [".last.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.txt", "last.pt"]


def test_private_dir_is_created_0700(tmp_path):
    folder = private_dir(tmp_path / "a" / "native")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_private_dir_refuses_a_group_writable_folder(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o777)
    with pytest.raises(UnsafePathError, match="other users can write to it"):
        private_dir(folder)


def test_private_dir_refuses_a_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(UnsafePathError, match="not a real folder"):
        private_dir(tmp_path / "link")


def test_private_dir_refuses_a_parent_writable_by_others_without_sticky_bit(tmp_path):
    parent = tmp_path / "open"
    parent.mkdir()
    parent.chmod(0o777)
    with pytest.raises(UnsafePathError, match="can be written by other users"):
        private_dir(parent / "cache")
    parent.chmod(0o1777)  # sticky, as /tmp: others cannot rename or remove what is ours
    assert private_dir(parent / "cache").is_dir()


def test_a_writer_that_hides_a_full_disk_behind_its_own_error_is_named_enospc(tmp_path):
    """torch.save reports a full disk as RuntimeError('unexpected pos'); asked while the temporary still holds its
    blocks, the file system tells the truth. A real 64 KiB tmpfs, filled by the writer itself."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        def fill_then_complain(tmp):
            try:
                with open(tmp, "wb") as f:
                    while True:
                        f.write(b"\0" * 4096)
                        f.flush()
            except OSError:
                raise RuntimeError("PytorchStreamWriter failed writing file data: unexpected pos") from None

        with pytest.raises(FileWriteError, match=r"last.pt: No space left on device \(ENOSPC\)"):
            atomic_write(disk / "last.pt", fill_then_complain)
        assert list(disk.iterdir()) == []  # the temporary is gone, and nothing half-written stands at the name

        def plain_bug(tmp):
            raise RuntimeError("a bug, not a full disk")

        with pytest.raises(RuntimeError, match="a bug"):  # with space left, other errors pass through untouched
            atomic_write(disk / "x", plain_bug)
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
