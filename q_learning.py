"""Tabular Q-learning: Hugging Face Deep RL Course, unit 2.

The agent keeps a table Q(s, a), acts epsilon-greedily with an epsilon that decays exponentially over the episodes, and
after every step moves Q(s, a) towards the TD target, r alone where s' is terminal (a time limit still bootstraps):
    Q(s, a) <- Q(s, a) + lr [r + gamma max_a' Q(s', a') - Q(s, a)]
The greedy policy argmax_a Q(s, a) is evaluated as the course does: 100 greedy episodes, Taxi on the course's seeds.
Paper: Watkins & Dayan 1992, "Q-learning" (https://doi.org/10.1007/BF00992698); Sutton & Barto, section 6.5.
Defaults are the course notebook's: FrozenLake-v1 4x4 not slippery, 10,000 episodes; Taxi-v3 (run as Taxi-v4, the
same task), 25,000 episodes. Any gymnasium env with Discrete observations and actions works, e.g. CliffWalking-v1.

Run:
    python q_learning.py                                      # FrozenLake-v1, 4x4, not slippery
    python q_learning.py --env-id Taxi-v3 --save-model        # the Q-table lands in runs/<run>/qtable.npy
    python q_learning.py --load-model runs/<run>/qtable.npy --capture-video       # evaluate it, record a replay
    python q_learning.py --env-id Taxi-v3 --hf-repo-id <user>/q-Taxi-v3           # train, evaluate, upload
    python q_learning.py --help
What it reaches and how fast: README.md and results/README.md.
"""

import datetime
import json
import math
import os
import pickle
import random
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import tyro
from gymnasium.envs.toy_text import CliffWalkingEnv, FrozenLakeEnv, TaxiEnv
from torch.utils.tensorboard import SummaryWriter

SCRIPT = Path(__file__).resolve()
MODEL_FILES = ("qtable.npy", "q-learning.pkl")  # what --load-model finds in a Hub repo, in this order
PASS_MARKS = {"Taxi-v3": 4.5}  # the result (mean - std) course unit 2 asks for


@dataclass
class Args:
    exp_name: str = SCRIPT.stem
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (exploration, environment, evaluation)"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "deep-rl-course"
    """the wandb's project name"""
    wandb_entity: str | None = None
    """the entity (team) of wandb's project"""
    capture_video: bool = False
    """record a replay of the first evaluation episode (runs/<run>/videos/eval/)"""
    render: bool = False
    """show the evaluation episodes in a window (needs a display)"""
    save_model: bool = False
    """save the Q-table (runs/<run>/qtable.npy) and the args (args.json next to it)"""
    load_model: str | None = None
    """path of a saved qtable.npy (its args.json beside it) or of a course q-learning.pkl: skip training, evaluate it"""
    eval_episodes: int = 100
    """evaluation episodes, greedy (the course's number)"""
    hub_package: bool = False
    """build the Hugging Face Hub folder runs/<run>/hub/ (model card, q-learning.pkl, replay.mp4, ...)"""
    hf_repo_id: str | None = None
    """upload the Hub folder to this model repo, e.g. `user/q-Taxi-v3` (implies --hub-package)"""

    # Algorithm specific arguments: the course notebook's (None: its value for the env)
    env_id: str = "FrozenLake-v1"
    """the id of the environment: any gymnasium env with Discrete observations and actions"""
    map_name: str | None = None
    """FrozenLake's map, 4x4 or 8x8 (None: the id's own, 4x4 for FrozenLake-v1)"""
    is_slippery: bool = False
    """FrozenLake: slippery ice (the course trains without)"""
    total_episodes: int | None = None
    """training episodes (None: the course's 10000; Taxi 25000)"""
    learning_rate: float = 0.7
    """the learning rate lr of the update"""
    gamma: float = 0.95
    """the discount factor gamma"""
    max_steps: int = 99
    """step limit of an episode, in training and evaluation"""
    max_epsilon: float = 1.0
    """exploration probability at the start"""
    min_epsilon: float = 0.05
    """exploration probability it decays to"""
    decay_rate: float | None = None
    """exponential decay rate of epsilon per episode (None: the course's 0.0005; Taxi 0.005)"""

    # computed from the others, not options
    gym_id: tyro.conf.Suppress[str] = ""
    """the gymnasium id that runs (env_id, or the current version of a retired env_id)"""


