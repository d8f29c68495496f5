"""REINFORCE, Monte Carlo policy gradient: Hugging Face Deep RL Course, unit 4.

The policy plays a whole episode; then every step's log-probability is pushed up in proportion to the return that
followed it (the reward-to-go G_t), standardised over the episode:
    grad J(theta) ~ sum_t grad_theta log pi_theta(a_t|s_t) G_t,    G_t = r_t + gamma * G_{t+1}
Paper: Williams 1992, "Simple statistical gradient-following algorithms for connectionist reinforcement learning"
(https://doi.org/10.1007/BF00992696). Defaults are the course notebook's CartPole-v1 ones: policy 4 -> 16 (ReLU) -> 2
(softmax), Adam with lr 1e-2, gamma 1.0, 1,000 training episodes of at most 1,000 steps, one episode per update;
evaluation over 10 episodes with sampled actions, as the course's evaluate_agent.

Discrete actions use a categorical policy, Box actions a diagonal Gaussian with a learned state-independent log-std
(actions are clipped to the bounds only on the way to the environment). Box, Discrete and Dict observations are
flattened. With --num-envs N, N episodes are played side by side by N envs and one update averages their losses.
REINFORCE has no critic, so an episode cut by a time limit (the env's, or --max-steps) ends its returns at 0 exactly
like a terminated one: the rewards it would have earned afterwards are unknown, and the returns of its last steps are
underestimated (CartPole-v1 cut at 500 steps: the last steps look worse than they are). Course unit 4's second
environment, Pixelcopter, needs PLE (PyGame Learning Environment), which is not on PyPI; it is not supported here.

Run:
    python reinforce.py                             # CartPole-v1, up to the course's 1,000 episodes
    python reinforce.py --num-envs 8 --total-episodes 2000          # 8 episodes per update
    python reinforce.py --load-model runs/<run>/model.pt --capture-video   # evaluate a saved model
    python reinforce.py --help

With lr 1e-2 the policy often collapses after it has solved CartPole, and where the 1,000 episodes end decides the
evaluation: run to the end as in the course's loop (--no-stop-when-solved), seeds 1-10 pass the course's mark on 6 of
10 seeds here (seed 1: 187.6 +/- 4.3). By default training stops once the last 20 episodes average the env's reward
threshold (475 for CartPole-v1), as PyTorch's own REINFORCE example does; seed 1 then stops after 558 episodes and
evaluates to 500.0 +/- 0.0.
"""

import datetime
import importlib
import json
import random
import shutil
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro
from torch.distributions import Normal
from torch.utils.tensorboard import SummaryWriter

SCRIPT = Path(__file__).resolve()
PASS_MARKS = {"CartPole-v1": 350.0}  # course unit 4's certification: mean_reward - std_reward >= this


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
    """CPU threads for torch (0: torch's default); one is fastest for these small networks"""
    track: bool = False
    """if toggled, the run is tracked with Weights and Biases"""
    wandb_project_name: str = "deep-rl-course"
    """the wandb project name"""
    wandb_entity: str | None = None
    """the wandb entity (team) name"""
    capture_video: bool = False
    """record videos of the agent (training episodes of the first env, and the evaluation) under runs/<run>/videos"""
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
    """stop training once the last 20 episodes average the env's reward threshold (CartPole-v1: 475), before the large
    learning rate can undo it; --no-stop-when-solved plays every episode, as the course's loop does"""

    # to be filled in runtime
    gym_id: str = ""
    """the gymnasium id that runs (equals env_id unless env_id is retired)"""
    num_iterations: int = 0
    """the number of updates (computed in runtime)"""


def fail(message: str):
    """Bad input: one line on stderr, exit status 2, no traceback."""
    sys.exit(f"{SCRIPT.name}: error: {message}")


