"""CappedLog keeps whole logs under the cap and the head plus tail of longer ones."""

from __future__ import annotations

import os
import re
import threading

import pytest

from sandbox.backends.logcap import CappedLog, drain_pipe


def test_log_under_the_cap_is_kept_byte_for_byte(tmp_path):
    data = b"".join(f"line {i}\n".encode() for i in range(500))
    log = CappedLog(tmp_path / "log.txt", max_bytes=len(data) + 100)
    for i in range(0, len(data), 7):
        log.write(data[i : i + 7])
    log.close()
    assert (tmp_path / "log.txt").read_bytes() == data
    assert not log.truncated
    assert log.omitted_bytes == 0


def test_long_log_keeps_head_and_tail_within_cap_and_counts_what_it_dropped(tmp_path):
    cap = 4096
    log = CappedLog(tmp_path / "log.txt", max_bytes=cap)
    log.write(b"START\n")
    total = 6
    for i in range(10_000):
        chunk = f"middle {i:06d}\n".encode()
        log.write(chunk)
        total += len(chunk)
    log.write(b"THE END\n")
    total += 8
    log.close()
    text = (tmp_path / "log.txt").read_bytes()
    assert len(text) <= cap
    assert text.startswith(b"START\n")
    assert text.endswith(b"middle 009999\nTHE END\n")
    omitted = int(re.search(rb"\[\.\.\. (\d+) bytes omitted \.\.\.\]", text).group(1))
    marker_len = len(re.search(rb"\n\[\.\.\. \d+ bytes omitted \.\.\.\]\n", text).group(0))
    assert omitted == log.omitted_bytes > 0
    assert len(text) - marker_len + omitted == total
    assert log.truncated


def test_too_small_cap_is_refused_with_the_minimum(tmp_path):
    with pytest.raises(ValueError, match="at least"):
        CappedLog(tmp_path / "log.txt", max_bytes=10)


def test_drain_pipe_copies_until_end_of_file(tmp_path):
    read_fd, write_fd = os.pipe()
    log = CappedLog(tmp_path / "log.txt", max_bytes=1 << 20)
    thread = threading.Thread(target=drain_pipe, args=(read_fd, log, threading.Event()))
    thread.start()
    os.write(write_fd, b"hello ")
    os.write(write_fd, b"world\n")
    os.close(write_fd)
    thread.join(timeout=5)
    os.close(read_fd)
    log.close()
    assert not thread.is_alive()
    assert (tmp_path / "log.txt").read_bytes() == b"hello world\n"


def test_drain_pipe_gives_up_when_asked_although_a_writer_holds_the_pipe(tmp_path):
    read_fd, write_fd = os.pipe()
    give_up = threading.Event()
    log = CappedLog(tmp_path / "log.txt", max_bytes=1 << 20)
    thread = threading.Thread(target=drain_pipe, args=(read_fd, log, give_up))
    thread.start()
    os.write(write_fd, b"partial")
    give_up.set()
    thread.join(timeout=5)
    assert not thread.is_alive()
    os.close(write_fd)
    os.close(read_fd)
    log.close()
    assert (tmp_path / "log.txt").read_bytes() == b"partial"
