"""REINFORCE, Monte Carlo policy gradient: Hugging Face Deep RL Course, unit 4.

The policy plays a whole episode; then every step's log-probability is pushed up in proportion to the return that
followed it (the reward-to-go G_t), standardised over the episode:
    grad J(theta) ~ sum_t grad_theta log pi_theta(a_t|s_t) G_t,    G_t = r_t + gamma * G_{t+1}
Paper: Williams 1992, "Simple statistical gradient-following algorithms for connectionist reinforcement learning"
(https://doi.org/10.1007/BF00992696). Defaults are the course notebook's CartPole-v1 ones: policy 4 -> 16 (ReLU) -> 2
(softmax), Adam with lr 1e-2, gamma 1.0, 1,000 training episodes of at most 1,000 steps, one episode per update;
evaluation over 10 episodes with sampled actions, as the course's evaluate_agent. With so large a learning rate the
policy often collapses after solving the task: training stops once the last 20 episodes average the env's reward
threshold, as PyTorch's REINFORCE example does (--no-stop-when-solved plays every episode, as the course does).

Discrete actions use a categorical policy, Box actions a diagonal Gaussian with a learned state-independent log-std
(clipped to the bounds only on the way to the environment). Observations are flattened. With --num-envs N, N
episodes are played side by side and one update averages their losses. REINFORCE has no critic, so an episode cut by
a time limit ends its returns at 0 like a terminated one. The course's Pixelcopter needs PLE, which is not on PyPI.

Run:
    python reinforce.py                             # CartPole-v1, up to the course's 1,000 episodes
    python reinforce.py --num-envs 8 --total-episodes 2000          # 8 episodes per update
    python reinforce.py --load-model runs/<run>/model.pt --capture-video   # evaluate a saved model

What it reaches and how fast: README.md and results/README.md.
"""

import contextlib
import ctypes
import datetime
import importlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import time
import warnings
import zipfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.distributions import Categorical, Normal
from torch.utils.tensorboard import SummaryWriter

SCRIPT = Path(__file__).resolve()
MODEL_FILES = ("model.pt",)  # what --load-model finds in a Hub repo, in this order
PASS_MARKS = {"CartPole-v1": 350}  # the result (mean - std) course unit 4 asks for