# The course notebook's training length and epsilon decay rate: FrozenLake's for every env but Taxi.
COURSE_SCHEDULES = {"FrozenLake": (10_000, 0.0005), "Taxi": (25_000, 0.005)}
# The seeds the course evaluates Taxi on, in this order (duplicates included); other envs on none.
COURSE_EVAL_SEEDS = {
    "Taxi-v4": [
        16, 54, 165, 177, 191, 191, 120, 80, 149, 178, 48, 38, 6, 125, 174, 73, 50, 172, 100, 148, 146, 6, 25, 40, 68,
        148, 49, 167, 9, 97, 164, 176, 61, 7, 54, 55, 161, 131, 184, 51, 170, 12, 120, 113, 95, 126, 51, 98, 36, 135,
        54, 82, 45, 95, 89, 59, 95, 124, 9, 113, 58, 85, 51, 134, 121, 169, 105, 21, 30, 11, 50, 65, 12, 43, 82,
        145, 152, 97, 106, 55, 31, 85, 38, 112, 102, 168, 123, 97, 21, 83, 158, 26, 80, 63, 5, 81, 32, 11, 28, 148,
    ]
}  # fmt: skip
# Course ids gymnasium retired, and what runs instead (the same task with default arguments).
RETIRED_ENV_IDS = {"Taxi-v3": "Taxi-v4"}
# charts/episodic_* are means over this many windows of consecutive episodes rather than one point per episode:
# writing a scalar costs more than a training episode (benchmarks/bench_q_learning.py --ablation)
LOG_POINTS = 250


def fail(message: str):
    """Bad input: one line on stderr that names the fix, a non-zero exit, no traceback."""
    sys.exit(f"{SCRIPT.name}: error: {message}")


