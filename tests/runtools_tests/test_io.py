"""Atomic writes: fsync before the rename, unique temp names, no orphans after a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from runtools import io as _io
from runtools.io import atomic_path, write_text

# A writer that creates the temp file, says so, then keeps writing until it is killed.
_SLOW_WRITER = """
import sys, time
from runtools.io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        f.write(b"x" * (1 << 20)); f.flush()
        print(tmp, flush=True)
        while True:
            f.write(b"x" * (1 << 16)); f.flush(); time.sleep(0.01)
"""


def _temps(folder, name):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}.") and p.name.endswith(".tmp"))


def test_killed_writer_leaves_no_orphan_after_the_next_write(tmp_path):
    target = tmp_path / "big.bin"
    target.write_text("old")
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        tmp = proc.stdout.readline().strip()
        assert tmp, "the writer did not start"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    leftovers = _temps(tmp_path, "big.bin")
    assert leftovers == [os.path.basename(tmp)], "SIGKILL skips cleanup: the temp file is the orphan to collect"
    assert target.read_text() == "old"  # readers never saw a half-written file

    write_text(target, "new")
    assert target.read_text() == "new"
    assert _temps(tmp_path, "big.bin") == []
    assert f".{_io._HOST}.{proc.pid}." in leftovers[0]  # the name said whose it was


def test_temp_files_of_live_writers_and_other_targets_are_kept(tmp_path):
    target = tmp_path / "a.json"
    live = tmp_path / f".a.json.{_io._HOST}.{os.getpid()}.abcd.tmp"  # this process: alive
    other_target = tmp_path / f".a.json.bak.{_io._HOST}.999999999.abcd.tmp"  # pid cannot exist
    foreign_recent = tmp_path / ".a.json.otherhost.1.abcd.tmp"
    foreign_old = tmp_path / ".a.json.otherhost.2.abcd.tmp"
    unrelated = tmp_path / ".a.json.tmp"
    for p in (live, other_target, foreign_recent, foreign_old, unrelated):
        p.write_text("x")
    day_ago = time.time() - _io.STALE_FOREIGN_TMP_S - 60
    os.utime(foreign_old, (day_ago, day_ago))
    removed = _io.remove_stale_temp_files(target)
    assert [p.name for p in removed] == [foreign_old.name]
    # other_target belongs to "a.json.bak" (its host field reads "bak.<host>"): recent, so kept
    assert live.exists() and other_target.exists() and foreign_recent.exists() and unrelated.exists()


def test_fsync_file_then_rename_then_fsync_folder(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}") if sys.platform == "linux" else fd))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(_io.os, "fsync", fsync)
    monkeypatch.setattr(_io.os, "replace", replace)
    write_text(tmp_path / "f.txt", "data")
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    if sys.platform == "linux":
        assert events[0][1].endswith(".tmp") and events[2][1] == str(tmp_path.resolve())
    assert (tmp_path / "f.txt").read_text() == "data"


def test_failed_body_removes_its_temp_file_and_keeps_the_old_target(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old" and _temps(tmp_path, "t.txt") == []


def test_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        write_text(tmp_path / "m.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "m.txt").stat().st_mode & 0o777 == 0o640


def test_not_durable_skips_both_fsyncs_but_still_renames_atomically(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(_io.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(_io.os, "replace", lambda src, dst: (events.append("replace"), real_replace(src, dst))[1])
    target = tmp_path / "t.json"
    target.write_text("old")
    _io.write_json(target, {"a": 1}, durable=False)
    assert events == ["replace"]
    assert target.read_text() == '{\n  "a": 1\n}\n' and _temps(tmp_path, "t.json") == []
    with pytest.raises(RuntimeError), atomic_path(target, durable=False) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == '{\n  "a": 1\n}\n' and _temps(tmp_path, "t.json") == []


def test_write_text_is_utf8_through_one_descriptor(tmp_path, monkeypatch):
    opened = []
    real_open = os.open
    monkeypatch.setattr(_io.os, "open", lambda p, *a, **k: (opened.append(str(p)), real_open(p, *a, **k))[1])
    target = tmp_path / "sub" / "t.yaml"  # the folder is made
    write_text(target, "kT_e: 100 keV, Γ ≥ 1.3\n" * 1000)
    assert target.read_bytes().decode("utf-8") == "kT_e: 100 keV, Γ ≥ 1.3\n" * 1000
    assert _temps(target.parent, "t.yaml") == []
    # the temp file once (written and fsynced through it), then the folder for its fsync
    assert [os.path.basename(p).endswith(".tmp") for p in opened] == [True, False] and opened[1] == str(target.parent)
