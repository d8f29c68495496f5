"""Advantage Actor-Critic (A2C): Hugging Face Deep RL Course, unit 6.

A2C collects `num_steps` transitions from each of `num_envs` environments with the current policy, then takes one
gradient step on all of them: the actor follows grad log pi(a|s) * A(s, a), the critic regresses V(s) onto n-step
returns, and the advantage A(s, a) = Q(s, a) - V(s) is estimated as the n-step return minus V(s). It is the
synchronous, deterministic variant of A3C (Mnih et al. 2016, https://arxiv.org/abs/1602.01783). Defaults are those
of Stable-Baselines3's A2C as course unit 6 trains it: 4 envs x 5 steps, RMSprop (lr 7e-4, alpha 0.99, eps 1e-5),
gamma 0.99, GAE lambda 1.0 (plain n-step returns), entropy 0, value 0.5, gradient norm 0.5, separate 64-64 tanh
actor and critic, and VecNormalize's observation and reward normalisation for Box actions.

Discrete actions use a categorical policy, Box actions a diagonal Gaussian with a learned state-independent log-std
(clipped to the bounds only on the way to the environment). Observations are flattened (a Dict in the sorted key
order of its space). An episode cut by a time limit bootstraps from the value of its final observation; a terminated
one does not. Evaluation is course unit 6's: deterministic actions, observations normalised with the statistics of
the end of training, frozen, and raw rewards.

Run:
    python a2c.py                                   # PandaReachDense-v3 (course unit 6), the course's 1M steps
    python a2c.py --total-timesteps 60000 --eval-every 10000          # shorter, evaluated every 10k steps
    python a2c.py --env-id CartPole-v1 --num-envs 8 --total-timesteps 500000     # RL Zoo's A2C CartPole settings
    python a2c.py --load-model runs/<run>/model.pt --capture-video   # evaluate a saved model

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
from dataclasses import dataclass, replace
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
PASS_MARKS = {"PandaReachDense-v3": -3.5}  # the result (mean - std) course unit 6 asks for


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
    """save the model (runs/<run>/model.pt: weights and normalisation statistics) and its arguments (args.json)"""
    load_model: str | None = None
    """path of a saved model.pt: skip training and evaluate it (its args.json must lie beside it)"""
    eval_episodes: int = 10
    """episodes of the evaluation after training (deterministic actions, as in course unit 6); 0 skips it"""
    eval_every: int = 0
    """also evaluate every this many steps during training, logging eval/mean_reward (0: never)"""
    hub_package: bool = False
    """build the Hugging Face Hub folder (runs/<run>/hub: card, results, replay video, model, args, script)"""
    hf_repo_id: str | None = None
    """upload the Hub folder to this repo, e.g. `user/a2c-PandaReachDense-v3` (needs a token, implies --hub-package)"""

    # Algorithm specific arguments
    env_id: str = "PandaReachDense-v3"
    """the id of the environment (retired course ids such as LunarLander-v2 run their current version)"""
    total_timesteps: int = 1_000_000
    """total timesteps of the experiment"""
    learning_rate: float = 7e-4
    """the learning rate of the optimizer"""
    num_envs: int = 4
    """the number of parallel game environments"""
    async_envs: bool = True
    """step the envs in worker processes, for slow envs such as pybullet's; same results (default: for Panda envs)"""
    num_steps: int = 5
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = False
    """toggle learning rate annealing (linear decay to 0 over the run)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 1.0
    """the lambda for the general advantage estimation (1.0: plain n-step returns, as SB3's A2C)"""
    norm_adv: bool = False
    """toggles advantages normalization (per update)"""
    ent_coef: float = 0.0
    """coefficient of the entropy"""
    vf_coef: float = 0.5
    """coefficient of the value function"""
    max_grad_norm: float = 0.5
    """the maximum norm for the gradient clipping"""
    use_rms_prop: bool = True
    """RMSprop (SB3's default and the A2C paper's); otherwise Adam"""
    rms_prop_alpha: float = 0.99
    """RMSprop's smoothing constant alpha"""
    rms_prop_eps: float = 1e-5
    """the optimizer's epsilon (RMSprop's, or Adam's when --no-use-rms-prop)"""
    norm_obs: bool = True
    """normalise observations by their running mean and variance (default: for Box actions, as unit 6's VecNormalize)"""
    norm_reward: bool = True
    """divide rewards by the running std of the discounted return (default: for Box actions, as course unit 6 does)"""
    clip_obs: float = 10.0
    """normalised observations are clipped to [-clip_obs, clip_obs]"""
    clip_reward: float = 10.0
    """normalised rewards are clipped to [-clip_reward, clip_reward]"""

    # computed from the others, not options
    gym_id: tyro.conf.Suppress[str] = ""
    """the gymnasium id that runs (env_id, or the current version of a retired env_id)"""
    batch_size: tyro.conf.Suppress[int] = 0
    """the batch size: num_envs * num_steps"""
    num_iterations: tyro.conf.Suppress[int] = 0
    """the number of iterations: total_timesteps / batch_size"""


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
    positive = ("total_timesteps", "num_envs", "num_steps", "learning_rate", "clip_obs", "clip_reward", "max_grad_norm")
    for name in positive:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.gamma <= 1 or not 0 <= args.gae_lambda <= 1:
        fail(f"--gamma and --gae-lambda must lie in [0, 1], got {args.gamma} and {args.gae_lambda}")
    if args.ent_coef < 0 or args.vf_coef < 0:
        fail(f"--ent-coef and --vf-coef must be >= 0, got {args.ent_coef} and {args.vf_coef}")
    if not 0 <= args.rms_prop_alpha < 1 or args.rms_prop_eps <= 0:
        fail(
            f"--rms-prop-alpha must lie in [0, 1) and --rms-prop-eps be positive, "
            f"got {args.rms_prop_alpha} and {args.rms_prop_eps}"
        )
    if args.eval_episodes < 0:
        fail(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.eval_every < 0 or (args.eval_every > 0 and args.eval_episodes == 0):
        fail(f"--eval-every must be >= 0 and needs --eval-episodes > 0, got {args.eval_every} and {args.eval_episodes}")
    args.batch_size = args.num_envs * args.num_steps
    args.num_iterations = args.total_timesteps // args.batch_size
    check_render(args)
    check_accounts(args)  # before the env: importing panda-gym writes a line to stderr
    if args.load_model is None:
        if args.num_iterations == 0:
            fail(f"--total-timesteps {args.total_timesteps} is less than one rollout of {args.batch_size} steps")
        args.gym_id = resolve_env_id(args.env_id)
        check_spaces(args.gym_id)
    return args


def parse_args() -> Args:
    """The command line, where --norm-obs, --norm-reward and --async-envs default to what the env asks for: course unit
    6 wraps its (Box-action) envs in VecNormalize, and pybullet's slow steps pay for worker processes. The line is read
    once for the env and checked, then again with the env's defaults, so that a switch given on it wins."""
    args = check_args(tyro.cli(Args))
    if args.load_model is not None:
        return args
    env = make(args.gym_id)
    continuous = isinstance(env.action_space, gym.spaces.Box)
    env.close()
    panda = args.gym_id.rpartition(":")[2].startswith("Panda")
    given = tyro.cli(Args, default=replace(args, norm_obs=continuous, norm_reward=continuous, async_envs=panda))
    args.norm_obs, args.norm_reward, args.async_envs = given.norm_obs, given.norm_reward, given.async_envs
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


# NETWORK: actor and critic, and the normalisation statistics
def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class RunningMeanStd(nn.Module):
    """Mean and variance of everything seen so far, merged batch by batch (Chan et al.'s parallel algorithm) as in
    SB3's VecNormalize; buffers, so that the agent's state_dict saves them with the weights."""

    def __init__(self, shape: tuple[int, ...] = ()):
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        # just above 0, as SB3's: the first batch all but replaces the initial (0, 1)
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    def update(self, batch: torch.Tensor):
        batch_mean, batch_var, batch_count = batch.mean(0), batch.var(0, correction=0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.mean += delta * batch_count / total
        self.var.copy_(m2 / total)
        self.count.copy_(total)


class Agent(nn.Module):
    """Separate actor and critic MLPs (64-64, tanh), orthogonally initialised, as SB3's default A2C policy; and the
    running statistics of the observations and returns, which evaluation normalises with."""

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.Space):
        super().__init__()
        obs_dim = int(np.prod(observation_space.shape))
        self.continuous = isinstance(action_space, gym.spaces.Box)
        act_dim = int(np.prod(action_space.shape)) if self.continuous else int(action_space.n)
        self.critic = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 1), std=1.0),
        )
        self.actor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, 64)),
            nn.Tanh(),
            layer_init(nn.Linear(64, act_dim), std=0.01),
        )
        if self.continuous:
            self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))
        self.obs_rms = RunningMeanStd(observation_space.shape)
        self.ret_rms = RunningMeanStd()

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).squeeze(-1)

    def distribution(self, x: torch.Tensor) -> Categorical | Normal:
        """pi(.|s): a categorical over the actor's logits, or a Gaussian around its output."""
        if self.continuous:
            mean = self.actor(x)
            return Normal(mean, self.actor_logstd.expand_as(mean).exp())
        return Categorical(logits=self.actor(x))

    def get_action(self, x: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """a ~ pi(.|s), or with deterministic the mode of pi(.|s) (course unit 6's evaluation)."""
        probs = self.distribution(x)
        return probs.mode if deterministic else probs.sample()

    def evaluate_actions(self, x: torch.Tensor, action: torch.Tensor):
        """log pi(a|s), the entropy of pi(.|s), and V(s), for actions taken in states x."""
        probs = self.distribution(x)
        logprob, entropy = probs.log_prob(action), probs.entropy()
        if self.continuous:  # independent dimensions: the joint log-density and the entropy are sums over them
            logprob, entropy = logprob.sum(-1), entropy.sum(-1)
        return logprob, entropy, self.get_value(x)


# ALGO LOGIC: VecNormalize's normalisation, n-step advantages and the actor-critic loss
def normalize_obs(agent: Agent, args: Args, obs: torch.Tensor, update: bool = False) -> torch.Tensor:
    """(o - mean) / sqrt(var + 1e-8), clipped to +-clip_obs; with update (training), the statistics take in the
    observations first. Evaluation leaves them frozen."""
    if not args.norm_obs:
        return obs
    if update:
        agent.obs_rms.update(obs)
    normalized = (obs - agent.obs_rms.mean) / torch.sqrt(agent.obs_rms.var + 1e-8)
    return normalized.clamp(-args.clip_obs, args.clip_obs).float()


def normalize_reward(agent: Agent, args: Args, reward: torch.Tensor, returns: torch.Tensor, done: torch.Tensor):
    """Training only: r / sqrt(Var[R] + 1e-8), clipped to +-clip_reward, where R_t = gamma * R_{t-1} + r_t is each
    env's discounted return so far (`returns`, updated here and reset where an episode ends)."""
    if not args.norm_reward:
        return reward
    returns.mul_(args.gamma).add_(reward)  # R_t = gamma * R_{t-1} + r_t
    agent.ret_rms.update(returns)
    returns[done] = 0.0
    return (reward / torch.sqrt(agent.ret_rms.var + 1e-8)).clamp(-args.clip_reward, args.clip_reward)


def compute_gae(rewards, values, last_values, terminated, truncated, final_values, gamma: float, gae_lambda: float):
    """Generalized Advantage Estimation over a rollout: tensors of shape [num_steps, num_envs].

    values[t] = V(s_t); last_values = V(s_T) of the observation after the rollout; final_values[t] = V(final
    observation) where truncated[t] (the state a time limit cut the episode at). Where an episode ended at step t,
    the state that followed in the rollout belongs to a new episode and is never bootstrapped from.
    Returns (advantages, returns) with returns = advantages + values, the critic's targets.
    """
    next_values = torch.cat((values[1:], last_values.unsqueeze(0)))
    next_values = torch.where(truncated.bool(), final_values, next_values)  # truncation: bootstrap V(final obs)
    next_values = next_values * (1.0 - terminated)  # termination: the return ends here
    # delta_t = r_t + gamma * V(s_{t+1}) - V(s_t)
    deltas = rewards + gamma * next_values - values
    # A_t = delta_t + gamma * lambda * A_{t+1}, cut where the episode ended
    decay = gamma * gae_lambda * (1.0 - torch.maximum(terminated, truncated))
    advantages = torch.zeros_like(rewards)
    lastgaelam = torch.zeros_like(last_values)
    for t in reversed(range(rewards.shape[0])):
        lastgaelam = advantages[t] = deltas[t] + decay[t] * lastgaelam
    return advantages, advantages + values


def a2c_loss(args: Args, logprob, entropy, values, advantages, returns):
    """The A2C objective on one rollout: (total loss, dict of detached statistics). logprob, entropy and values carry
    the gradient; advantages and returns (from compute_gae) do not."""
    if args.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    # Actor: grad J(theta) = E[grad_theta log pi_theta(a_t|s_t) A(s_t, a_t)], maximised, so its negative is minimised
    policy_loss = -(advantages * logprob).mean()

    # Critic: L^VF = (V(s_t) - V_t^targ)^2 with V_t^targ = A(s_t, a_t) + V(s_t), the n-step return (SB3's MSE, no 1/2)
    value_loss = ((returns - values) ** 2).mean()

    entropy_loss = entropy.mean()
    # L = L^actor - c_2 S[pi] + c_1 L^VF (signs for minimisation)
    loss = policy_loss - args.ent_coef * entropy_loss + args.vf_coef * value_loss
    stats = dict(policy_loss=policy_loss.detach(), value_loss=value_loss.detach(), entropy=entropy_loss.detach())
    return loss, stats


# EVALUATION, SAVING AND THE HUB
def evaluate(agent: Agent, args: Args, episodes: int, seed: int, device: torch.device, video_folder: Path | None):
    """Course unit 6's protocol (SB3's evaluate_policy on a VecNormalize in eval mode): whole episodes with
    deterministic actions, observations normalised with frozen statistics, raw rewards summed; the first one is
    recorded if video_folder."""
    env = make_env(args.gym_id, 0, video_folder, evaluation=True, render=args.render)()
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            with torch.inference_mode():
                obs = normalize_obs(agent, args, torch.Tensor(obs).to(device).unsqueeze(0))
                action = agent.get_action(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(env_action(action, env.action_space)[0])
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def evaluate_during_training(agent: Agent, args: Args, global_step: int, sps: int, writer: SummaryWriter, device):
    """--eval-every: the course's evaluation on fresh episodes, as SB3's EvalCallback plays them (the final evaluation's
    are fixed), logged and printed; returns the seconds it took."""
    start = time.time()
    returns = evaluate(agent, args, args.eval_episodes, args.seed + 10_000 + global_step, device, None)
    mean, std = float(np.mean(returns)), float(np.std(returns))
    writer.add_scalar("eval/mean_reward", mean, global_step)
    writer.add_scalar("eval/std_reward", std, global_step)
    line = f"mean_reward={mean:.2f} std_reward={std:.2f} result={mean - std:.2f}"
    print(f"evaluation at step {global_step:,} ({sps:,} SPS) over {len(returns)} episodes: {line}")
    return time.time() - start


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
    agent = Agent(env.observation_space, env.action_space).to(device)
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
- a2c
- reinforcement-learning
- deep-reinforcement-learning
- custom-implementation
- deep-rl-course
model-index:
- name: A2C
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

# A2C agent playing {env_id}

An A2C agent trained with `{SCRIPT.name}`, a single-file PyTorch implementation of A2C (Hugging Face Deep RL Course,
unit 6), on `{args.gym_id}`{f" (the current version of the course's `{env_id}`)" if args.gym_id != env_id else ""}.
It scores **{mean:.2f} +/- {std:.2f}** over {args.eval_episodes} evaluation episodes with deterministic actions.

## Use it
The weights and the observation and return statistics that evaluation normalises with are a plain `state_dict`
(`model.pt`, loaded with `torch.load(..., weights_only=True)`: nothing is unpickled) and `args.json` holds the
arguments it was trained with. Download this repository, then:

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

    # env setup: SAME_STEP autoreset hands over the final observation of an episode in the step that ends it, and the
    # first observation of the next episode in its place, so no step of the rollout is a phantom transition
    video_folder = run_dir / "videos" if args.capture_video else None
    vector_env = gym.vector.AsyncVectorEnv if args.async_envs else gym.vector.SyncVectorEnv
    envs = vector_env(
        [make_env(args.gym_id, i, video_folder) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    action_space = envs.single_action_space

    agent = Agent(envs.single_observation_space, action_space).to(device)
    if args.use_rms_prop:
        optimizer = torch.optim.RMSprop(
            agent.parameters(), lr=args.learning_rate, alpha=args.rms_prop_alpha, eps=args.rms_prop_eps
        )
    else:
        optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=args.rms_prop_eps)

    # ALGO LOGIC: storage setup
    storage_shape = (args.num_steps, args.num_envs)
    obs = torch.zeros(storage_shape + envs.single_observation_space.shape, device=device)
    actions = torch.zeros(storage_shape + action_space.shape, device=device, dtype=torch.long)
    if agent.continuous:
        actions = actions.float()
    rewards = torch.zeros(storage_shape, device=device)
    terminations = torch.zeros(storage_shape, device=device)
    truncations = torch.zeros(storage_shape, device=device)
    final_values = torch.zeros(storage_shape, device=device)  # V(final obs) where a time limit cut an episode
    discounted_returns = torch.zeros(args.num_envs, dtype=torch.float64, device=device)  # R_t of normalize_reward

    # episode statistics (raw rewards): the vector env reports none, so they are tracked here
    episode_returns = np.zeros(args.num_envs)
    episode_lengths = np.zeros(args.num_envs, dtype=np.int64)

    global_step = 0
    start_time = time.time()
    progress, stop = Progress(args.total_timesteps), StopSignal()
    eval_time = 0.0  # seconds of the evaluations during training, which the SPS leave out
    next_obs, _ = envs.reset(seed=args.seed)
    next_obs = normalize_obs(agent, args, torch.Tensor(next_obs).to(device), update=True)

    for iteration in range(1, args.num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        # ALGO LOGIC: rollout, num_steps steps of every env with the current policy
        final_values.zero_()
        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            with torch.no_grad():
                actions[step] = action = agent.get_action(next_obs)

            next_obs, reward, terminated, truncated, infos = envs.step(env_action(action, action_space))
            done = torch.as_tensor(terminated | truncated, device=device)
            # VecNormalize's order: the observation statistics first, then the return statistics, then final obs
            next_obs = normalize_obs(agent, args, torch.Tensor(next_obs).to(device), update=True)
            rewards[step] = normalize_reward(
                agent, args, torch.as_tensor(reward, device=device), discounted_returns, done
            )
            terminations[step] = torch.Tensor(terminated).to(device)
            truncations[step] = torch.Tensor(truncated).to(device)
            for i in np.flatnonzero(truncated & ~terminated):  # cut by a time limit: bootstrap from V(final obs)
                with torch.no_grad():
                    final_obs = normalize_obs(agent, args, torch.Tensor(infos["final_obs"][i]).to(device))
                    final_values[step, i] = agent.get_value(final_obs)

            # logging: every episode that ended, in every env
            episode_returns += reward
            episode_lengths += 1
            for i in np.flatnonzero(terminated | truncated):
                writer.add_scalar("charts/episodic_return", episode_returns[i], global_step)
                writer.add_scalar("charts/episodic_length", episode_lengths[i], global_step)
                progress.returns.append(episode_returns[i])
                episode_returns[i], episode_lengths[i] = 0.0, 0

        # ALGO LOGIC: log-probabilities, entropies and values of the rollout, advantages and value targets
        # the network did not change during the rollout, so its steps are scored in one batched pass, with the gradient
        # that the update uses (as SB3's A2C)
        b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
        b_actions = actions.reshape((-1,) + action_space.shape)
        b_logprobs, b_entropy, b_values = agent.evaluate_actions(b_obs, b_actions)
        with torch.no_grad():
            next_value = agent.get_value(next_obs)
            values = b_values.reshape(storage_shape)
            # gae_lambda = 1 (A2C's): the n-step A_t = r_t + gamma r_{t+1} + ... + gamma^(n-t) V(s_n) - V(s_t)
            advantages, returns = compute_gae(
                rewards, values, next_value, terminations, truncations, final_values, args.gamma, args.gae_lambda
            )
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)

        # ALGO LOGIC: one gradient step on the whole rollout
        loss, stats = a2c_loss(args, b_logprobs, b_entropy, b_values, b_advantages, b_returns)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
        optimizer.step()

        # logging (every 100 updates, as SB3's log_interval), evaluation and progress
        sps = int(global_step / (time.time() - start_time - eval_time))
        if iteration % 100 == 0 or iteration == args.num_iterations:
            y_pred, y_true = b_values.detach().cpu().numpy(), b_returns.cpu().numpy()
            var_y = np.var(y_true)
            explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            for name, value in zip(stats.keys(), torch.stack(list(stats.values())).tolist()):
                writer.add_scalar(f"losses/{name}", value, global_step)
            writer.add_scalar("losses/explained_variance", explained_var, global_step)
            writer.add_scalar("charts/SPS", sps, global_step)
        if args.eval_every and global_step % args.eval_every < args.batch_size:
            eval_time += evaluate_during_training(agent, args, global_step, sps, writer, device)
        progress.show(global_step, final=iteration == args.num_iterations)
        if stop.signum:
            break

    envs.close()
    finish(agent, args, run_dir, writer, device, stop.end())
    writer.close()


if __name__ == "__main__":
    try:
        args = parse_args()
        if args.load_model is not None:
            evaluate_saved_model(args)
        else:
            main(args)
    except KeyboardInterrupt:  # outside training, which stops on a signal by itself: nothing is lost
        print(f"{SCRIPT.name}: interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
