"""Many trials per GPU (``--trials-per-gpu k``): the assignment rule, the job's GPUs, the script."""

from __future__ import annotations

import pytest

from hpo.errors import StudyConfigError
from slurm._sbatch import check_slurm_options, gpus_per_job, make_sbatch
from slurm.launch import JobWorkers, SlurmLauncher
from slurm.launch import main as launch_main
from slurm.worker import GPU_MEMORY_FRACTION_ENV, GpuMemoryFraction, assign_gpus
from slurm.worker import main as worker_main


@pytest.mark.parametrize(
    "gpus, n, k, expected",
    [
        (["0", "1"], 4, 2, [["0"], ["0"], ["1"], ["1"]]),
        (["2", "3"], 3, 2, [["2"], ["2"], ["3"]]),
        (["5"], 4, 4, [["5"], ["5"], ["5"], ["5"]]),
        (["0", "1", "2", "3"], 8, 2, [["0"], ["0"], ["1"], ["1"], ["2"], ["2"], ["3"], ["3"]]),
        (["0"], 4, 2, [["0"], ["0"], ["0"], ["0"]]),  # too few: shared round-robin, with a warning
        (["0", "1", "2"], 2, 2, [["0"], ["0"]]),  # extra GPUs stay idle
        ([], 2, 2, [[], []]),
    ],
)
def test_worker_i_gets_gpu_i_div_k(gpus, n, k, expected):
    assert assign_gpus(gpus, n, trials_per_gpu=k) == expected


def test_assign_gpus_refuses_a_bad_k():
    with pytest.raises(ValueError, match="trials_per_gpu must be >= 1"):
        assign_gpus(["0"], 2, trials_per_gpu=0)


@pytest.mark.parametrize("workers, k, expected", [(4, 2, 2), (3, 2, 2), (8, 4, 2), (1, 2, 1), (4, 1, 4)])
def test_a_job_asks_for_ceil_workers_over_k_gpus(workers, k, expected):
    assert gpus_per_job(None, workers, k) == expected


def test_sharing_a_gpu_with_several_gpus_per_worker_is_refused():
    with pytest.raises(ValueError, match="gpus_per_task must be 1"):
        gpus_per_job(2, 4, 2)
    with pytest.raises(StudyConfigError, match=r"slurm\.trials_per_gpu: 2 workers share one GPU"):
        check_slurm_options({"trials_per_gpu": 2, "gpus_per_task": 2})
    with pytest.raises(StudyConfigError, match=r"slurm\.trials_per_gpu: must be a positive integer"):
        check_slurm_options({"trials_per_gpu": 0})


def test_sbatch_text_for_trials_per_gpu():
    text = make_sbatch(study="s.yaml", workers_per_task=4, trials_per_gpu=2)
    assert "#SBATCH --gres=gpu:2\n" in text
    assert "exec python -m slurm.worker --workers-per-task 4 --trials-per-gpu 2 --study s.yaml" in text
    assert "--trials-per-gpu" not in make_sbatch(study="s.yaml", workers_per_task=4)


def test_launcher_flag_reaches_the_script_and_the_job(tmp_path, capsys):
    from tests.slurm_tests._cluster import write_study

    study = write_study(tmp_path, storage=f"sqlite:///{tmp_path}/s.db")
    out = tmp_path / "out.sbatch"
    argv = ["--study", str(study), "--workers", "8", "--trials-per-node", "4", "--trials-per-gpu", "4"]
    assert launch_main([*argv, "--sbatch-script", str(out)]) == 0
    text = out.read_text()
    assert "#SBATCH --array=0-1\n" in text and "#SBATCH --gres=gpu:1\n" in text
    assert "--workers-per-task 4 --trials-per-gpu 4" in text
    launcher = SlurmLauncher(study, workers=8, trials_per_worker=1, trials_per_node=4, slurm={"trials_per_gpu": 2})
    assert launcher.gpus_per_job == 2
    assert JobWorkers(launcher.worker_argv(), 4, trials_per_gpu=2).trials_per_gpu == 2
    assert launch_main([*argv[:-1], "0", "--sbatch-script", str(out)]) == 2
    assert "slurm.trials_per_gpu: must be a positive integer" in capsys.readouterr().err


def test_worker_refuses_a_bad_trials_per_gpu(capsys):
    assert worker_main(["--trials-per-gpu", "0", "--study", "x.yaml"]) == 2
    assert "--trials-per-gpu must be >= 1, but got 0" in capsys.readouterr().err


def test_memory_fraction_from_the_environment():
    assert GpuMemoryFraction.from_env({}) is None
    assert GpuMemoryFraction.from_env({GPU_MEMORY_FRACTION_ENV: "0.25"}).fraction == 0.25
    for bad in ("half", "0", "1.5"):
        with pytest.raises(ValueError, match=GPU_MEMORY_FRACTION_ENV):
            GpuMemoryFraction.from_env({GPU_MEMORY_FRACTION_ENV: bad})


def test_memory_fraction_is_applied_once_torch_is_loaded():
    """On this CPU machine torch sees no CUDA: applying is a no-op that still marks it done."""
    import sys

    hook = GpuMemoryFraction(0.5)
    if "torch" not in sys.modules:
        assert hook.apply() is False  # nothing imported torch: the hook does not either
        assert "torch" not in sys.modules
    import torch

    assert hook.apply() is True and hook.applied
    if torch.cuda.is_available():
        pytest.skip("the limit on a real GPU is checked by benchmarks/gpu_check.py")