def describe(error: Exception) -> str:
    """An exception in one line."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def check_render(args: Args):
    """--render opens a window, which needs a display (Linux names it in DISPLAY or WAYLAND_DISPLAY)."""
    if not args.render:
        return
    if args.capture_video:
        fail("--render shows the evaluation in a window and --capture-video records it: give one of them")
    if args.eval_episodes == 0:
        fail("--render shows the evaluation in a window, and --eval-episodes 0 plays none: give 1 or more")
    if sys.platform == "linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        fail("--render needs a display and none is set (DISPLAY is empty): record the agent with --capture-video")


def check_accounts(args: Args):
    """What --hf-repo-id and --track need (a repo id of the form `user/name` and a Hugging Face token; a wandb login),
    checked before any work starts."""
    if args.hf_repo_id is not None:
        from huggingface_hub import get_token

        if args.hf_repo_id.count("/") != 1:
            fail(f"--hf-repo-id must look like `username/repo-name`, got {args.hf_repo_id!r}")
        if not get_token():
            fail("--hf-repo-id needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
        args.hub_package = True
    if args.track and os.environ.get("WANDB_MODE") not in ("offline", "disabled"):
        import wandb

        if not wandb.login(verify=False, prompt=False):
            fail("--track needs a wandb login: run `wandb login`, or set WANDB_MODE=offline to keep the logs local")
    if args.hub_package and args.eval_episodes == 0:
        fail("--hub-package and --hf-repo-id need the evaluation (the model card's score): drop --eval-episodes 0")


def check_args(args: Args) -> Args:
    """Fill in the course's defaults for the env and check every input before any work starts."""
    args.gym_id = RETIRED_ENV_IDS.get(args.env_id, args.env_id)
    try:
        spec = gym.spec(args.gym_id)
    except gym.error.Error as error:  # NameNotFound, VersionNotFound, DeprecatedEnv, ...
        fail(f"unknown env id {args.env_id!r} ({describe(error)}); try FrozenLake-v1, Taxi-v3 or CliffWalking-v1")
    if args.gym_id != args.env_id:
        print(f"note: gymnasium {gym.__version__} retired {args.env_id}; running {args.gym_id}, the same task")
    total_episodes, decay_rate = COURSE_SCHEDULES.get(spec.name, COURSE_SCHEDULES["FrozenLake"])
    args.total_episodes = total_episodes if args.total_episodes is None else args.total_episodes
    args.decay_rate = decay_rate if args.decay_rate is None else args.decay_rate
    for field in ("total_episodes", "eval_episodes", "max_steps", "learning_rate"):
        if getattr(args, field) <= 0:
            fail(f"--{field.replace('_', '-')} must be positive, got {getattr(args, field)}")
    if not 0 <= args.gamma <= 1:
        fail(f"--gamma must be in [0, 1], got {args.gamma}")
    if not 0 <= args.min_epsilon <= args.max_epsilon <= 1:
        fail(f"need 0 <= --min-epsilon <= --max-epsilon <= 1, got {args.min_epsilon} and {args.max_epsilon}")
    if args.decay_rate < 0:
        fail(f"--decay-rate must be >= 0, got {args.decay_rate}")
    frozen_lake = spec.name.startswith("FrozenLake")
    if not frozen_lake and (args.map_name or args.is_slippery):
        fail(f"--map-name and --is-slippery are FrozenLake options; drop them for {args.env_id}")
    if frozen_lake:
        args.map_name = args.map_name or spec.kwargs.get("map_name")
    try:
        env = make_env(args)
    except Exception as error:
        with_map = f" with --map-name {args.map_name}" if frozen_lake else ""
        fail(f"cannot make {args.gym_id}{with_map} ({describe(error)})")
    for name, space in (("observation", env.observation_space), ("action", env.action_space)):
        if not isinstance(space, gym.spaces.Discrete) or space.start != 0:
            fail(f"{args.env_id} has a {space} {name} space; tabular Q-learning needs Discrete spaces counted from 0")
    check_render(args)
    check_accounts(args)
    return args


def make_env(args: Args, video_folder: Path | None = None, render: bool = False) -> gym.Env:
    """The run's env (FrozenLake with its map and ice); with a video folder, its first episode is recorded; with
    render, every episode is shown in a window."""
    kwargs = dict(map_name=args.map_name, is_slippery=args.is_slippery) if args.map_name else {}  # set for FrozenLake
    render_mode = "rgb_array" if video_folder else "human" if render else None
    if video_folder:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames drawn off-screen: SDL needs no display
    env = gym.make(args.gym_id, render_mode=render_mode, **kwargs)
    if video_folder:
        env = gym.wrappers.RecordVideo(env, str(video_folder), episode_trigger=lambda e: e == 0, name_prefix="eval")
    return env


class TableEnv:
    """FrozenLake, Taxi or CliffWalking stepped straight from the transition table P[s][a] = [(p, s', r, terminated)]
    and initial-state distribution they keep: the same MDP, its random stream seeded by the env's seeded generator, but
    none of env.step's numpy calls and info dicts, which cost more than the rest of a training step
    (benchmarks/bench_q_learning.py --ablation). No time limit: the training loop keeps its own."""

    @staticmethod
    def supports(env: gym.Env) -> bool:
        fickle = getattr(env.unwrapped, "fickle_passenger", False)  # Taxi's fickle passenger acts outside the table
        return isinstance(env.unwrapped, (FrozenLakeEnv, TaxiEnv, CliffWalkingEnv)) and not fickle

    def __init__(self, env: gym.Env):
        base = env.unwrapped
        self.rng = random.Random(int(base.np_random.integers(2**63)))
        self.starts = np.flatnonzero(base.initial_state_distrib).tolist()
        self.start_cum_weights = np.cumsum(base.initial_state_distrib[self.starts]).tolist()
        n_states, n_actions = base.observation_space.n, base.action_space.n
        self.P = [
            [[(p, int(s_next), float(r), bool(t)) for p, s_next, r, t in base.P[s][a]] for a in range(n_actions)]
            for s in range(n_states)
        ]

    def reset(self):
        self.s = self.rng.choices(self.starts, cum_weights=self.start_cum_weights)[0]
        return self.s, {}

    def step(self, action: int):
        u = self.rng.random()  # inverse-CDF sampling of s' from P[s][a]
        for p, s_next, r, terminated in self.P[self.s][action]:
            u -= p
            if u < 0:
                break
        self.s = s_next
        return s_next, r, terminated, False, {}


