"""Sampling in forked worker processes: how many, their shares and seeds, errors, and real generation."""

import multiprocessing
import os
import signal

import pytest
import torch

from synth_model.errors import ConfigError, GenerationError
from synth_model.workers import MIN_SHARE, run_forked, seeds, split_target, worker_count

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def four_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def test_auto_starts_one_worker_per_thread_with_enough_records_each(four_threads):
    assert worker_count("auto", CPU, "engine", 10_000) == 4
    assert worker_count("auto", CPU, "engine", 2 * MIN_SHARE) == 2
    assert worker_count("auto", CPU, "engine", MIN_SHARE - 1) == 1
    assert worker_count("auto", CPU, "engine", 4 * MIN_SHARE, records_per_unit=3) == 1  # groups of 3 records
    assert worker_count(3, CPU, "engine", 2) == 2  # never more workers than records


def test_cuda_and_vllm_sample_in_the_calling_process(four_threads):
    assert worker_count("auto", CUDA, "engine", 10_000) == 1
    assert worker_count("auto", CPU, "vllm", 10_000) == 1
    assert worker_count(1, CUDA, "engine", 10_000) == 1
    with pytest.raises(ConfigError, match="generation.workers: 2 .* on CUDA"):
        worker_count(2, CUDA, "engine", 10_000)
    with pytest.raises(ConfigError, match="backend vllm"):
        worker_count(2, CPU, "vllm", 10_000)


def test_a_daemonic_process_samples_in_itself():
    """A daemonic process may not start processes (multiprocessing refuses), so it keeps the work."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def inside():
        try:
            worker_count(2, CPU, "engine", 10_000)
        except ConfigError as err:
            send.send((worker_count("auto", CPU, "engine", 10_000), str(err)))

    proc = context.Process(target=inside, daemon=True)
    proc.start()
    send.close()  # the child's end only: no refusal is an EOFError here, not a hang
    auto, refusal = receive.recv()
    proc.join()
    assert auto == 1 and "in a daemonic process" in refusal


def test_shares_add_up_and_seeds_differ():
    assert split_target(1001, 3) == [334, 334, 333]
    assert seeds(7, 1) == [7]
    several = seeds(7, 4)
    assert len(set(several)) == 4 and several == seeds(7, 4) and several != seeds(8, 4)


def test_results_come_back_in_order_with_summed_progress():
    seen = []

    def task(n):
        def run(report):
            report(n)
            return os.getpid(), n * 10

        return run

    results = run_forked([task(1), task(2), task(3)], seen.append)
    assert [r[1] for r in results] == [10, 20, 30]
    assert len({r[0] for r in results} | {os.getpid()}) == 4  # three processes besides this one
    assert seen and max(seen) <= 6 and seen == sorted(seen)


def test_worker_errors_reach_the_caller():
    def refuses(report):
        raise GenerationError("the model keeps failing; train longer")

    def breaks(report):
        raise ValueError("a bug")

    def dies(report):
        os._exit(3)

    def killed(report):
        os.kill(os.getpid(), signal.SIGKILL)  # as the out-of-memory killer does

    def slow(report):
        import time

        time.sleep(60)

    with pytest.raises(GenerationError, match="^the model keeps failing; train longer$"):
        run_forked([refuses, slow], print)  # and the slow one is stopped, not waited for
    with pytest.raises(GenerationError, match=r"(?s)a sampling worker failed:.*ValueError: a bug"):
        run_forked([breaks], print)
    with pytest.raises(GenerationError, match=r"worker 0 died \(exit code 3\).*generation.workers: 1"):
        run_forked([dies], print)
    with pytest.raises(GenerationError, match=r"exit code -9, killed: out of memory\?"):
        run_forked([killed], print)


def test_two_workers_generate_one_table_of_valid_records(fitted_credit):
    synth, _ = fitted_credit
    generation = synth.config.generation
    batch_size = generation.batch_size
    try:
        generation.workers, generation.batch_size = 2, 600  # each worker: 600 rows, far inside the cache budget
        result = synth.generate_with_stats(400)
        again = synth.generate(400)
    finally:
        generation.workers, generation.batch_size = "auto", batch_size
    assert result.stats["workers"] == 2 and result.stats["batch_size"] == 600 and result.table.num_rows == 400
    assert result.stats["valid_fraction"] == 1.0  # structured generation in each worker
    assert result.table.equals(again)  # the same seed and workers, the same records
    first, second = result.table.slice(0, 200).to_pylist(), result.table.slice(200, 200).to_pylist()
    assert first != second  # the workers draw independent streams, not copies


def test_workers_stop_when_the_parent_is_killed():
    """A scheduler cancelling a run kills the sampling process; its workers must not keep running."""
    import subprocess
    import sys

    import psutil

    script = (
        "import time\nfrom synth_model.workers import run_forked\n"
        "def forever(report):\n    while True:\n        report(1)\n        time.sleep(0.05)\n"
        "run_forked([forever, forever], lambda n: print('progress', n, flush=True))\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    workers = []
    try:
        assert parent.stdout.readline().startswith("progress")
        workers = psutil.Process(parent.pid).children()
        assert len(workers) == 2
        parent.send_signal(signal.SIGTERM)
        parent.wait(30)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == []
    finally:
        parent.kill()
        for worker in workers:
            if worker.is_running():
                worker.kill()
