"""The SLURM sample the docs give for `python -m eoslib sweep --executor slurm`: every `--slurm` key
is a parameter of submitit's SlurmExecutor, and the batch script it makes says what the docs say."""

import re
from pathlib import Path

from submitit.slurm import slurm

ROOT = Path(__file__).resolve().parents[1]


def _samples():
    docs = (ROOT / "book" / "rerun.md").read_text() + (ROOT / "src" / "eoslib" / "book" / "sweep.py").read_text()
    return [(k, v) for k, v in re.findall(r"--slurm (\w+)=(\S+?)(?=[`\s\\]|$)", docs) if k != "KEY"]


def test_documented_slurm_keys_are_submitit_parameters():
    keys = {k for k, _ in _samples()}
    assert {"partition", "gpus_per_node", "cpus_per_task", "time"} <= keys
    assert keys <= set(slurm.SlurmExecutor._valid_parameters()), keys - set(slurm.SlurmExecutor._valid_parameters())


def test_the_rerun_sample_makes_the_documented_sbatch_lines():
    text = slurm._make_sbatch_string(command="python -u -m submitit.core._submit x", folder="/tmp/x",
                                     partition="gpu", gpus_per_node=1, cpus_per_task=8, mem="64G",
                                     time=60, array_parallelism=3, map_count=3)
    docs = (ROOT / "book" / "rerun.md").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8",
                 "#SBATCH --mem=64G", "#SBATCH --time=60", "#SBATCH --array=0-2%3"):
        assert line in text and f"`{line}`" in docs, line