# ALGO LOGIC: the Q-table, epsilon-greedy exploration, the Q-learning update
def initialize_q_table(n_states: int, n_actions: int) -> list[list[float]]:
    # rows of Python floats, not a numpy array: indexing and max() on a few floats skip numpy's per-call cost, which
    # would dominate the training loop (benchmarks/bench_q_learning.py --ablation)
    return [[0.0] * n_actions for _ in range(n_states)]  # Q(s, a) = 0 for every state and action


def epsilon(episode: int, min_epsilon: float, max_epsilon: float, decay_rate: float) -> float:
    # epsilon = min_epsilon + (max_epsilon - min_epsilon) * exp(-decay_rate * episode)
    return min_epsilon + (max_epsilon - min_epsilon) * math.exp(-decay_rate * episode)


def greedy_action(q_row: list[float]) -> int:
    # a = argmax_a Q(s, a); ties go to the lowest action, as np.argmax
    return q_row.index(max(q_row))


def q_update(q, s: int, a: int, r: float, s_next: int, terminated: bool, learning_rate: float, gamma: float):
    """One Q-learning update: bootstraps from s' unless s' is terminal (a time limit does not end the MDP)."""
    td_target = r if terminated else r + gamma * max(q[s_next])  # r + gamma max_a' Q(s', a'); r at a terminal s'
    q[s][a] += learning_rate * (td_target - q[s][a])  # Q(s, a) <- Q(s, a) + lr [r + gamma max_a' Q(s', a') - Q(s, a)]


def run_episode(q, env, eps: float, max_steps: int, learning_rate: float, gamma: float, rng: random.Random):
    """One training episode in a TableEnv or gymnasium env, epsilon-greedy, updating Q every step: return, length."""
    n_actions = len(q[0])
    s, _ = env.reset()
    episodic_return = 0.0
    for length in range(1, max_steps + 1):
        # epsilon-greedy: exploit with probability 1 - epsilon, else a uniformly random action
        a = greedy_action(q[s]) if rng.random() > eps else rng.randrange(n_actions)
        s_next, r, terminated, truncated, _ = env.step(a)
        q_update(q, s, a, r, s_next, terminated, learning_rate, gamma)
        episodic_return += r
        if terminated or truncated:
            break
        s = s_next
    return episodic_return, length


def evaluate(env: gym.Env, q, n_episodes: int, max_steps: int, seeds: list[int]) -> list[float]:
    """The course's evaluation: greedy actions, at most max_steps steps an episode, episode i reset with seeds[i]
    while there are seeds (after that the env's random stream goes on). Returns the episodes' returns."""
    returns = []
    for episode in range(n_episodes):
        s, _ = env.reset(seed=seeds[episode] if episode < len(seeds) else None)
        episodic_return = 0.0
        for _ in range(max_steps):
            s, r, terminated, truncated, _ = env.step(greedy_action(q[s]))
            episodic_return += r
            if terminated or truncated:
                break
        returns.append(episodic_return)
    return returns


