"""The export's file side runs on one I/O thread: jobs in order, a bounded queue, failures raised in the
exporting thread with every file closed, and JSON Lines hashed as written (the manifest equals a read-back)."""

import threading
import time

import pytest

from feedback.export import writer
from feedback.export.options import ExportOptions
from feedback.export.snapshot import judgment_high_water_mark
from feedback.export.writer import _Background, export_write, file_digest


def test_jobs_run_in_order_on_one_other_thread_and_a_full_queue_makes_the_producer_wait():
    background = _Background(depth=2)
    done: list[int] = []
    threads = set()
    release = threading.Event()

    def job(index):
        threads.add(threading.get_ident())
        if index == 0:
            assert release.wait(5)
        done.append(index)

    background.submit(job, 0)
    background.submit(job, 1)
    assert done == []  # job 0 is held; two jobs fill the queue
    threading.Timer(0.2, release.set).start()
    background.submit(job, 2)  # waits for job 0
    assert done[:1] == [0]
    for index in range(3, 6):
        background.submit(job, index)
    background.join()
    assert done == [0, 1, 2, 3, 4, 5]
    assert len(threads) == 1
    assert threading.get_ident() not in threads


def test_a_failed_job_is_raised_at_the_next_submit_and_later_jobs_still_run_before_join_returns():
    background = _Background(depth=1)
    done = []

    def fail():
        raise OSError(28, "No space left on device")

    background.submit(fail)
    with pytest.raises(OSError, match="No space left"):
        background.submit(done.append, 1)  # waits for the failed job
    background.submit(done.append, 2)
    background.join()
    assert done == [2]  # the submit that saw the failure queued nothing; later ones run


def test_join_raises_a_failure_nobody_waited_for():
    background = _Background(depth=4)
    background.submit(time.sleep, 0.05)
    background.submit(int, "not a number")
    with pytest.raises(ValueError, match="invalid literal"):
        background.join()


@pytest.mark.parametrize("output", ["jsonl", "jsonl.gz", "parquet"])
def test_the_manifest_digests_equal_the_files_read_back(corpus, tmp_path, monkeypatch, output):
    monkeypatch.setattr(writer, "FILE_CHUNK_BYTES", 64)  # many chunks through the I/O thread
    monkeypatch.setattr(writer, "PARQUET_BATCH_ROWS", 2)
    options = ExportOptions.from_mapping(
        {"format": "judgments", "output": output, "exclude_flagged": False, "test_fraction": 0.5}
    )
    manifest = export_write(options, high_water_mark=judgment_high_water_mark(), directory=tmp_path / "out")
    data_files = [name for name in manifest["files"] if name != "README.md"]
    assert len(data_files) == 2  # both splits hold rows
    for name, recorded in manifest["files"].items():
        assert recorded == file_digest(tmp_path / "out" / name), name


def test_a_write_failure_fails_the_export_and_closes_its_files(corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "FILE_CHUNK_BYTES", 64)
    opened = []
    real_open = writer._DigestingFile.__init__

    def record_open(self, path):
        real_open(self, path)
        opened.append(self._file)

    def disk_full(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer._DigestingFile, "__init__", record_open)
    monkeypatch.setattr(writer._DigestingFile, "write", disk_full)
    options = ExportOptions.from_mapping({"format": "judgments", "output": "jsonl"})
    with pytest.raises(OSError, match="No space left"):
        export_write(options, high_water_mark=judgment_high_water_mark(), directory=tmp_path / "out")
    assert opened
    assert all(handle.closed for handle in opened)
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("rankwise-export-io")]