def describe(error: Exception) -> str:
    """An exception in one line."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def check_args(args: Args):
    positive = ("total_episodes", "max_steps", "learning_rate", "hidden_size", "num_envs")
    for name in positive:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.gamma <= 1:
        fail(f"--gamma must lie in [0, 1], got {args.gamma}")
    if args.eval_episodes < 0:
        fail(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.load_model is None and args.total_episodes % args.num_envs:
        fail(
            f"--total-episodes {args.total_episodes} is not a multiple of --num-envs {args.num_envs}; choose a multiple"
        )
    if args.hf_repo_id is not None and args.hf_repo_id.count("/") != 1:
        fail(f"--hf-repo-id must look like `username/repo-name`, got {args.hf_repo_id!r}")
    if args.hf_repo_id is not None:
        import huggingface_hub

        if not huggingface_hub.get_token():
            fail("--hf-repo-id needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
    args.num_iterations = args.total_episodes // args.num_envs
    args.hub_package = args.hub_package or args.hf_repo_id is not None


# ======================================================================================================================
# Environment
# ======================================================================================================================
def resolve_env_id(env_id: str) -> str:
    """The gymnasium id to run: env_id itself, or the current version of a retired id (LunarLander-v2 -> v3).
    As in gym.make, `module:EnvName-v0` imports the module that registers the env first."""
    module, _, name = env_id.rpartition(":")
    if name.startswith("Pixelcopter"):
        fail(
            f"{env_id} needs PLE (PyGame Learning Environment), which is not on PyPI; reinforce.py runs gymnasium envs"
        )
    try:
        if module:
            importlib.import_module(module)
        elif name.startswith("Panda"):
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
        atari = " (Atari games run with ppo_atari.py)" if "NoFrameskip" in name or name.startswith("ALE/") else ""
        fail(f"unknown env id {env_id!r}: {error}{atari}")


def supported_observation(space: gym.Space) -> bool:
    if isinstance(space, gym.spaces.Dict):
        return all(map(supported_observation, space.values()))
    return isinstance(space, (gym.spaces.Box, gym.spaces.Discrete))


def check_spaces(gym_id: str):
    try:
        env = gym.make(gym_id)
    except Exception as error:  # e.g. a missing optional dependency of the environment
        fail(f"cannot create {gym_id} ({describe(error)})")
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    if not supported_observation(observation_space):
        fail(f"{gym_id} has observation space {observation_space}; reinforce.py handles Box, Discrete and Dict")
    if not isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        fail(f"{gym_id} has action space {action_space}; reinforce.py handles Discrete and Box actions")


class SeededResets(gym.Wrapper):
    """panda-gym 3.0.7 re-seeds its goal sampler from the operating system at every reset that gets no seed (the
    autoresets of a vector env), so a run could not be repeated. After a seeded reset, this gives each later reset a
    seed drawn from a generator of its own, seeded by that reset: the same goal distribution, repeatable."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.seeds = np.random.default_rng(seed)
        elif hasattr(self, "seeds"):
            seed = int(self.seeds.integers(2**31))
        return self.env.reset(seed=seed, options=options)


def make_env(gym_id: str, idx: int = 0, video_folder: str | None = None, evaluation: bool = False):
    """One environment with flat observations. With a video folder, env 0 records training episodes on gymnasium's
    usual schedule, or only the first episode of an evaluation."""

    def thunk():
        if video_folder is None or idx > 0:
            env = gym.make(gym_id)
        else:
            trigger = (lambda episode: episode == 0) if evaluation else None
            prefix = "eval" if evaluation else "train"
            env = gym.make(gym_id, render_mode="rgb_array")
            env = gym.wrappers.RecordVideo(env, video_folder, episode_trigger=trigger, name_prefix=prefix)
        if gym_id.rpartition(":")[2].startswith("Panda"):
            env = SeededResets(env)
        if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
            env = gym.wrappers.FlattenObservation(env)
        return env

    return thunk


