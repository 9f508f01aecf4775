"""The runners: per-item failures, crash isolation, the default job count; and pool workers (and
their forkserver) that die with the process that started them, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import soundfile as sf
from crashing_worker import DOUBLER, UNSETTABLE
from helpers import tone

from genrify.core.runner import CRASHED, LocalRunner, Processor, default_jobs, failure_reason
from genrify.errors import AudioError, ParameterError

REPO = Path(__file__).resolve().parents[1]


def test_in_process_every_item_in_order_and_a_bad_one_is_a_failure_record():
    runner = LocalRunner(1)
    assert runner.runs_here(10)
    results = list(runner.run(DOUBLER, [1, -2, 3]))
    assert results == [2, ("failed", -2, "ValueError: negative -2"), 6]


def test_a_pool_reports_every_item_once_and_a_crash_costs_only_its_item():
    items = list(range(-1, 30))
    results = list(LocalRunner(2).run(DOUBLER, items, 7))  # item 7 kills its worker
    failed = {r[1]: r[2] for r in results if isinstance(r, tuple)}
    assert len(results) == len(items)
    assert failed == {-1: "ValueError: negative -1", 7: CRASHED}
    assert sorted(r for r in results if not isinstance(r, tuple)) == [2 * n for n in items if n not in (-1, 7)]


def test_a_pool_that_breaks_while_work_is_handed_to_it_loses_nothing(monkeypatch):
    # A worker can die between the runner's look at its pool and its next submit: the pool then
    # refuses the batch (BrokenProcessPool from submit itself), which must cost nothing.
    import genrify.core.runner as runner_module
    from concurrent.futures.process import BrokenProcessPool

    real_pool, refused = runner_module.process_pool, []

    class RefusesOnce:
        def __init__(self, *args, **kwargs):
            self.pool = real_pool(*args, **kwargs)

        def submit(self, *args, **kwargs):
            if not refused:
                refused.append(args[1])
                raise BrokenProcessPool("a worker died")
            return self.pool.submit(*args, **kwargs)

        def shutdown(self, *args, **kwargs):
            return self.pool.shutdown(*args, **kwargs)

    monkeypatch.setattr(runner_module, "process_pool", RefusesOnce)
    items = list(range(1, 20))
    results = list(LocalRunner(2).run(DOUBLER, items))
    assert refused and sorted(results) == [2 * n for n in items]


def test_a_worker_that_cannot_set_up_says_why_instead_of_crashing_every_item():
    from genrify.errors import ModelFileError

    # Before, the setup broke the pool and each of the 20 items came back as a crash, the reason lost.
    with pytest.raises(ModelFileError, match="broken.safetensors: the model's ONNX graph does not run"):
        list(LocalRunner(2).run(UNSETTABLE, list(range(20))))


def test_a_single_item_runs_here_unless_workers_are_asked_for():
    assert LocalRunner(4).runs_here(1) and not LocalRunner(4).runs_here(2)
    assert not LocalRunner(4, in_process=False).runs_here(1)
    assert LocalRunner(4, in_process=True).runs_here(100)
    assert list(LocalRunner(4, in_process=False).run(DOUBLER, [21])) == [42]
    assert list(LocalRunner(4).run(DOUBLER, [])) == []


def test_jobs_must_be_positive_and_default_to_the_usable_cores():
    with pytest.raises(ParameterError, match="jobs must be at least 1"):
        LocalRunner(0)
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_jobs() == expected == LocalRunner().jobs


def test_failure_reasons():
    assert failure_reason(AudioError("/x/a.mp3", "truncated")) == "truncated"  # the record holds the path
    assert failure_reason(ParameterError("bad value")) == "bad value"
    assert failure_reason(KeyError("k")) == "KeyError: 'k'"
    processor = Processor(int, lambda item, reason: reason)
    assert processor("12") == 12 and processor("x").startswith("ValueError: invalid literal")


psutil = pytest.importorskip("psutil")


def _kill_parent_and_check_tree(args: list[str], cwd: Path, min_workers: int = 2) -> None:
    """Start ``args``, wait for pool workers (grandchildren), SIGKILL the parent alone, and assert
    that every process it started is gone within seconds."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO / "tests")])}
    proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    parent = psutil.Process(proc.pid)
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            tree = parent.children(recursive=True)
            # Workers are the forkserver's children: grandchildren of the parent.
            if sum(1 for p in tree if _ppid(p) not in (proc.pid, None)) >= min_workers:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"finished before workers were seen: {proc.stderr.read().decode()[-2000:]}"
        tree = parent.children(recursive=True)
        assert len(tree) >= min_workers + 1
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, as `kill -9 PID` does
        proc.wait()
        _gone, alive = psutil.wait_procs(tree, timeout=15)
        assert not alive, f"survived their parent: {[(p.pid, _cmd(p)) for p in alive]}"
    finally:
        for p in tree:  # never leave a test's processes behind, even when it fails
            try:
                p.kill()
            except psutil.Error:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ppid(p) -> int | None:
    try:
        return p.ppid()
    except psutil.Error:
        return None


