"""What a new user meets in every script: Ctrl-C keeps what was trained, preconditions are checked before any work,
and the progress line tells how far a run is and how long it has left."""

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
from conftest import (
    ROOT,
    assert_clean_error,
    assert_ok,
    assert_refused,
    assert_signal_keeps_the_model,
    eval_line,
    only_run_dir,
    run_script,
)

SCRIPTS = ("ppo.py", "a2c.py", "reinforce.py", "q_learning.py", "ppo_atari.py", "dqn_atari.py")
# budgets far longer than the test: a signal stops each run while it trains
LONG_RUNS = {
    "ppo.py": ("--total-timesteps", 10**8),
    "a2c.py": ("--env-id", "CartPole-v1", "--total-timesteps", 10**8),
    "reinforce.py": ("--total-episodes", 10**7, "--no-stop-when-solved"),
    "q_learning.py": ("--env-id", "Taxi-v3", "--total-episodes", 10**9),
}
PROGRESS = re.compile(
    r"^(?P<unit>step|episode) (?P<done>[\d,]+)/(?P<total>[\d,]+) \((?P<percent>\d+)%\) \| (?P<rate>[\d,]+) \w+/s \| "
    r"(?P<elapsed>[\d:]+) elapsed, (?P<left>.+) left \| mean return \(last 20\) (?P<recent>n/a|-?[\d.]+)$",
    re.M,
)


@pytest.mark.parametrize("script", sorted(LONG_RUNS))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_training_and_keeps_the_model(script, signum, tmp_path):
    model = "qtable.npy" if script == "q_learning.py" else "model.pt"
    assert_signal_keeps_the_model(script, *LONG_RUNS[script], cwd=tmp_path, model=model, signum=signum)


def test_the_progress_line_tells_steps_percentage_speed_elapsed_and_time_left(tmp_path):
    proc = run_script("ppo.py", "--total-timesteps", 2048, "--eval-episodes", 0, cwd=tmp_path)
    assert_ok(proc)
    assert re.search(r"^run folder: runs/CartPole-v1__ppo__1__\d+ ", proc.stdout, re.M), proc.stdout
    last = list(PROGRESS.finditer(proc.stdout))[-1]
    assert (last["unit"], last["done"], last["total"], last["percent"]) == ("step", "2,048", "2,048", "100")
    assert int(last["rate"].replace(",", "")) > 0 and last["left"] == "0:00:00" and last["recent"] != "n/a"


@pytest.mark.parametrize("script", SCRIPTS)
def test_track_without_a_wandb_login_is_refused_before_any_work(script, tmp_path):
    no_login = {"WANDB_MODE": "online", "WANDB_API_KEY": "", "HOME": str(tmp_path), "NETRC": str(tmp_path / "netrc"),
                "WANDB_CONFIG_DIR": str(tmp_path / "wandb")}  # fmt: skip
    assert_refused(script, "--track", needles=("`wandb login`", "WANDB_MODE=offline"), cwd=tmp_path, env=no_login)


@pytest.mark.parametrize("script", [script for script in SCRIPTS if script != "q_learning.py"])  # it always evaluates
def test_a_hub_folder_without_the_evaluation_is_refused_before_any_work(script, tmp_path):
    assert_refused(script, "--hub-package", "--eval-episodes", 0, needles=("--eval-episodes 0",), cwd=tmp_path)