def local_model(path: str) -> str:
    """--load-model takes a saved model file, or the id of a Hub repo (`user/name`) that holds one: the repo's model
    and args.json are downloaded (huggingface_hub caches them) and the model's path returned."""
    hub_id = path.count("/") == 1 and not path.startswith(".") and Path(path).suffix not in (".pt", ".npy", ".pkl")
    if Path(path).exists() or not hub_id:
        return path
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(path, allow_patterns=[*MODEL_FILES, "args.json"]))
    except Exception as error:
        fail(f"{path} is no file here, nor a Hub repo that can be downloaded ({describe(error)})")
    found = [folder / name for name in MODEL_FILES if (folder / name).is_file()]
    if not found:
        fail(f"the Hub repo {path} holds no {' or '.join(MODEL_FILES)}: it is no model of {SCRIPT.name}")
    return str(found[0])


def read_saved_args(path: str) -> Args:
    """The arguments a saved model was trained with, from the args.json beside it; one clear line for a path that
    holds no model of this script."""
    model_path = Path(path)
    args_path = model_path.with_name("args.json")
    if model_path.is_dir():
        fail(f"{path} is a folder: give the path of the model file in it")
    if not model_path.is_file():
        fail(f"model file {path} does not exist")
    if model_path.stat().st_size == 0:
        fail(f"model file {path} is empty")
    if not args_path.is_file():
        fail(f"{args_path} is missing: a saved model needs the args.json written beside it")
    try:
        saved = json.loads(args_path.read_text())
        script = saved.pop("script", SCRIPT.name)  # which script wrote it
        args = Args(**{k: v for k, v in saved.items() if k in Args.__dataclass_fields__})
    except (ValueError, TypeError, AttributeError) as error:
        fail(f"{args_path} is not a valid args file ({describe(error)})")
    if script != SCRIPT.name:
        fail(f"{path} is a model of {script}: evaluate it with python {script} --load-model {path}")
    return args


class CourseUnpickler(pickle.Unpickler):
    """Reads the course's q-learning.pkl without running any code from it: a pickle may call any function it names,
    so only the names that rebuild numpy arrays are admitted (containers, numbers and strings need none)."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        module = module.replace("numpy.core.", "numpy._core.")  # the module's name before numpy 2
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which is not a plain type")
        return super().find_class(module, name)


def read_course_model(path: str) -> tuple[np.ndarray, Args]:
    """A model in the course's own format (its Q-table and the arguments it names), as its push_to_hub writes it."""
    if not Path(path).is_file():
        fail(f"model file {path} does not exist")
    try:
        with open(path, "rb") as file:
            model = CourseUnpickler(file).load()
        args = Args(
            env_id=model["env_id"],
            max_steps=int(model["max_steps"]),
            total_episodes=int(model["n_training_episodes"]),
            eval_episodes=int(model["n_eval_episodes"]),
            learning_rate=float(model["learning_rate"]),
            gamma=float(model["gamma"]),
            max_epsilon=float(model["max_epsilon"]),
            min_epsilon=float(model["min_epsilon"]),
            decay_rate=float(model["decay_rate"]),
        )
        if "map_name" in model:  # FrozenLake's map and ice
            # the course writes "slippery" only where the ice is not slippery (FrozenLake's default is)
            args.map_name, args.is_slippery = str(model["map_name"]), bool(model.get("slippery", True))
        return np.asarray(model["qtable"]), args
    except Exception as error:
        fail(f"cannot read {path} as a course q-learning.pkl ({describe(error)})")


def load_agent(path: str) -> tuple[np.ndarray, Args]:
    """A saved Q-table (qtable.npy, or the course's q-learning.pkl) and the arguments it was trained with; one clear
    line for anything missing or corrupt."""
    qtable, saved = read_course_model(path) if path.endswith(".pkl") else (None, read_saved_args(path))
    saved.gym_id = RETIRED_ENV_IDS.get(saved.env_id, saved.env_id)
    try:
        env = make_env(saved)
        shape = (env.observation_space.n, env.action_space.n)
        env.close()
        if qtable is None:
            qtable = np.load(path, allow_pickle=False)  # never unpickles what it loads
        if qtable.shape != shape or qtable.dtype.kind != "f":
            raise ValueError(f"a {qtable.dtype} array of shape {qtable.shape}; the env needs floats of shape {shape}")
    except Exception as error:
        fail(f"cannot load {path} as a {SCRIPT.name} model for {saved.env_id} ({describe(error)})")
    return qtable, saved


