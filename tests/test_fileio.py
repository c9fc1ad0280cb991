import pytest

from mmad.fileio import atomic_open, atomic_path, atomic_write_text


def test_write_creates_parents_and_replaces(tmp_path):
    target = tmp_path / "a" / "b" / "notes.txt"
    atomic_write_text(target, "one\n")
    atomic_write_text(target, "two\r\n")
    assert target.read_bytes() == b"two\r\n"  # line endings kept as given
    assert sorted(p.name for p in target.parent.iterdir()) == ["notes.txt"]


def test_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.bin"
    with atomic_open(target, "wb", durable=True) as f:
        f.write(b"old")
    with pytest.raises(OSError, match="disk full"):
        with atomic_open(target, "wb") as f:
            f.write(b"partial")
            raise OSError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_temporary_path_keeps_the_suffix_and_lives_beside_the_target(tmp_path):
    target = tmp_path / "clip.mp4"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".mp4" and tmp.name.startswith(".clip.mp4.")
        tmp.write_bytes(b"x")
    assert target.read_bytes() == b"x" and not tmp.exists()


def test_written_files_get_the_mode_of_a_plain_open(tmp_path):
    """Not mkstemp's owner-only 0600: features and checkpoints are shared with a group on clusters."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.json", "{}")
        plain = tmp_path / "b.json"
        plain.write_text("{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o644