def _cmd(p) -> str:
    try:
        return " ".join(p.cmdline())[:200]
    except psutil.Error:
        return "?"


def _library(root: Path, n: int = 40, seconds: float = 20.0) -> Path:
    music = root / "music"
    for i in range(n):
        path = music / ("blues", "rock")[i % 2] / f"{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, tone(seconds, freq=200.0 + 10 * i, seed=i), 22050)
    return music


def test_pool_workers_and_forkserver_die_with_a_killed_parent(tmp_path):
    code = textwrap.dedent(
        """
        import time
        from genrify.core.runner import process_pool
        pool = process_pool(2)
        futures = [pool.submit(time.sleep, 600) for _ in range(2)]
        time.sleep(600)
        """
    )
    _kill_parent_and_check_tree([sys.executable, "-c", code], tmp_path)


def test_extract_workers_die_with_a_killed_extract(tmp_path):
    music = _library(tmp_path)
    _kill_parent_and_check_tree(
        [sys.executable, "-m", "genrify.cli", "extract", str(music), "--store", str(tmp_path / "store"), "--jobs", "2"],
        tmp_path,
    )


def test_classify_workers_die_with_a_killed_classify(tmp_path):
    music = _library(tmp_path)
    code = textwrap.dedent(
        f"""
        import glob
        from genrify.audio.features import FeatureParams
        from genrify.classify.predict import SEGMENTER, SegmentPlan
        from genrify.core.runner import LocalRunner
        files = sorted(glob.glob({str(music)!r} + "/*/*.wav")) * 20
        for _ in LocalRunner(2).run(SEGMENTER, files, SegmentPlan(FeatureParams(), 128)):
            pass
        """
    )
    _kill_parent_and_check_tree([sys.executable, "-c", code], tmp_path)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_a_killed_forkserver(tmp_path):
    # The parent lives on; only the workers' own parent (the forkserver) is killed. The kernel's
    # parent-death signal must take its workers down even though their lifeline is still open.
    code = textwrap.dedent(
        """
        import multiprocessing, os, signal, sys, time
        from genrify.core.runner import process_pool
        pool = process_pool(2)
        pids = set(pool.submit(os.getpid).result() for _ in range(8))
        import psutil
        me = psutil.Process()
        workers = [p for p in me.children(recursive=True) if p.pid in pids]
        server = workers[0].parent()
        server.kill()
        _gone, alive = psutil.wait_procs(workers, timeout=10)
        sys.exit(0 if not alive and workers else 5)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=120, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_workers_log_at_the_parents_level(tmp_path):
    # `genrify extract -v` sets genrify's logger to DEBUG; the decoders' notes come from workers.
    code = textwrap.dedent(
        """
        import logging
        from genrify.core.runner import process_pool
        logging.getLogger("genrify").setLevel(logging.DEBUG)
        with process_pool(1) as pool:
            pool.submit(logging.getLogger("genrify.audio.decode").debug, "note from a worker").result()
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=120, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "genrify.audio.decode: note from a worker" in done.stderr


POOL_SCRIPT = """
from genrify.core.runner import process_pool

def main():
    with process_pool(1) as pool:
        print("answer", pool.submit(abs, -3).result())

{call}
"""


@pytest.mark.parametrize("call, refused", [
    ("main()", True),  # the workers would import the script and run main() again
    ("if True:\n    main()", True),
    ("if __name__ == '__main__':\n    main()", False),
    ('if "__main__" == __name__:\n    main()', False),
    # A guard with a further condition is still a guard, whichever side the comparison is on ...
    ("if __name__ == '__main__' and len(__file__) < 5000:\n    main()", False),
    ("if __file__ and '__main__' == __name__:\n    main()", False),
    # ... but not with `or`: a worker importing the script would run main() again.
    ("if __name__ == '__main__' or __file__:\n    main()", True),
])
def test_a_script_starting_a_pool_outside_the_main_guard_is_told_so_in_one_line(tmp_path, call, refused):
    script = tmp_path / "my_script.py"
    script.write_text(POOL_SCRIPT.format(call=call))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    if refused:
        assert done.returncode != 0
        last = done.stderr.strip().splitlines()[-1]
        assert f"{script}: line " in last and 'if __name__ == "__main__":' in last, done.stderr
        assert "answer" not in done.stdout
    else:
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["answer", "3"]