def model_card(args: Args, mean: float, std: float) -> str:
    env_name = args.env_id  # the course's id, which its leaderboard reads, even where a newer version ran
    if args.map_name is not None:  # FrozenLake's map and ice are part of the name
        env_name += f"-{args.map_name}" + ("" if args.is_slippery else "-no_slippery")
    model_name = args.hf_repo_id.split("/")[1] if args.hf_repo_id else f"q-{env_name}"
    seeds = " on the course's seeds" if COURSE_EVAL_SEEDS.get(args.gym_id, []) else ""
    return f"""---
tags:
- {env_name}
- q-learning
- reinforcement-learning
- deep-reinforcement-learning
- custom-implementation
- deep-rl-course
model-index:
- name: {model_name}
  results:
  - task:
      type: reinforcement-learning
      name: reinforcement-learning
    dataset:
      name: {env_name}
      type: {env_name}
    metrics:
    - type: mean_reward
      value: {mean:.2f} +/- {std:.2f}
      name: mean_reward
      verified: false
---

# **Q-Learning** agent playing **{env_name}**

A tabular Q-learning agent of the Hugging Face Deep RL Course (unit 2), trained on `{args.gym_id}` by `{SCRIPT.name}`
(in this repo), evaluated over {args.eval_episodes} greedy episodes{seeds}. Its hyperparameters are in `args.json`;
`python {SCRIPT.name} --load-model qtable.npy` evaluates it again, unpickling nothing.

## Usage

```python
model = load_from_hub(repo_id="{args.hf_repo_id or f"<user>/{model_name}"}", filename="q-learning.pkl")

# Don't forget to check if you need to add additional attributes (is_slippery=False etc)
env = gym.make(model["env_id"])
```
"""


def write_course_model(path: Path, args: Args, qtable: np.ndarray):
    """The course's own format, read by its load_from_hub (pickle.load): its keys, the table as a numpy array."""
    model = dict(
        env_id=args.env_id,
        max_steps=args.max_steps,
        n_training_episodes=args.total_episodes,
        n_eval_episodes=args.eval_episodes,
        eval_seed=COURSE_EVAL_SEEDS.get(args.gym_id, []),
        learning_rate=args.learning_rate,
        gamma=args.gamma,
        max_epsilon=args.max_epsilon,
        min_epsilon=args.min_epsilon,
        decay_rate=args.decay_rate,
        qtable=qtable,
    )
    if args.map_name is not None:
        model |= dict(map_name=args.map_name, slippery=args.is_slippery)
    path.write_bytes(pickle.dumps(model))


def package_for_hub(folder: Path, args: Args, results: dict, model_path: Path, video_folder: Path | None):
    """The folder the course leaderboard understands; built without network."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(model_card(args, results["mean_reward"], results["std_reward"]))
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    (folder / "args.json").write_text(json.dumps(vars(args) | dict(script=SCRIPT.name), indent=2))
    shutil.copy(model_path, folder / model_path.name)
    write_course_model(folder / "q-learning.pkl", args, np.load(model_path, allow_pickle=False))
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    videos = sorted(video_folder.glob("eval-episode-0.mp4")) if video_folder else []
    if videos:
        shutil.copy(videos[-1], folder / "replay.mp4")
    return folder


def push_to_hub(folder: Path, repo_id: str):
    from huggingface_hub import HfApi

    try:
        api = HfApi()
        api.create_repo(repo_id, exist_ok=True)
        message = f"Upload an agent trained by {SCRIPT.name}"
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=message)
    except Exception as error:
        fail(f"upload to {repo_id} failed ({describe(error)}); the folder is kept at {folder}")
    print(f"uploaded {folder} to https://huggingface.co/{repo_id}")


def report(returns: list[float], env_id: str) -> tuple[float, float]:
    """The evaluation line every script prints: mean, std and the course's result, mean - std, against the pass mark
    of the course's unit where it has one for this env."""
    mean, std = float(np.mean(returns)), float(np.std(returns))
    line = f"mean_reward={mean:.2f} std_reward={std:.2f} result={mean - std:.2f}"
    if env_id in PASS_MARKS:
        line += f" ({'passes' if mean - std >= PASS_MARKS[env_id] else 'below'} the pass mark {PASS_MARKS[env_id]:g})"
    print(f"evaluation over {len(returns)} episodes: {line}")
    return mean, std


