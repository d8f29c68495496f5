"""ppo_atari_multigpu.py: two processes under torchrun (gloo on CPU) train one agent, count the steps of both, and
resume from rank 0's checkpoint, also after a signal stopped them; a plain `python` run is refused with the torchrun
command."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, assert_ok, assert_refused, only_run_dir, read_scalars

# gloo on CPU processes, also where a GPU is
SMALL = ("--num-envs", 4, "--num-steps", 32, "--num-minibatches", 2, "--update-epochs", 2, "--torch-threads", 1,
         "--no-cuda")  # fmt: skip
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", 2]


def torchrun(*args, cwd):
    return subprocess.run(
        list(map(str, [*TORCHRUN, *args])),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
    )


def test_two_processes_train_one_agent_and_resume(tmp_path):
    """--nproc-per-node 2: each process steps 2 of the 4 envs; after every update both hold the same parameters (their
    gradients are averaged), the logged steps count both processes' envs, and both resume from rank 0's checkpoint."""
    probe = ROOT / "tests" / "torchrun_probe.py"
    run = (*SMALL, "--total-timesteps", 384, "--eval-episodes", 0, "--save-model")
    proc = torchrun(probe, tmp_path, *run, "--checkpoint-every", 384, cwd=tmp_path)
    assert_ok(proc)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3 * 2 * 2  # iterations x epochs x minibatches
    assert all(check["equal"] for rank in ranks for check in rank)
    for check0, check1 in zip(*ranks):  # the same averaged gradient, not two different ones
        assert check0["grad_sum"] == pytest.approx(check1["grad_sum"], rel=1e-6)
    run_dir = only_run_dir(tmp_path)  # rank 0 alone logs and saves
    assert [step for step, _ in read_scalars(run_dir)["charts/SPS"]] == [128, 256, 384]
    args = json.loads((run_dir / "args.json").read_text())
    assert (args["world_size"], args["num_envs"], args["local_num_envs"], args["batch_size"]) == (2, 4, 2, 128)

    # both processes resume from rank 0's checkpoint (here at the end of the run: nothing is left to train)
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert (checkpoint["global_step"], checkpoint["args"]["world_size"]) == (384, 2)
    script = ROOT / "ppo_atari_multigpu.py"
    proc = torchrun(script, "--resume", run_dir / "checkpoint.pt", cwd=tmp_path)
    assert_ok(proc)
    assert f"resuming {run_dir.name} at step 384 of 384" in proc.stdout


def test_bf16_under_two_processes_keeps_one_agent(tmp_path):
    """--bf16 (the CNN under bf16 autocast): after every update both processes hold the same parameters."""
    probe = ROOT / "tests" / "torchrun_probe.py"
    proc = torchrun(
        probe, tmp_path, *SMALL, "--total-timesteps", 128, "--eval-episodes", 0, "--bf16", "--save-model", cwd=tmp_path
    )
    assert_ok(proc)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 2 * 2 and all(check["equal"] for rank in ranks for check in rank)
    for check0, check1 in zip(*ranks):
        assert check0["grad_sum"] == pytest.approx(check1["grad_sum"], rel=1e-6)
    assert json.loads((only_run_dir(tmp_path) / "args.json").read_text())["bf16"] is True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_torchrun_keeps_the_training_and_the_run_resumes(tmp_path, signum):
    """SIGTERM to torchrun (a scheduler ending the job) or SIGINT (Ctrl-C in its terminal): torchrun passes it on to
    each process, all stop after the same iteration, rank 0 writes the checkpoint and the model and names the command
    that resumes, and no traceback of the script's is printed; the resumed run goes on to the total."""
    total = 128 * 30
    run = (*SMALL, "--total-timesteps", total, "--eval-episodes", 0, "--save-model")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = list(map(str, [*TORCHRUN, ROOT / "ppo_atari_multigpu.py", *run]))
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:  # the first progress line: training is under way
        lines.append(line)
        if line.startswith("step "):
            break
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    stdout = "".join(lines) + stdout
    assert proc.returncode != 0, stdout
    assert stderr.count(f"{signal.Signals(signum).name}: stopping after this iteration") == 2, stderr  # each process
    assert 'ppo_atari_multigpu.py", line' not in stderr, stderr  # torchrun reports the signal; the script does not fail
    run_dir = only_run_dir(tmp_path)
    assert (run_dir / "checkpoint.pt").is_file(), f"{stdout}\n{stderr}"
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    stop_step = checkpoint["global_step"]
    assert 128 <= stop_step < total and stop_step % 128 == 0
    resume = f"continue with: torchrun <its options> ppo_atari_multigpu.py --resume runs/{run_dir.name}/checkpoint.pt"
    assert resume in stdout, stdout
    assert f"stopped by {signal.Signals(signum).name}; evaluate it with" in stdout and (run_dir / "model.pt").is_file()

    proc = torchrun(ROOT / "ppo_atari_multigpu.py", "--resume", run_dir / "checkpoint.pt", cwd=tmp_path)
    assert_ok(proc)
    assert f"resuming {run_dir.name} at step {stop_step:,} of {total:,}" in proc.stdout
    assert [step for step, _ in read_scalars(run_dir)["charts/SPS"]] == list(range(128, total + 1, 128))


def test_plain_python_is_refused_with_the_torchrun_command(tmp_path):
    assert_refused("ppo_atari_multigpu.py", needles=("torchrun --standalone --nproc-per-node",), cwd=tmp_path)


def test_more_processes_than_gpus_is_refused(tmp_path):
    """torchrun starting 2 processes on a machine with one GPU: refused before any work, naming --nproc-per-node."""
    one_gpu = (
        "import runpy, sys, torch; torch.cuda.device_count = lambda: 1; "
        f"sys.argv = ['ppo_atari_multigpu.py']; runpy.run_path({str(ROOT / 'ppo_atari_multigpu.py')!r}, "
        "run_name='__main__')"
    )
    env = {**os.environ, "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    proc = subprocess.run([sys.executable, "-c", one_gpu], cwd=tmp_path, capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "ppo_atari_multigpu.py: error: 2 processes on this machine and 1 GPU(s): give torchrun --nproc-per-node 1"
    ]
    assert not (tmp_path / "runs").exists()