# ======================================================================================================================
# Network
# ======================================================================================================================
class MLP(nn.Module):
    """Linear layers with ReLU between them and PyTorch's default initialisation, as the course's Policy. The forward
    pass is written out in one module call: on a small CPU, the Python overhead of nested module calls costs more than
    the products."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(sizes[:-1], sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, out = self.layers
        for layer in hidden:
            x = torch.relu(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, out.weight, out.bias)


class Agent(nn.Module):
    """The course's Policy, fc1 -> ReLU -> fc2 -> softmax, with the softmax left to the distribution (logits in,
    the same probabilities out); for Box actions the output is the Gaussian's mean."""

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.Space, hidden_size: int):
        super().__init__()
        obs_dim = int(np.prod(observation_space.shape))
        self.continuous = isinstance(action_space, gym.spaces.Box)
        act_dim = int(np.prod(action_space.shape)) if self.continuous else int(action_space.n)
        self.actor = MLP([obs_dim, hidden_size, act_dim])
        if self.continuous:
            self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def get_action(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Sample a ~ pi(.|s) given noise drawn beforehand by sampling_noise(): two operations after the network."""
        if self.continuous:
            return self.actor(x) + self.actor_logstd.exp() * noise
        # Gumbel-max trick: argmax(logits + G), with G = -log(E), E ~ Exp(1), is a sample of softmax(logits)
        return (self.actor(x) + noise).argmax(dim=-1)

    def sampling_noise(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """The randomness of `shape` action samples (e.g. [max_steps, num_envs]), drawn in one call."""
        size = shape + (self.actor_logstd.shape[-1] if self.continuous else self.actor.layers[-1].out_features,)
        if self.continuous:
            return torch.randn(size, device=device)
        return -torch.empty(size, device=device).exponential_().log()

    def log_prob(self, x: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(a|s) of actions taken in states x."""
        if self.continuous:
            mean = self.actor(x)
            dist = Normal(mean, self.actor_logstd.expand_as(mean).exp(), validate_args=False)
            return dist.log_prob(action).sum(-1)  # independent dimensions: the joint log-density is their sum
        log_probs = torch.log_softmax(self.actor(x), dim=-1)
        return log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)