def finish(qtable: np.ndarray, args: Args, run_dir: Path, writer: SummaryWriter, stopped: int = 0):
    """Save, evaluate, package and upload, as the arguments ask. A run that a signal stopped (`stopped`) keeps its
    model (with --save-model) and ends without the evaluation."""
    model_path = run_dir / "qtable.npy"
    if args.save_model or args.hub_package:
        np.save(model_path, qtable)
        (run_dir / "args.json").write_text(json.dumps(vars(args) | dict(script=SCRIPT.name), indent=2))
        print(f"model saved to {model_path}")
    if stopped:
        writer.close()
        kept = f"evaluate it with: python {SCRIPT.name} --load-model {model_path}" if model_path.exists() else ""
        print(f"stopped by {signal.Signals(stopped).name}; {kept or 'no model kept (--save-model keeps it)'}")
        sys.exit(128 + stopped)
    video_folder = run_dir / "videos" / "eval" if args.capture_video or args.hub_package else None
    env = make_env(args, video_folder, args.render)
    seeds = COURSE_EVAL_SEEDS.get(args.gym_id, []) or [args.seed]
    returns = evaluate(env, qtable.tolist(), args.eval_episodes, args.max_steps, seeds)
    env.close()  # writes the video
    for idx, episodic_return in enumerate(returns):
        writer.add_scalar("eval/episodic_return", episodic_return, idx)
    mean, std = report(returns, args.env_id)
    results = dict(
        env_id=args.env_id,
        mean_reward=mean,
        std_reward=std,
        n_evaluation_episodes=len(returns),
        eval_datetime=datetime.datetime.now().isoformat(),
    )
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    if args.hub_package:
        folder = package_for_hub(run_dir / "hub", args, results, model_path, video_folder)
        print(f"Hub folder written to {folder}")
        if args.hf_repo_id:
            push_to_hub(folder, args.hf_repo_id)


def start_run(args: Args) -> tuple[str, Path, SummaryWriter]:
    """The run's name and folder, its TensorBoard writer with the hyperparameters, and wandb with --track."""
    run_name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    if args.track:
        import wandb

        wandb.init(
            project=args.wandb_project_name,
            entity=args.wandb_entity,
            sync_tensorboard=True,
            config=vars(args),
            name=run_name,
            save_code=True,
        )
    writer = SummaryWriter(f"runs/{run_name}")
    table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    print(f"run folder: runs/{run_name} (watch it with: tensorboard --logdir runs)")
    return run_name, Path("runs") / run_name, writer