def hub_cache(cache, repo_id, files):
    """A Hugging Face cache holding one snapshot of `repo_id` with `files` (name -> path): what huggingface_hub
    downloads, found offline (HF_HUB_OFFLINE=1)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for name, path in files.items():
        shutil.copy(path, snapshot / name)
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}


@pytest.fixture(scope="module")
def saved_ppo(tmp_path_factory):
    """A ppo.py CartPole model, saved after a short run, with its evaluation line."""
    cwd = tmp_path_factory.mktemp("saved")
    proc = run_script("ppo.py", "--total-timesteps", 2048, "--eval-episodes", 2, "--save-model", cwd=cwd)
    assert_ok(proc)
    return only_run_dir(cwd) / "model.pt", eval_line(proc.stdout)


def test_load_model_takes_a_hub_repo_id(saved_ppo, tmp_path):
    model, trained = saved_ppo
    env = hub_cache(
        tmp_path / "cache", "user/ppo-CartPole-v1", {"model.pt": model, "args.json": model.parent / "args.json"}
    )
    proc = run_script("ppo.py", "--load-model", "user/ppo-CartPole-v1", "--eval-episodes", 2, cwd=tmp_path, env=env)
    assert_ok(proc)
    assert eval_line(proc.stdout) == trained
    proc = run_script("ppo.py", "--load-model", "user/missing", cwd=tmp_path, env=env)
    assert_clean_error(proc, "user/missing", "Hub repo")


def test_a_course_q_learning_model_from_the_hub_evaluates(tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    proc = run_script("q_learning.py", "--hub-package", cwd=train)
    assert_ok(proc)
    pkl = only_run_dir(train) / "hub" / "q-learning.pkl"
    env = hub_cache(tmp_path / "cache", "user/q-FrozenLake-v1-4x4-noSlippery", {"q-learning.pkl": pkl})
    loaded = run_script("q_learning.py", "--load-model", "user/q-FrozenLake-v1-4x4-noSlippery", cwd=tmp_path, env=env)
    assert_ok(loaded)
    assert eval_line(loaded.stdout) == eval_line(proc.stdout)


def test_what_is_no_model_of_the_script_is_refused_naming_the_fix(saved_ppo, tmp_path):
    model, _ = saved_ppo
    proc = run_script("a2c.py", "--load-model", model, cwd=tmp_path)
    assert_clean_error(proc, f"is a model of ppo.py: evaluate it with python ppo.py --load-model {model}")
    assert_clean_error(run_script("ppo.py", "--load-model", model.parent, cwd=tmp_path), "is a folder")
    assert_clean_error(run_script("ppo.py", "--load-model", model.parent / "args.json", cwd=tmp_path), "no model file")
    empty = tmp_path / "empty" / "model.pt"
    empty.parent.mkdir()
    empty.touch()
    assert_clean_error(run_script("ppo.py", "--load-model", empty, cwd=tmp_path), "is empty")


@pytest.mark.parametrize("script", sorted(LONG_RUNS))
def test_render_without_a_display_says_so_in_one_line(script, tmp_path):
    no_display = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}
    needles = ("--render needs a display", "--capture-video")
    assert_refused(script, "--render", "--eval-episodes", 1, needles=needles, cwd=tmp_path, env=no_display)
    needles = ("--eval-episodes 0 plays none", "give 1 or more")
    needles = ("--eval-episodes must be positive",) if script == "q_learning.py" else needles  # it always evaluates
    assert_refused(script, "--render", "--eval-episodes", 0, needles=needles, cwd=tmp_path, env={"DISPLAY": ":0"})


@pytest.mark.parametrize(
    "script, env_id, needles",
    [
        ("ppo.py", "ALE/Breakout-v5", ("is an Atari game", "ppo_atari.py")),
        ("reinforce.py", "BreakoutNoFrameskip-v4", ("is an Atari game", "dqn_atari.py")),
        ("ppo_atari.py", "Breakout-v5", ("did you mean ALE/Breakout-v5",)),
        ("dqn_atari.py", "SpaceInvaders-v5", ("did you mean ALE/SpaceInvaders-v5",)),
    ],
)
def test_an_env_id_for_another_script_or_namespace_names_the_right_one(script, env_id, needles, tmp_path):
    assert_refused(script, "--env-id", env_id, needles=needles, cwd=tmp_path)


@pytest.mark.parametrize("script", ["a2c.py", "ppo.py"])
def test_a_run_prints_its_progress_and_nothing_else(script, tmp_path):
    """PandaReach with videos, where pybullet, SDL and RecordVideo would each print something that looks like a fault:
    stderr stays empty and stdout holds the run's own lines only."""
    env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "XDG_RUNTIME_DIR")}
    command = [sys.executable, ROOT / script, "--env-id", "PandaReachDense-v3", "--total-timesteps", 80,
               "--num-envs", 2, "--num-steps", 20, "--capture-video", "--eval-episodes", 1]  # fmt: skip
    proc = subprocess.run(
        list(map(str, command)), cwd=tmp_path, env=env | {"WANDB_MODE": "offline"}, capture_output=True, text=True
    )
    assert_ok(proc)
    assert proc.stderr == ""
    for line in proc.stdout.splitlines():
        assert line.startswith(("run folder: ", "step ", "evaluation over ")), proc.stdout
    assert (only_run_dir(tmp_path) / "videos" / "eval" / "eval-episode-0.mp4").is_file()