@dataclass
class Args:
    exp_name: str = SCRIPT.stem
    """the name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    cuda: bool = True
    """if toggled, CUDA is used when available"""
    torch_threads: int = 1
    """CPU threads for torch (0: torch's default); these small networks gain nothing from more than one"""
    track: bool = False
    """if toggled, the run is tracked with Weights and Biases"""
    wandb_project_name: str = "deep-rl-course"
    """the wandb project name"""
    wandb_entity: str | None = None
    """the wandb entity (team) name"""
    capture_video: bool = False
    """record videos of the agent (training episodes of the first env, and the evaluation) under runs/<run>/videos"""
    render: bool = False
    """show the evaluation episodes in a window (needs a display)"""
    save_model: bool = False
    """save the model (runs/<run>/model.pt) and its arguments (args.json beside it)"""
    load_model: str | None = None
    """path of a saved model.pt: skip training and evaluate it (its args.json must lie beside it)"""
    eval_episodes: int = 10
    """episodes of the evaluation after training (sampled actions, as in course unit 4); 0 skips it"""
    hub_package: bool = False
    """build the Hugging Face Hub folder (runs/<run>/hub: card, results, replay video, model, args, script)"""
    hf_repo_id: str | None = None
    """upload the Hub folder to this repo, e.g. `user/Reinforce-CartPole-v1` (needs a token, implies --hub-package)"""

    # Algorithm specific arguments
    env_id: str = "CartPole-v1"
    """the id of the environment (retired course ids such as LunarLander-v2 run their current version)"""
    total_episodes: int = 1_000
    """training episodes (the course's n_training_episodes)"""
    max_steps: int = 1_000
    """steps at most per episode, in training and evaluation (the course's max_t; the env's own time limit holds too)"""
    learning_rate: float = 1e-2
    """the learning rate of the optimizer"""
    gamma: float = 1.0
    """the discount factor gamma"""
    hidden_size: int = 16
    """units of the policy's hidden layer (the course's h_size)"""
    num_envs: int = 1
    """episodes per update, played side by side by this many envs (1: the course's one episode per update)"""
    norm_returns: bool = True
    """standardise the returns of each episode to mean 0, std 1 (the course does)"""
    stop_when_solved: bool = True
    """stop once the last 20 episodes average the env's reward threshold (CartPole-v1: 475); off: play every episode"""

    # computed from the others, not options
    gym_id: tyro.conf.Suppress[str] = ""
    """the gymnasium id that runs (env_id, or the current version of a retired env_id)"""
    num_iterations: tyro.conf.Suppress[int] = 0
    """the number of updates: total_episodes / num_envs"""


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
    """Every combination that cannot run is refused here, before any work starts; the computed fields are filled."""
    positive = ("total_episodes", "max_steps", "learning_rate", "hidden_size", "num_envs")
    for name in positive:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.gamma <= 1:
        fail(f"--gamma must lie in [0, 1], got {args.gamma}")
    if args.eval_episodes < 0:
        fail(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.total_episodes % args.num_envs:
        fail(f"--total-episodes {args.total_episodes} is not a multiple of --num-envs {args.num_envs}")
    args.num_iterations = args.total_episodes // args.num_envs
    if args.load_model is None:
        if args.env_id.rpartition(":")[2].startswith("Pixelcopter"):
            fail(f"{args.env_id} needs PLE (PyGame Learning Environment), which is not on PyPI; run a gymnasium env")
        args.gym_id = resolve_env_id(args.env_id)
        check_spaces(args.gym_id)
    check_render(args)
    check_accounts(args)
    return args


# ENV: the environment
def resolve_env_id(env_id: str) -> str:
    """The gymnasium id to run: env_id itself, or the current version of a retired id (LunarLander-v2 -> v3).
    As in gym.make, `module:EnvName-v0` imports the module that registers the env first."""
    module, _, name = env_id.rpartition(":")
    if "NoFrameskip" in name or name.startswith("ALE/"):
        fail(f"{env_id} is an Atari game: train it with ppo_atari.py or dqn_atari.py")
    try:
        if module:
            importlib.import_module(module)
        elif name.startswith("Panda"):
            with quiet_stdio():
                import panda_gym  # noqa: F401  (registers the panda-gym environments of course unit 6)
        gym.spec(name)
        return env_id
    except gym.error.DeprecatedEnv:
        namespace, base_name, _ = gym.envs.registration.parse_env_id(name)
        latest = gym.envs.registration.find_highest_version(namespace, base_name)
        current = gym.envs.registration.get_env_id(namespace, base_name, latest)
        print(f"note: gymnasium {gym.__version__} retired {name}; running {current}, its current version")
        return f"{module}:{current}" if module else current
    except (gym.error.Error, ImportError) as error:
        fail(f"unknown env id {env_id!r}: {error}")


def supported_observation(space: gym.Space) -> bool:
    if isinstance(space, gym.spaces.Dict):
        return all(map(supported_observation, space.values()))
    if isinstance(space, gym.spaces.Tuple):
        return all(map(supported_observation, space))
    return isinstance(space, (gym.spaces.Box, gym.spaces.Discrete))


def check_spaces(gym_id: str):
    try:
        env = make(gym_id)
    except Exception as error:  # e.g. a missing optional dependency of the environment
        fail(f"cannot create {gym_id} ({describe(error)})")
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    if not supported_observation(observation_space):
        fail(f"{gym_id} has observation space {observation_space}; {SCRIPT.name} handles Box, Discrete, Dict and Tuple")
    if not isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        fail(f"{gym_id} has action space {action_space}; {SCRIPT.name} handles Discrete and Box actions")


@contextlib.contextmanager
def quiet_stdio():
    """What C code writes to the process's stdout and stderr meanwhile goes to /dev/null: pybullet prints its build
    time and its arguments whenever panda-gym loads or connects it, which is no message for the user. An exception
    still reaches the user, once the descriptors are back."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved, devnull = (os.dup(1), os.dup(2)), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        if sys.platform != "win32":
            ctypes.CDLL(None).fflush(None)  # what C buffered goes to /dev/null too
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def make(gym_id: str, **kwargs) -> gym.Env:
    """gym.make, keeping pybullet's output (panda-gym) off the terminal."""
    with quiet_stdio() if gym_id.rpartition(":")[2].startswith("Panda") else contextlib.nullcontext():
        return gym.make(gym_id, **kwargs)


class SeededResets(gym.Wrapper):
    """panda-gym re-seeds its goal sampler from the operating system at every reset that gets no seed (the autoresets
    of a vector env), so a run could not be repeated. After a seeded reset, this gives each later reset a seed drawn
    from a generator of its own, seeded by that reset: the same goal distribution, repeatable."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.seeds = np.random.default_rng(seed)
        elif hasattr(self, "seeds"):
            seed = int(self.seeds.integers(2**31))
        return self.env.reset(seed=seed, options=options)


MAX_EVAL_STEPS = 100_000  # where an evaluation episode of an env without a time limit is cut


def make_env(gym_id: str, idx: int = 0, video_folder: Path | None = None, evaluation: bool = False, render=False):
    """One environment with flat observations. With a video folder, env 0 records training episodes on gymnasium's
    usual schedule, or only the first episode of an evaluation, whose episodes always end; with render, env 0 shows
    its episodes in a window."""

    def thunk():
        if multiprocessing.parent_process() is not None:  # an AsyncVectorEnv worker: Ctrl-C is the trainer's to handle
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if render and idx == 0:
            env = make(gym_id, render_mode="human")
        elif video_folder is None or idx > 0:
            env = make(gym_id)
        else:
            trigger = (lambda episode: episode == 0) if evaluation else None
            prefix = "eval" if evaluation else "train"
            os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # frames drawn off-screen: SDL needs no display
            env = make(gym_id, render_mode="rgb_array")
            with warnings.catch_warnings():  # the folder may exist: AsyncVectorEnv makes env 0 once to read its spaces
                warnings.filterwarnings("ignore", ".*Overwriting existing videos")
                env = gym.wrappers.RecordVideo(env, str(video_folder), episode_trigger=trigger, name_prefix=prefix)
        if evaluation and env.spec.max_episode_steps is None:
            env = gym.wrappers.TimeLimit(env, MAX_EVAL_STEPS)
        if gym_id.rpartition(":")[2].startswith("Panda"):
            env = SeededResets(env)
        if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
            env = gym.wrappers.FlattenObservation(env)
        return env

    return thunk


def env_action(action: torch.Tensor, action_space: gym.Space) -> np.ndarray:
    """What the environments receive: Gaussian actions are clipped to the bounds, stored actions never are."""
    action = action.cpu().numpy()
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(action, action_space.low, action_space.high)
    return action


# NETWORK: the policy
class Agent(nn.Module):
    """The course's Policy, fc1 -> ReLU -> fc2 -> softmax, with PyTorch's default initialisation and the softmax left to
    the distribution (logits in, the same probabilities out); for Box actions the output is the Gaussian's mean."""

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.Space, hidden_size: int):
        super().__init__()
        obs_dim = int(np.prod(observation_space.shape))
        self.continuous = isinstance(action_space, gym.spaces.Box)
        act_dim = int(np.prod(action_space.shape)) if self.continuous else int(action_space.n)
        self.actor = nn.Sequential(nn.Linear(obs_dim, hidden_size), nn.ReLU(), nn.Linear(hidden_size, act_dim))
        if self.continuous:
            self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def distribution(self, x: torch.Tensor) -> Categorical | Normal:
        """pi(.|s)."""
        if self.continuous:
            mean = self.actor(x)
            return Normal(mean, self.actor_logstd.expand_as(mean).exp())
        return Categorical(logits=self.actor(x))

    def get_action(self, x: torch.Tensor) -> torch.Tensor:
        """a ~ pi(.|s)."""
        if self.continuous:
            return self.distribution(x).sample()
        logits = self.actor(x)
        # Gumbel-max, argmax(logits - log E) with E ~ Exp(1): the very draws of Categorical(logits).sample(), in about
        # half the time of the default run (benchmarks/ablation_a2c_reinforce.py)
        return (logits - torch.empty_like(logits).exponential_().log()).argmax(dim=-1)

    def log_prob(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(a|s); a Gaussian's independent dimensions make the joint log-density the sum over them."""
        logprob = self.distribution(x).log_prob(action)
        return logprob.sum(-1) if self.continuous else logprob


# ALGO LOGIC: whole episodes, their returns and the policy gradient
def play_episodes(agent: Agent, envs: list[gym.Env], max_steps: int, device: torch.device, seeds: list):
    """One whole episode in each env with the current policy (at most max_steps steps), each started by a reset with
    its seed in `seeds` (None: the env's generator goes on); an env whose episode ended is not stepped again.
    Returns observations and actions [step, env, ...] (tensors), rewards [step, env] (0 after an episode's end) and
    the episodes' lengths, cut to the longest episode."""
    num_envs, action_space = len(envs), envs[0].action_space
    obs = torch.zeros((max_steps, num_envs) + envs[0].observation_space.shape, device=device)
    actions = torch.zeros((max_steps, num_envs) + action_space.shape, device=device, dtype=torch.long)
    if agent.continuous:
        actions = actions.float()
    rewards = np.zeros((max_steps, num_envs))
    lengths = np.full(num_envs, max_steps)
    next_obs = [env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)]
    playing = list(range(num_envs))
    for step in range(max_steps):
        obs[step] = torch.Tensor(np.array(next_obs)).to(device)
        with torch.no_grad():
            actions[step] = agent.get_action(obs[step])
        env_actions = env_action(actions[step], action_space)
        for i in list(playing):
            next_obs[i], rewards[step, i], terminated, truncated, _ = envs[i].step(env_actions[i])
            if terminated or truncated:
                lengths[i] = step + 1
                playing.remove(i)
        if not playing:
            break
    steps = lengths.max()
    return obs[:steps], actions[:steps], rewards[:steps], lengths


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """The course's reward-to-go G_t = sum_{k=t}^{T-1} gamma^(k-t) r_k of every step of episodes stored as
    rewards[step, episode], computed backwards for all episodes at once. G_T = 0 whether the episode terminated or was
    cut by a time limit (no critic to bootstrap with); the zero rewards after an episode's end keep its G at 0 there."""
    returns = np.zeros(rewards.shape)
    future = np.zeros(rewards.shape[1:])  # G_{t+1}, 0 beyond the last step
    for t in reversed(range(rewards.shape[0])):
        future = returns[t] = rewards[t] + gamma * future  # G_t = r_t + gamma * G_{t+1}
    return returns


def standardize(returns: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(G_t - mean) / (std + eps) over the steps of each episode, as the course does (std with Bessel's correction,
    eps = float32 machine epsilon); steps after an episode's end are 0. A one-step episode has no spread: 0."""
    mask = np.arange(returns.shape[0])[:, None] < lengths
    mean = (returns * mask).sum(0) / lengths
    std = np.sqrt((((returns - mean) * mask) ** 2).sum(0) / np.maximum(lengths - 1, 1))
    return np.where(mask, (returns - mean) / (std + np.finfo(np.float32).eps), 0.0)


def reinforce_loss(logprobs: torch.Tensor, returns: torch.Tensor) -> torch.Tensor:
    """The course's policy loss, -sum_t log pi(a_t|s_t) G_t over each episode, averaged over the episodes of an update
    (tensors [step, episode]; returns are 0 after an episode's end, so its padding adds nothing)."""
    return -(logprobs * returns).sum(0).mean()


# EVALUATION, SAVING AND THE HUB
def evaluate(agent: Agent, args: Args, episodes: int, seed: int, device: torch.device, video_folder: Path | None):
    """Course unit 4's evaluate_agent: episodes of at most max_steps steps with sampled actions; the first one is
    recorded if video_folder. Seeded, so that a model evaluates to the same numbers after training and after loading
    with the same --seed."""
    torch.manual_seed(seed)
    env = make_env(args.gym_id, 0, video_folder, evaluation=True, render=args.render)()
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total = 0.0
        for _ in range(args.max_steps):
            with torch.inference_mode():
                action = agent.get_action(torch.Tensor(obs).to(device).unsqueeze(0))
            obs, reward, terminated, truncated, _ = env.step(env_action(action, env.action_space)[0])
            total += float(reward)
            if terminated or truncated:
                break
        returns.append(total)
    env.close()
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


def load_agent(path: str, device: torch.device) -> tuple[Agent, Args]:
    """A saved model and the arguments it was trained with; one clear line for anything missing or corrupt."""
    saved = read_saved_args(path)
    saved.gym_id = resolve_env_id(saved.env_id)
    check_spaces(saved.gym_id)
    env = make_env(saved.gym_id)()
    agent = Agent(env.observation_space, env.action_space, saved.hidden_size).to(device)
    env.close()
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        fail(f"cannot load {path}: it is no model file (--save-model of {SCRIPT.name} writes runs/<run>/model.pt)")
    try:
        agent.load_state_dict(torch.load(path, map_location=device, weights_only=True))  # never unpickles code
    except Exception as error:
        fail(f"cannot load {path} as a {SCRIPT.name} model for {saved.env_id} ({describe(error)})")
    return agent, saved


def model_card(args: Args, mean: float, std: float) -> str:
    env_id = args.env_id  # the id the course leaderboard reads, even where a newer version ran
    hyperparameters = "\n".join(f"| {k} | {v} |" for k, v in vars(args).items())
    return f"""---
tags:
- {env_id}
- reinforce
- reinforcement-learning
- deep-reinforcement-learning
- custom-implementation
- deep-rl-course
model-index:
- name: Reinforce
  results:
  - task:
      type: reinforcement-learning
      name: reinforcement-learning
    dataset:
      name: {env_id}
      type: {env_id}
    metrics:
    - type: mean_reward
      value: {mean:.2f} +/- {std:.2f}
      name: mean_reward
      verified: false
---

# Reinforce agent playing {env_id}

A REINFORCE agent trained with `{SCRIPT.name}`, a single-file PyTorch REINFORCE (Hugging Face Deep RL Course,
unit 4), on `{args.gym_id}`{f" (the current version of the course's `{env_id}`)" if args.gym_id != env_id else ""}.
It scores **{mean:.2f} +/- {std:.2f}** over {args.eval_episodes} evaluation episodes with sampled actions.

## Use it
The weights are a plain `state_dict` (`model.pt`, loaded with `torch.load(..., weights_only=True)`: nothing is
unpickled) and `args.json` holds the arguments it was trained with. Download this repository, then:

```
python {SCRIPT.name} --load-model model.pt --capture-video
```

## Hyperparameters
| argument | value |
|---|---|
{hyperparameters}
"""


def package_for_hub(folder: Path, args: Args, results: dict, model_path: Path, video_folder: Path | None):
    """The folder the course leaderboard understands; built without network."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(model_card(args, results["mean_reward"], results["std_reward"]))
    (folder / "results.json").write_text(json.dumps(results, indent=2))
    (folder / "args.json").write_text(json.dumps(vars(args) | dict(script=SCRIPT.name), indent=2))
    shutil.copy(model_path, folder / model_path.name)
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


def finish(agent: Agent, args: Args, run_dir: Path, writer: SummaryWriter, device: torch.device, stopped: int = 0):
    """Save, evaluate, package and upload, as the arguments ask. A run that a signal stopped (`stopped`) keeps its
    model (with --save-model) and ends without the evaluation."""
    model_path = run_dir / "model.pt"
    if args.save_model or args.hub_package:
        torch.save(agent.state_dict(), model_path)
        (run_dir / "args.json").write_text(json.dumps(vars(args) | dict(script=SCRIPT.name), indent=2))
        print(f"model saved to {model_path}")
    if stopped:
        writer.close()
        kept = f"evaluate it with: python {SCRIPT.name} --load-model {model_path}" if model_path.exists() else ""
        print(f"stopped by {signal.Signals(stopped).name}; {kept or 'no model kept (--save-model keeps it)'}")
        sys.exit(128 + stopped)
    if args.eval_episodes == 0:
        return
    video_folder = run_dir / "videos" / "eval" if args.capture_video or args.hub_package else None
    returns = evaluate(agent, args, args.eval_episodes, args.seed + 10_000, device, video_folder)
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


# PLUMBING: run name, logging, seeding, a saved model
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


def seed_everything(args: Args) -> torch.device:
    """Seed every generator the run draws from; the device to train on."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    return torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")


def evaluate_saved_model(args: Args):
    """--load-model: evaluate a saved model (and record, package and upload it) instead of training."""
    device = seed_everything(args)
    agent, saved = load_agent(local_model(args.load_model), device)
    # the env and the network are the saved run's; how to run, record and share this evaluation is this command's
    experiment_fields = list(Args.__dataclass_fields__)[: list(Args.__dataclass_fields__).index("env_id")]
    for field in experiment_fields:
        setattr(saved, field, getattr(args, field))
    _, run_dir, writer = start_run(saved)
    finish(agent, saved, run_dir, writer, device)
    writer.close()


def main(args: Args):
    run_name, run_dir, writer = start_run(args)
    device = seed_everything(args)

    # env setup: num_envs plain environments, each playing one whole episode per update
    video_folder = run_dir / "videos" if args.capture_video else None
    envs = [make_env(args.gym_id, i, video_folder)() for i in range(args.num_envs)]
    seeds = [args.seed + i for i in range(args.num_envs)]  # the first reset of each env seeds it, later ones go on

    agent = Agent(envs[0].observation_space, envs[0].action_space, args.hidden_size).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate)

    solved_at = gym.spec(args.gym_id).reward_threshold if args.stop_when_solved else None

    global_step = 0
    start_time = time.time()
    progress, stop = Progress(args.total_episodes, unit="episode"), StopSignal()

    for iteration in range(1, args.num_iterations + 1):
        # ALGO LOGIC: Monte Carlo rollout, one whole episode per env with the current policy
        obs, actions, rewards, lengths = play_episodes(agent, envs, args.max_steps, device, seeds)
        seeds = [None] * args.num_envs

        # ALGO LOGIC: the returns G_t, standardised over each episode
        returns = discounted_returns(rewards, args.gamma)
        if args.norm_returns:
            returns = standardize(returns, lengths)

        # ALGO LOGIC: the policy gradient step; the policy did not change during the episodes, so their steps are
        # scored in one batched pass
        logprobs = agent.log_prob(obs, actions)
        loss = reinforce_loss(logprobs, torch.Tensor(returns).to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        # logging: every episode, in every env
        for episodic_return, length in zip(rewards.sum(0), lengths):
            global_step += int(length)
            writer.add_scalar("charts/episodic_return", episodic_return, global_step)
            writer.add_scalar("charts/episodic_length", length, global_step)
            progress.returns.append(episodic_return)

        # logging and progress
        writer.add_scalar("losses/policy_loss", loss.item(), global_step)
        sps = int(global_step / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        recent = progress.returns
        solved = solved_at is not None and len(recent) == 20 and np.mean(recent) >= solved_at
        episodes = iteration * args.num_envs
        progress.show(episodes, final=iteration == args.num_iterations or solved)
        if solved:
            print(f"solved: mean return (last 20) {np.mean(recent):.1f} >= {solved_at:g}; training stops")
        if solved or stop.signum:
            break

    for env in envs:
        env.close()
    print(f"trained {episodes:,} episodes ({global_step:,} steps) in {time.time() - start_time:.1f} s")
    finish(agent, args, run_dir, writer, device, stop.end())
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