class StopSignal:
    """SIGINT (Ctrl-C) or SIGTERM during training: training stops after the current iteration and the run ends as a
    finished one does, without the evaluation, so that what was trained is kept. A second signal stops at once."""

    def __init__(self):
        self.signum = 0
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handle)

    def handle(self, signum, frame):
        if self.signum:
            sys.exit(128 + signum)
        self.signum = signum
        print(f"{signal.Signals(signum).name}: stopping after this iteration", file=sys.stderr, flush=True)

    def end(self) -> int:
        """Training is over: signals act as usual again. Returns the signal that stopped it, or 0."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        return self.signum


class Progress:
    """A line on the terminal every ~10 s and at the end: how far the run is, its speed over the last interval, the
    time it has run and, at that speed, has left, and the mean return of the last 20 episodes."""

    def __init__(self, total: int, done: int = 0, unit: str = "step"):
        self.total, self.unit, self.returns = total, unit, deque(maxlen=20)
        self.start = self.last_time = time.time()
        self.last_done, self.lines = done, 0

    def show(self, done: int, final: bool = False):
        now = time.time()
        if now - self.last_time < (10 if self.lines else 1) and not final:  # the first line after ~1 s
            return
        rate = (done - self.last_done) / max(now - self.last_time, 1e-6)
        left = datetime.timedelta(seconds=round((self.total - done) / rate if rate > 0 and not final else 0))
        elapsed = datetime.timedelta(seconds=round(now - self.start))
        recent = f"{np.mean(self.returns):.2f}" if self.returns else "n/a"
        print(
            f"{self.unit} {done:,}/{self.total:,} ({done / self.total:.0%}) | {rate:,.0f} {self.unit}s/s | "
            f"{elapsed} elapsed, {left} left | mean return (last 20) {recent}",
            flush=True,
        )
        self.last_time, self.last_done, self.lines = now, done, self.lines + 1


def evaluate_saved_model(args: Args):
    """--load-model: evaluate a saved model (and record, package and upload it) instead of training."""
    qtable, saved = load_agent(local_model(args.load_model))
    # the env and the Q-table are the saved run's; how to run, record and share this evaluation is this command's
    experiment_fields = list(Args.__dataclass_fields__)[: list(Args.__dataclass_fields__).index("env_id")]
    for field in experiment_fields:
        setattr(saved, field, getattr(args, field))
    _, run_dir, writer = start_run(saved)
    finish(qtable, saved, run_dir, writer)
    writer.close()


def main(args: Args):
    _, run_dir, writer = start_run(args)

    # env setup: seeding the env seeds its generator, and through it a TableEnv's; the agent explores with its own
    env = make_env(args)
    env.reset(seed=args.seed)
    rng = random.Random(args.seed)
    sim = TableEnv(env) if TableEnv.supports(env) else env
    # the course's step limit, or the env's registered one where that is shorter (a TableEnv keeps none of its own)
    max_steps = min(args.max_steps, env.spec.max_episode_steps or args.max_steps)
    q = initialize_q_table(env.observation_space.n, env.action_space.n)

    # every episode falls in exactly one logging window, logged at the global step where the window ends
    log_every = max(1, args.total_episodes // LOG_POINTS)
    returns, lengths, logged = [], [], 0
    global_step = 0
    start_time = time.perf_counter()
    progress, stop = Progress(args.total_episodes, unit="episode"), StopSignal()
    for episode in range(args.total_episodes):
        # ALGO LOGIC: one episode, acting epsilon-greedily and updating Q after every step
        eps = epsilon(episode, args.min_epsilon, args.max_epsilon, args.decay_rate)
        episodic_return, episodic_length = run_episode(q, sim, eps, max_steps, args.learning_rate, args.gamma, rng)

        # logging: the window's mean return and length, epsilon, SPS
        returns.append(episodic_return)
        progress.returns.append(episodic_return)
        lengths.append(episodic_length)
        global_step += episodic_length
        done = episode + 1
        if done % log_every == 0 or done == args.total_episodes:
            writer.add_scalar("charts/episodic_return", np.mean(returns[logged:]), global_step)
            writer.add_scalar("charts/episodic_length", np.mean(lengths[logged:]), global_step)
            writer.add_scalar("charts/epsilon", eps, global_step)
            writer.add_scalar("charts/SPS", int(global_step / (time.perf_counter() - start_time)), global_step)
            logged = done
        progress.show(done, final=done == args.total_episodes)
        if stop.signum:
            break
    train_time = time.perf_counter() - start_time
    print(f"trained {done:,} episodes ({global_step:,} steps) in {train_time:.2f} s")
    env.close()

    finish(np.array(q), args, run_dir, writer, stop.end())
    writer.close()


if __name__ == "__main__":
    try:
        args = check_args(tyro.cli(Args))
        if args.load_model is not None:
            evaluate_saved_model(args)
        else:
            main(args)
    except KeyboardInterrupt:  # outside training, which stops on a signal by itself: nothing is lost
        print(f"{SCRIPT.name}: interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
