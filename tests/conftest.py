"""Helpers shared by the tests: run a script in a temporary directory, read what it logged."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# the TensorBoard tags of ppo.py and ppo_atari.py, as in CleanRL
PPO_TAGS = {
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/SPS",
    "charts/learning_rate",
    "losses/value_loss",
    "losses/policy_loss",
    "losses/entropy",
    "losses/old_approx_kl",
    "losses/approx_kl",
    "losses/clipfrac",
    "losses/explained_variance",
    "eval/episodic_return",
}


def run_script(script, *args, cwd, env=None, timeout=900):
    """Run `python <script> <args>` inside `cwd` and return the CompletedProcess (text output)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "SDL_VIDEODRIVER": "dummy"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_ok(proc):
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    )


def assert_clean_error(proc, *needles):
    """Bad input: non-zero exit, no traceback, one line on stderr that names the problem."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


def assert_refused(script, *args, needles, cwd, env=None):
    """Bad input seen from the shell: one line on stderr naming the problem, a non-zero exit, nothing under runs/."""
    assert_clean_error(run_script(script, *args, cwd=cwd, env=env), *needles)
    assert not (Path(cwd) / "runs").exists()


def assert_upload_needs_a_token(script, repo_id, cwd):
    """A Hub upload without a Hugging Face token is refused before any training, naming the command that logs in."""
    no_token = {"HF_HOME": str(Path(cwd) / "hf"), "HF_TOKEN": ""}
    assert_refused(script, "--hf-repo-id", repo_id, needles=("token", "`hf auth login`"), cwd=cwd, env=no_token)


def assert_not_options(script, options, cwd):
    """Fields a script computes are no options: not in --help, and refused on the command line."""
    help_text = run_script(script, "--help", cwd=cwd).stdout
    assert "--env-id" in help_text
    for option in options:
        assert option not in help_text
        proc = run_script(script, option, "1", cwd=cwd)
        assert proc.returncode != 0 and f"Unrecognized options: {option}" in proc.stderr, proc.stderr
    assert not (Path(cwd) / "runs").exists()


def assert_discrete_observations_evaluate(script, *budget, cwd):
    """FrozenLake and Taxi (Discrete observations, toy-text envs that take plain integer actions) train, evaluate
    and package."""
    for env_id in ("FrozenLake-v1", "Taxi-v3"):
        proc = run_script(script, "--env-id", env_id, *budget, "--eval-episodes", 2, "--hub-package", cwd=cwd)
        assert_ok(proc)
        run_dir = only_run_dir(cwd)
        assert read_results(run_dir / "results.json")["n_evaluation_episodes"] == 2
        assert (run_dir / "hub" / "model.pt").is_file()
        shutil.rmtree(run_dir)


def assert_signal_keeps_the_model(script, *budget, cwd, model="model.pt", signum=signal.SIGINT):
    """Ctrl-C (SIGINT) or SIGTERM once training is under way: no traceback, exit 128 + the signal, the model trained so
    far saved with its args.json (--save-model), the line naming the command that evaluates it, which works."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline", "SDL_VIDEODRIVER": "dummy"}
    command = [sys.executable, str(ROOT / script), *map(str, budget), "--save-model"]
    proc = subprocess.Popen(command, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:  # the first progress line: training is under way
        lines.append(line)
        if re.match(r"(step|episode) [\d,]+/[\d,]+ \(", line):
            break
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=300)
    stdout = "".join(lines) + stdout
    assert proc.returncode == 128 + signum, f"exit {proc.returncode}\n{stdout[-2000:]}\n{stderr[-2000:]}"
    assert "Traceback" not in stderr, stderr
    assert f"{signal.Signals(signum).name}: stopping" in stderr, stderr
    run_dir = only_run_dir(cwd)
    assert (run_dir / model).is_file() and (run_dir / "args.json").is_file()
    assert f"evaluate it with: python {script} --load-model runs/{run_dir.name}/{model}" in stdout, stdout
    assert not (run_dir / "results.json").exists()  # no evaluation after a stop
    assert_ok(run_script(script, "--load-model", run_dir / model, "--eval-episodes", 1, cwd=cwd))
    return run_dir


def eval_line(stdout):
    """The line in which a script reports its evaluation."""
    return re.search(r"^evaluation over .*$", stdout, re.M).group(0)


def assert_refused_in_process(module, argv, needle, cwd, monkeypatch):
    """Bad arguments, checked in-process: check_args() exits with one line naming the problem, writing nothing."""
    import tyro

    monkeypatch.chdir(cwd)
    with pytest.raises(SystemExit) as exit_info:
        module.main(module.check_args(tyro.cli(module.Args, args=argv)))
    message = str(exit_info.value)
    assert message.startswith(f"{module.__name__}.py: error: ") and "\n" not in message, message
    assert needle.lower() in message.lower(), message
    assert not (Path(cwd) / "runs").exists()


def only_run_dir(cwd):
    """The single run directory a script wrote under `cwd/runs`."""
    runs = [p for p in (Path(cwd) / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def read_scalars(run_dir):
    """All TensorBoard scalars of a run: {tag: [(step, value), ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_hub_folder(hub, script, env_id, algorithm):
    """A Hub folder the course leaderboard understands: the files, the card's tags and its mean_reward (that of the
    folder's results.json). Returns the card's front matter."""
    hub = Path(hub)
    assert {p.name for p in hub.iterdir()} == {
        "README.md",
        "results.json",
        "replay.mp4",
        "model.pt",
        "args.json",
        script,
    }
    front_matter = (hub / "README.md").read_text().split("---")[1]
    tags = (
        f"{env_id} {algorithm} reinforcement-learning deep-reinforcement-learning custom-implementation deep-rl-course"
    )
    for tag in tags.split():
        assert f"- {tag}\n" in front_matter
    results = read_results(hub / "results.json")
    assert f"value: {results['mean_reward']:.2f} +/- {results['std_reward']:.2f}" in front_matter
    assert "type: reinforcement-learning" in front_matter and f"name: {env_id}" in front_matter
    return front_matter


def assert_bad_models_refused(script, state_dict, args, other_env_id, cwd):
    """--load-model of a truncated file, of weights whose args.json names an env with other spaces, and of weights
    without their args.json: each refused with one clear line."""
    import torch

    run_dir = Path(cwd) / "runs" / "saved"
    run_dir.mkdir(parents=True)
    model = run_dir / "model.pt"
    (run_dir / "args.json").write_text(json.dumps(args))
    torch.save(state_dict, model)
    model.write_bytes(model.read_bytes()[:200])  # truncated
    assert_clean_error(run_script(script, "--load-model", model, cwd=cwd), "cannot load")
    torch.save(state_dict, model)
    (run_dir / "args.json").write_text(json.dumps({**args, "env_id": other_env_id}))
    assert_clean_error(run_script(script, "--load-model", model, cwd=cwd), "cannot load")
    (run_dir / "args.json").unlink()
    assert_clean_error(run_script(script, "--load-model", model, cwd=cwd), "args.json")


def read_results(path):
    return json.loads(Path(path).read_text())


@pytest.fixture
def workdir(tmp_path):
    return tmp_path