# ======================================================================================================================
# The algorithm's pure pieces
# ======================================================================================================================
def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Reward-to-go of every step of episodes stored as rewards[step, episode] (zeros after an episode's end).

    The course's G_t = sum_{k=t}^{T-1} gamma^(k-t) r_k, computed backwards in O(T) by the recursion
    G_t = r_t + gamma * G_{t+1}, one pass over the steps for all episodes at once. The return ends at 0 after the last
    step, G_T = 0, whether the episode terminated or was cut by a time limit (REINFORCE has no critic to bootstrap a
    cut episode with). The zero rewards after an episode's end keep its G at 0 there.
    """
    returns = np.zeros(rewards.shape, dtype=np.float64)
    future = np.zeros(rewards.shape[1:], dtype=np.float64)  # G_{t+1}, 0 beyond the last step
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


def play_episodes(agent: Agent, envs: list[gym.Env], max_steps: int, device: torch.device, on_reset=None):
    """One whole episode in each env with the current policy (at most max_steps steps); an env whose episode ended is
    not stepped again. Returns observations [step, env, ...] (float32 numpy), actions, rewards (0 after the end),
    episode lengths and whether each episode terminated."""
    num_envs = len(envs)
    obs_dim = envs[0].observation_space.shape[0]
    obs = np.zeros((max_steps, num_envs, obs_dim), dtype=np.float32)
    actions = np.zeros((max_steps, num_envs) + envs[0].action_space.shape, dtype=envs[0].action_space.dtype)
    rewards = np.zeros((max_steps, num_envs), dtype=np.float64)
    lengths = np.zeros(num_envs, dtype=np.int64)
    terminated = np.zeros(num_envs, dtype=bool)
    for i, env in enumerate(envs):
        obs[0, i] = env.reset()[0] if on_reset is None else on_reset(env, i)
    alive = list(range(num_envs))
    noise = agent.sampling_noise((max_steps, num_envs), device)
    low, high = (envs[0].action_space.low, envs[0].action_space.high) if agent.continuous else (None, None)
    with torch.inference_mode():
        for t in range(max_steps):
            action = agent.get_action(torch.from_numpy(obs[t]).to(device), noise[t]).cpu().numpy()
            actions[t] = action
            # what the environments receive: Gaussian actions clipped to the bounds, categorical ones as Python ints
            env_actions = np.clip(action, low, high) if agent.continuous else action.tolist()
            for i in list(alive):
                next_obs, reward, term, trunc, _ = envs[i].step(env_actions[i])
                rewards[t, i] = reward
                if term or trunc or t == max_steps - 1:
                    lengths[i], terminated[i] = t + 1, term
                    alive.remove(i)
                else:
                    obs[t + 1, i] = next_obs
            if not alive:
                break
    return obs, actions, rewards, lengths, terminated


# ======================================================================================================================
# Evaluation, saving and the Hub
# ======================================================================================================================
def evaluate(
    agent: Agent, gym_id: str, episodes: int, max_steps: int, seed: int, device: torch.device, video_folder: str | None
):
    """Course unit 4's evaluate_agent: whole episodes (at most max_steps steps) with sampled actions; the first one is
    recorded if video_folder. The samples are drawn after seeding torch with `seed`, so that a saved model evaluates
    to the same numbers as right after its training."""
    torch.manual_seed(seed)
    env = make_env(gym_id, 0, video_folder, evaluation=True)()
    returns = []
    for episode in range(episodes):
        reset = lambda env, i: env.reset(seed=seed + episode)[0]  # noqa: E731
        _, _, rewards, _, _ = play_episodes(agent, [env], max_steps, device, on_reset=reset)
        returns.append(float(rewards.sum()))
    env.close()
    return returns


def load_agent(path: str, device: torch.device) -> tuple[Agent, Args]:
    """A saved model and the arguments it was trained with; one clear line for anything missing or corrupt."""
    model_path = Path(path)
    args_path = model_path.with_name("args.json")
    if not model_path.is_file():
        fail(f"model file {path} does not exist")
    if not args_path.is_file():
        fail(f"{args_path} is missing: a saved model needs the args.json written beside it")
    try:
        saved = Args(**{k: v for k, v in json.loads(args_path.read_text()).items() if k in Args.__dataclass_fields__})
    except (ValueError, TypeError, AttributeError) as error:
        fail(f"{args_path} is not a valid args file ({describe(error)})")
    saved.gym_id = resolve_env_id(saved.env_id)
    check_spaces(saved.gym_id)
    env = make_env(saved.gym_id)()
    agent = Agent(env.observation_space, env.action_space, saved.hidden_size).to(device)
    env.close()
    try:
        state_dict = torch.load(model_path, map_location=device, weights_only=True)  # never unpickles code
        agent.load_state_dict(state_dict)
    except Exception as error:
        fail(f"cannot load {path} as a reinforce.py model for {saved.gym_id} ({describe(error)})")
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

A REINFORCE agent trained with `reinforce.py`, a single-file PyTorch REINFORCE (Hugging Face Deep RL Course, unit 4),
on `{args.gym_id}`{f" (the current version of the course's `{env_id}`)" if args.gym_id != env_id else ""}.
It scores **{mean:.2f} +/- {std:.2f}** over {args.eval_episodes} evaluation episodes with sampled actions.

## Use it
The weights are a plain `state_dict` (`model.pt`, loaded with `torch.load(..., weights_only=True)`: nothing is
unpickled) and `args.json` holds the arguments it was trained with. Download this repository, then:

```
python reinforce.py --load-model model.pt --capture-video
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
    (folder / "args.json").write_text(json.dumps(vars(args), indent=2))
    shutil.copy(model_path, folder / "model.pt")
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
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload Reinforce agent")
    except Exception as error:
        fail(f"upload to {repo_id} failed ({describe(error)}); the folder is kept at {folder}")
    print(f"uploaded {folder} to https://huggingface.co/{repo_id}")


# ======================================================================================================================
# Plumbing: run name, logging, seeding
# ======================================================================================================================
def start_run(args: Args):
    run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
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
    return run_name, Path("runs") / run_name, writer


def seed_everything(args: Args) -> torch.device:
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    return torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")


def finish(agent: Agent, args: Args, run_dir: Path, writer: SummaryWriter, device: torch.device):
    """Save, evaluate, package and upload, as the arguments ask."""
    model_path = run_dir / "model.pt"
    if args.save_model or args.hub_package:
        torch.save(agent.state_dict(), model_path)
        (run_dir / "args.json").write_text(json.dumps(vars(args), indent=2))
        print(f"model saved to {model_path}")
    if args.eval_episodes == 0:
        return
    video_folder = run_dir / "videos" / "eval" if args.capture_video or args.hub_package else None
    returns = evaluate(
        agent,
        args.gym_id,
        args.eval_episodes,
        args.max_steps,
        args.seed + 10_000,
        device,
        video_folder and str(video_folder),
    )
    for idx, episodic_return in enumerate(returns):
        writer.add_scalar("eval/episodic_return", episodic_return, idx)
    mean, std = float(np.mean(returns)), float(np.std(returns))
    mark = f" (course pass mark {PASS_MARKS[args.env_id]:g})" if args.env_id in PASS_MARKS else ""
    result = f"mean_reward={mean:.2f} std_reward={std:.2f} result={mean - std:.2f}{mark}"
    print(f"evaluation over {len(returns)} episodes: {result}")
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


# ======================================================================================================================
# Training
# ======================================================================================================================
def main(args: Args):
    check_args(args)
    if args.load_model is not None:  # evaluate a saved model, no training
        device = seed_everything(args)
        agent, saved = load_agent(args.load_model, device)
        this_command = ("seed", "cuda", "torch_threads", "track", "wandb_project_name", "wandb_entity",
                        "capture_video", "eval_episodes", "hub_package", "hf_repo_id", "load_model")  # fmt: skip
        for field in this_command:  # this command's settings, not the saved run's
            setattr(saved, field, getattr(args, field))
        saved.save_model = False
        _, run_dir, writer = start_run(saved)
        finish(agent, saved, run_dir, writer, device)
        writer.close()
        return

    args.gym_id = resolve_env_id(args.env_id)
    check_spaces(args.gym_id)
    run_name, run_dir, writer = start_run(args)
    device = seed_everything(args)

    # env setup: num_envs plain environments, each playing one whole episode per update
    video_folder = str(run_dir / "videos") if args.capture_video else None
    envs = [make_env(args.gym_id, i, video_folder)() for i in range(args.num_envs)]
    for i, env in enumerate(envs):
        env.reset(seed=args.seed + i)  # later resets continue each env's seeded generator
        env.action_space.seed(args.seed + i)

    agent = Agent(envs[0].observation_space, envs[0].action_space, args.hidden_size).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, fused=True)

    global_step = 0
    recent_returns = deque(maxlen=20)
    solved_at = gym.spec(args.gym_id).reward_threshold if args.stop_when_solved else None
    start_time = last_print = time.time()

    for iteration in range(1, args.num_iterations + 1):
        # ==============================================================================================================
        # Monte Carlo rollout: one whole episode per env with the current policy
        # ==============================================================================================================
        obs, actions, rewards, lengths, _ = play_episodes(agent, envs, args.max_steps, device)
        steps = int(lengths.max())

        # ==============================================================================================================
        # Returns G_t, standardised per episode, and the policy gradient step
        # ==============================================================================================================
        returns = discounted_returns(rewards[:steps], args.gamma)
        if args.norm_returns:
            returns = standardize(returns, lengths)
        # the policy did not change during the episodes, so all their steps are scored in one batched pass
        logprobs = agent.log_prob(
            torch.as_tensor(obs[:steps], device=device), torch.as_tensor(actions[:steps], device=device)
        )
        loss = reinforce_loss(logprobs, torch.as_tensor(returns, dtype=torch.float32, device=device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        # ==============================================================================================================
        # Plumbing: logging and progress
        # ==============================================================================================================
        episode_returns = rewards.sum(0)
        for length, episodic_return in zip(lengths, episode_returns):
            global_step += int(length)
            writer.add_scalar("charts/episodic_return", episodic_return, global_step)
            writer.add_scalar("charts/episodic_length", length, global_step)
            recent_returns.append(episodic_return)
        writer.add_scalar("losses/policy_loss", loss.item(), global_step)
        sps = int(global_step / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        solved = solved_at is not None and len(recent_returns) == 20 and np.mean(recent_returns) >= solved_at
        if time.time() - last_print > 10 or iteration == args.num_iterations or solved:
            last_print = time.time()
            episodes = iteration * args.num_envs
            print(
                f"episode {episodes:>6,}/{args.total_episodes:,} | step {global_step:,} | {sps:,} SPS | "
                f"mean return (last 20) {np.mean(recent_returns):.1f}"
            )
        if solved:
            print(f"solved: mean return (last 20) {np.mean(recent_returns):.1f} >= {solved_at:g}; training stops")
            break

    for env in envs:
        env.close()
    episodes = iteration * args.num_envs
    print(f"trained {episodes:,} episodes ({global_step:,} steps) in {time.time() - start_time:.1f} s")
    finish(agent, args, run_dir, writer, device)
    writer.close()


if __name__ == "__main__":
    main(tyro.cli(Args))
