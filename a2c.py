"""Advantage Actor-Critic (A2C): Hugging Face Deep RL Course, unit 6.

A2C collects `num_steps` transitions from each of `num_envs` environments with the current policy, then takes one
gradient step on all of them: the actor follows grad log pi(a|s) * A(s, a), the critic regresses V(s) onto n-step
returns, and the advantage A(s, a) = Q(s, a) - V(s) is estimated as the n-step return minus V(s). It is the
synchronous, deterministic variant of A3C (Mnih et al. 2016, https://arxiv.org/abs/1602.01783). Defaults are those
of Stable-Baselines3's A2C as course unit 6 trains it: 4 envs x 5 steps, RMSprop (lr 7e-4, alpha 0.99, eps 1e-5),
gamma 0.99, GAE lambda 1.0 (plain n-step returns), entropy 0, value 0.5, gradient norm 0.5, separate 64-64 tanh
actor and critic, and VecNormalize's observation and reward normalisation for Box actions.

Discrete actions use a categorical policy, Box actions a diagonal Gaussian with a learned state-independent log-std
(actions are clipped to the bounds only on the way to the environment). Box, Discrete and Dict observations are
flattened (a Dict in the fixed, sorted key order of its space). An episode cut by a time limit bootstraps from the
value of its final observation; a terminated one does not. Evaluation is course unit 6's: deterministic actions,
observations normalised with statistics frozen at the end of training, raw rewards.

Run:
    python a2c.py                                   # PandaReachDense-v3 (course unit 6), the course's 1M steps
    python a2c.py --total-timesteps 60000 --eval-every 10000          # enough for the course's pass mark
    python a2c.py --env-id CartPole-v1 --num-envs 8 --total-timesteps 500000     # RL Zoo's A2C CartPole settings
    python a2c.py --load-model runs/<run>/model.pt --capture-video   # evaluate a saved model
    python a2c.py --help

Measured on a 2-core CPU (shared with other work; benchmarks/bench_a2c.py, seeds 1-6): PandaReachDense-v3 trains at
~470 steps/s (the 4 envs step in worker processes; pybullet's ~2 ms a step is most of the time) and first passes the
course mark, mean - std >= -3.5 over 10 deterministic episodes, after 40k-60k steps (median 50k), 1.3-2.3 minutes
with an evaluation every 10k steps: median 123 s, against 133 s for SB3's A2C (~410 steps/s, 30k-60k steps), 0.93x.
60k steps with seed 1 evaluate to -0.16 +/- 0.11. The full 1M steps would take about 36 minutes at that rate (not
run to the end). The CartPole command takes about 65 s (~8,400 steps/s) and evaluates to 500 +/- 0; with seed 1 it is
already there at 100k steps.
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
    """save the model (runs/<run>/model.pt: weights and normalisation statistics) and its arguments (args.json)"""
    load_model: str | None = None
    """path of a saved model.pt: skip training and evaluate it (its args.json must lie beside it)"""
    eval_episodes: int = 10
    """episodes of the evaluation after training (deterministic actions, as in course unit 6); 0 skips it"""
    eval_every: int = 0
    """also evaluate every this many steps during training, logging eval/mean_reward and the wall time (0: never)"""
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
    async_envs: bool | None = None
    """step the envs in worker processes, for slow envs (pybullet: ~2 ms a step); same results (None: Panda envs)"""
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
    norm_obs: bool | None = None
    """normalise observations by running mean and variance (None: for Box actions, as course unit 6's VecNormalize)"""
    norm_reward: bool | None = None
    """divide rewards by the running std of the discounted return (None: for Box actions, as course unit 6 does)"""
    clip_obs: float = 10.0
    """normalised observations are clipped to [-clip_obs, clip_obs]"""
    clip_reward: float = 10.0
    """normalised rewards are clipped to [-clip_reward, clip_reward]"""

    # to be filled in runtime
    gym_id: str = ""
    """the gymnasium id that runs (equals env_id unless env_id is retired)"""
    batch_size: int = 0
    """the batch size (computed in runtime)"""
    num_iterations: int = 0
    """the number of iterations (computed in runtime)"""


def fail(message: str):
    """Bad input: one line on stderr, exit status 2, no traceback."""
    sys.exit(f"{SCRIPT.name}: error: {message}")


def describe(error: Exception) -> str:
    """An exception in one line."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def check_args(args: Args):
    positive = ("total_timesteps", "num_envs", "num_steps", "learning_rate", "clip_obs", "clip_reward")
    for name in positive:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.gamma <= 1 or not 0 <= args.gae_lambda <= 1:
        fail(f"--gamma and --gae-lambda must lie in [0, 1], got {args.gamma} and {args.gae_lambda}")
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
    if args.load_model is None and args.total_timesteps < args.batch_size:
        fail(f"--total-timesteps {args.total_timesteps} is less than one rollout of {args.batch_size} steps")
    if args.hf_repo_id is not None and args.hf_repo_id.count("/") != 1:
        fail(f"--hf-repo-id must look like `username/repo-name`, got {args.hf_repo_id!r}")
    if args.hf_repo_id is not None:
        import huggingface_hub

        if not huggingface_hub.get_token():
            fail("--hf-repo-id needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
    args.num_iterations = args.total_timesteps // args.batch_size
    args.hub_package = args.hub_package or args.hf_repo_id is not None


# ======================================================================================================================
# Environment
# ======================================================================================================================
def resolve_env_id(env_id: str) -> str:
    """The gymnasium id to run: env_id itself, or the current version of a retired id (LunarLander-v2 -> v3).
    As in gym.make, `module:EnvName-v0` imports the module that registers the env first."""
    module, _, name = env_id.rpartition(":")
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


def check_spaces(gym_id: str) -> gym.Space:
    """Fail unless a2c.py handles the env's spaces; return its action space."""
    try:
        env = gym.make(gym_id)
    except Exception as error:  # e.g. a missing optional dependency of the environment
        fail(f"cannot create {gym_id} ({describe(error)})")
    observation_space, action_space = env.observation_space, env.action_space
    env.close()
    if not supported_observation(observation_space):
        fail(f"{gym_id} has observation space {observation_space}; a2c.py handles Box, Discrete and Dict")
    if not isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        fail(f"{gym_id} has action space {action_space}; a2c.py handles Discrete and Box actions")
    return action_space


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
            env = gym.wrappers.FlattenObservation(env)  # a Dict in its space's key order, Discrete one-hot
        return env

    return thunk


# ======================================================================================================================
# Observation and reward normalisation (SB3's VecNormalize, step by step)
# ======================================================================================================================
class RunningMeanStd:
    """Mean and variance of everything seen so far, merged batch by batch (Chan et al.'s parallel algorithm)."""

    def __init__(self, shape: tuple[int, ...] = (), count: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = count  # starts just above 0, as SB3's: the first batch all but replaces the initial (0, 1)

    def update(self, batch: np.ndarray):
        batch_mean, batch_var, batch_count = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total


class Normalizer:
    """Observations: (o - mean) / sqrt(var + 1e-8), clipped to +-clip_obs. Rewards: r / sqrt(Var[R] + 1e-8), clipped to
    +-clip_reward, where R_t = gamma * R_{t-1} + r_t is each env's discounted return so far (reset where an episode
    ends). Statistics are updated only during training; evaluation freezes them and never touches rewards."""

    def __init__(self, obs_dim: int, num_envs: int, args: Args):
        self.norm_obs, self.norm_reward = args.norm_obs, args.norm_reward
        self.clip_obs, self.clip_reward, self.gamma, self.epsilon = args.clip_obs, args.clip_reward, args.gamma, 1e-8
        self.obs_rms = RunningMeanStd((obs_dim,))
        self.ret_rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs)

    def observation(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if not self.norm_obs:
            return obs.astype(np.float32, copy=False)
        if update:
            self.obs_rms.update(obs)
        normalized = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return np.clip(normalized, -self.clip_obs, self.clip_obs).astype(np.float32)

    def reward(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Training only: update the return statistics with this step's rewards and scale them."""
        if not self.norm_reward:
            return reward
        self.returns = self.returns * self.gamma + reward
        self.ret_rms.update(self.returns)
        self.returns[done] = 0.0
        return np.clip(reward / np.sqrt(self.ret_rms.var + self.epsilon), -self.clip_reward, self.clip_reward)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            f"{name}_{field}": torch.as_tensor(getattr(rms, field), dtype=torch.float64)
            for name, rms in (("obs", self.obs_rms), ("ret", self.ret_rms))
            for field in ("mean", "var", "count")
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]):
        for name, rms in (("obs", self.obs_rms), ("ret", self.ret_rms)):
            for field in ("mean", "var"):
                value = state[f"{name}_{field}"].numpy()
                if value.shape != getattr(rms, field).shape:
                    raise ValueError(
                        f"{name}_{field} has shape {tuple(value.shape)}, expected {getattr(rms, field).shape}"
                    )
                setattr(rms, field, value.copy())
            rms.count = float(state[f"{name}_count"])


# ======================================================================================================================
# Network
# ======================================================================================================================
def layer_init(layer: nn.Linear, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class MLP(nn.Module):
    """Linear layers with tanh between them, orthogonally initialised as in CleanRL and SB3. The forward pass is
    written out in one module call: on a small CPU, the Python overhead of nested module calls costs more than the
    products."""

    def __init__(self, sizes: list[int], out_std: float):
        super().__init__()
        self.layers = nn.ModuleList(layer_init(nn.Linear(i, o)) for i, o in zip(sizes[:-2], sizes[1:-1]))
        self.layers.append(layer_init(nn.Linear(sizes[-2], sizes[-1]), std=out_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, out = self.layers
        for layer in hidden:
            x = torch.tanh(F.linear(x, layer.weight, layer.bias))
        return F.linear(x, out.weight, out.bias)


class Agent(nn.Module):
    """Separate actor and critic MLPs (64-64, tanh), as SB3's default A2C policy."""

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.Space):
        super().__init__()
        obs_dim = int(np.prod(observation_space.shape))
        self.continuous = isinstance(action_space, gym.spaces.Box)
        act_dim = int(np.prod(action_space.shape)) if self.continuous else int(action_space.n)
        self.critic = MLP([obs_dim, 64, 64, 1], out_std=1.0)
        self.actor = MLP([obs_dim, 64, 64, act_dim], out_std=0.01)
        if self.continuous:
            self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(x).squeeze(-1)

    def get_action(self, x: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Sample a ~ pi(.|s) (or take its mode): all that a rollout step needs, in as few operations as possible."""
        if self.continuous:
            mean = self.actor(x)
            return mean if deterministic else mean + self.actor_logstd.exp() * torch.randn_like(mean)
        logits = self.actor(x)
        if deterministic:
            return logits.argmax(dim=-1)
        # Gumbel-max trick: argmax(logits + G), with G = -log(E), E ~ Exp(1), is a sample of softmax(logits)
        return (logits - torch.empty_like(logits).exponential_().log()).argmax(dim=-1)

    def evaluate_actions(self, x: torch.Tensor, action: torch.Tensor):
        """Score actions taken in states x: log pi(a|s), the entropy of pi(.|s), and V(s)."""
        if self.continuous:
            mean = self.actor(x)
            dist = Normal(mean, self.actor_logstd.expand_as(mean).exp(), validate_args=False)
            # independent dimensions: the joint log-density and the entropy are sums over them
            return dist.log_prob(action).sum(-1), dist.entropy().sum(-1), self.get_value(x)
        # the categorical distribution written out: a third of the operations of torch's Categorical
        log_probs = torch.log_softmax(self.actor(x), dim=-1)
        logprob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)  # H = -sum_a pi(a|s) log pi(a|s)
        return logprob, entropy, self.get_value(x)


# ======================================================================================================================
# The algorithm's pure pieces
# ======================================================================================================================
def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    last_values: torch.Tensor,
    terminated: torch.Tensor,
    truncated: torch.Tensor,
    final_values: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized Advantage Estimation over a rollout of shape [num_steps, num_envs]; with gae_lambda = 1 (A2C's
    default) the advantage is the n-step one, A_t = r_t + gamma r_{t+1} + ... + gamma^(n-t) V(s_n) - V(s_t).

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

    # Actor: grad J(theta) = E[grad_theta log pi_theta(a_t|s_t) A(s_t, a_t)],
    # with the advantage A(s_t, a_t) = Q(s_t, a_t) - V(s_t) ~ r_t + gamma V(s_{t+1}) - V(s_t) (n-step: compute_gae);
    # maximised, so its negative is minimised
    policy_loss = -(advantages * logprob).mean()

    # Critic: L^VF = (V(s_t) - V_t^targ)^2 with V_t^targ = A(s_t, a_t) + V(s_t), the n-step return (SB3's MSE, no 1/2)
    value_loss = ((returns - values) ** 2).mean()

    entropy_loss = entropy.mean()
    # L = L^actor - c_2 S[pi] + c_1 L^VF (signs for minimisation)
    loss = policy_loss - args.ent_coef * entropy_loss + args.vf_coef * value_loss
    stats = dict(policy_loss=policy_loss.detach(), value_loss=value_loss.detach(), entropy=entropy_loss.detach())
    return loss, stats


# ======================================================================================================================
# Evaluation, saving and the Hub
# ======================================================================================================================
def env_action(action: torch.Tensor, action_space: gym.Space) -> np.ndarray:
    """What the environment receives: Gaussian actions are clipped to the bounds, stored actions never are."""
    action = action.cpu().numpy()
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(action, action_space.low, action_space.high)
    return action


def evaluate(
    agent: Agent,
    normalizer: Normalizer,
    gym_id: str,
    episodes: int,
    seed: int,
    device: torch.device,
    video_folder: str | None = None,
) -> list[float]:
    """Course unit 6's protocol (SB3's evaluate_policy on a VecNormalize in eval mode): whole episodes with
    deterministic actions, observations normalised with frozen statistics, raw rewards summed. The first episode is
    recorded if video_folder."""
    env = make_env(gym_id, 0, video_folder, evaluation=True)()
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            obs = torch.as_tensor(normalizer.observation(obs), device=device).unsqueeze(0)
            with torch.inference_mode():
                action = agent.get_action(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(env_action(action[0], env.action_space))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def load_agent(path: str, device: torch.device) -> tuple[Agent, Normalizer, Args]:
    """A saved model, its normalisation statistics and the arguments it was trained with; one clear line for anything
    missing or corrupt."""
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
    agent = Agent(env.observation_space, env.action_space).to(device)
    normalizer = Normalizer(int(np.prod(env.observation_space.shape)), 1, saved)
    env.close()
    try:
        state = torch.load(model_path, map_location=device, weights_only=True)  # never unpickles code
        agent.load_state_dict(state["agent"])
        normalizer.load_state_dict({k: v.cpu() for k, v in state["normalizer"].items()})
    except Exception as error:
        fail(f"cannot load {path} as an a2c.py model for {saved.gym_id} ({describe(error)})")
    return agent, normalizer, saved


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

An A2C agent trained with `a2c.py`, a single-file PyTorch implementation of A2C (Hugging Face Deep RL Course, unit 6),
on `{args.gym_id}`{f" (the current version of the course's `{env_id}`)" if args.gym_id != env_id else ""}.
It scores **{mean:.2f} +/- {std:.2f}** over {args.eval_episodes} evaluation episodes with deterministic actions.

## Use it
`model.pt` holds two plain `state_dict`s, loaded with `torch.load(..., weights_only=True)` (nothing is unpickled):
`agent`, the weights, and `normalizer`, the observation and return statistics that evaluation needs. `args.json` holds
the arguments it was trained with. Download this repository, then:

```
python a2c.py --load-model model.pt --capture-video
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
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload A2C agent")
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


def report(returns: list[float], label: str) -> tuple[float, float]:
    mean, std = float(np.mean(returns)), float(np.std(returns))
    print(f"{label} over {len(returns)} episodes: mean_reward={mean:.2f} std_reward={std:.2f} result={mean - std:.2f}")
    return mean, std


def finish(
    agent: Agent, normalizer: Normalizer, args: Args, run_dir: Path, writer: SummaryWriter, device: torch.device
):
    """Save, evaluate, package and upload, as the arguments ask."""
    model_path = run_dir / "model.pt"
    if args.save_model or args.hub_package:
        torch.save({"agent": agent.state_dict(), "normalizer": normalizer.state_dict()}, model_path)
        (run_dir / "args.json").write_text(json.dumps(vars(args), indent=2))
        print(f"model saved to {model_path}")
    if args.eval_episodes == 0:
        return
    video_folder = run_dir / "videos" / "eval" if args.capture_video or args.hub_package else None
    returns = evaluate(
        agent,
        normalizer,
        args.gym_id,
        args.eval_episodes,
        args.seed + 10_000,
        device,
        video_folder and str(video_folder),
    )
    for idx, episodic_return in enumerate(returns):
        writer.add_scalar("eval/episodic_return", episodic_return, idx)
    mean, std = report(returns, "evaluation")
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
        agent, normalizer, saved = load_agent(args.load_model, device)
        this_command = ("seed", "cuda", "torch_threads", "track", "wandb_project_name", "wandb_entity",
                        "capture_video", "eval_episodes", "hub_package", "hf_repo_id", "load_model")  # fmt: skip
        for field in this_command:  # this command's settings, not the saved run's
            setattr(saved, field, getattr(args, field))
        saved.save_model = False
        _, run_dir, writer = start_run(saved)
        finish(agent, normalizer, saved, run_dir, writer, device)
        writer.close()
        return

    args.gym_id = resolve_env_id(args.env_id)
    continuous = isinstance(check_spaces(args.gym_id), gym.spaces.Box)
    # course unit 6 wraps its (Box-action) Panda envs in VecNormalize; unset flags follow the action space
    args.norm_obs = continuous if args.norm_obs is None else args.norm_obs
    args.norm_reward = continuous if args.norm_reward is None else args.norm_reward
    panda = args.gym_id.rpartition(":")[2].startswith("Panda")
    args.async_envs = panda if args.async_envs is None else args.async_envs
    run_name, run_dir, writer = start_run(args)
    device = seed_everything(args)

    # env setup: SAME_STEP autoreset hands over the final observation of an episode in the step that ends it, and the
    # first observation of the next episode in its place, so no step of the rollout is a phantom transition.
    video_folder = str(run_dir / "videos") if args.capture_video else None
    vector_env = gym.vector.AsyncVectorEnv if args.async_envs else gym.vector.SyncVectorEnv
    envs = vector_env(
        [make_env(args.gym_id, i, video_folder) for i in range(args.num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    action_space = envs.single_action_space

    agent = Agent(envs.single_observation_space, action_space).to(device)
    if args.use_rms_prop:
        optimizer = torch.optim.RMSprop(
            agent.parameters(), lr=args.learning_rate, alpha=args.rms_prop_alpha, eps=args.rms_prop_eps, foreach=True
        )
    else:
        optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=args.rms_prop_eps, fused=True)
    normalizer = Normalizer(envs.single_observation_space.shape[0], args.num_envs, args)

    # rollout storage: observations and actions live on device; what the envs return is gathered on the host and
    # moved once per rollout
    storage_shape = (args.num_steps, args.num_envs)
    obs = torch.zeros(storage_shape + envs.single_observation_space.shape, device=device)
    action_dtype = torch.float32 if agent.continuous else torch.long
    actions = torch.zeros(storage_shape + action_space.shape, device=device, dtype=action_dtype)
    rewards = np.zeros(storage_shape, dtype=np.float32)
    terminations = np.zeros(storage_shape, dtype=np.float32)
    truncations = np.zeros(storage_shape, dtype=np.float32)

    # episode statistics (raw rewards, before normalisation): the vector env reports none, so they are tracked here
    episode_returns = np.zeros(args.num_envs)
    episode_lengths = np.zeros(args.num_envs, dtype=np.int64)
    recent_returns = deque(maxlen=20)

    global_step = 0
    start_time = last_print = time.time()
    eval_time = 0.0  # seconds spent in periodic evaluations
    next_obs_np, _ = envs.reset(seed=args.seed)
    envs.action_space.seed(args.seed)
    next_obs = torch.as_tensor(normalizer.observation(next_obs_np, update=True), device=device)

    for iteration in range(1, args.num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        # ==============================================================================================================
        # Rollout: num_steps steps of every env with the current policy
        # ==============================================================================================================
        cut_episodes = []  # (step, env, normalised final observation) of the episodes a time limit cut
        for step in range(args.num_steps):
            global_step += args.num_envs
            obs[step] = next_obs
            with torch.inference_mode():
                actions[step] = action = agent.get_action(next_obs)

            next_obs_np, reward, terminated, truncated, infos = envs.step(env_action(action, action_space))
            done = terminated | truncated
            # normalisation with statistics updated first, as VecNormalize: obs, then the rewards, then final obs
            next_obs = torch.as_tensor(normalizer.observation(next_obs_np, update=True), device=device)
            rewards[step] = normalizer.reward(reward, done)
            terminations[step], truncations[step] = terminated, truncated
            cut_episodes += [
                (step, i, normalizer.observation(infos["final_obs"][i]))
                for i in np.flatnonzero(truncated & ~terminated)
            ]

            # logging: every episode that ended, in every env
            episode_returns += reward
            episode_lengths += 1
            for i in np.flatnonzero(done):
                writer.add_scalar("charts/episodic_return", episode_returns[i], global_step)
                writer.add_scalar("charts/episodic_length", episode_lengths[i], global_step)
                recent_returns.append(episode_returns[i])
                episode_returns[i], episode_lengths[i] = 0.0, 0

        # ==============================================================================================================
        # Log-probabilities, values, advantages and value targets
        # ==============================================================================================================
        # the networks did not change during the rollout, so all its steps are scored in one batched pass, with the
        # gradient this time: the update below uses it
        b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
        b_actions = actions.reshape((-1,) + action_space.shape)
        b_logprobs, b_entropy, b_values = agent.evaluate_actions(b_obs, b_actions)
        with torch.no_grad():
            last_values = agent.get_value(next_obs)
            final_values = torch.zeros(storage_shape, device=device)
            if cut_episodes:  # bootstrap values of the final observations of truncated episodes
                steps, env_ids, final_obs = zip(*cut_episodes)
                final_obs = torch.as_tensor(np.stack(final_obs), device=device)
                final_values[steps, env_ids] = agent.get_value(final_obs)
            advantages, returns = compute_gae(
                torch.as_tensor(rewards, device=device),
                b_values.detach().reshape(storage_shape),
                last_values,
                torch.as_tensor(terminations, device=device),
                torch.as_tensor(truncations, device=device),
                final_values,
                args.gamma,
                args.gae_lambda,
            )
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)

        # ==============================================================================================================
        # Optimizing the policy and value network: one gradient step on the whole rollout
        # ==============================================================================================================
        loss, stats = a2c_loss(args, b_logprobs, b_entropy, b_values, b_advantages, b_returns)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm, foreach=True)
        optimizer.step()

        # ==============================================================================================================
        # Plumbing: logging (every 100 updates, as SB3's log_interval), evaluation and progress
        # ==============================================================================================================
        sps = int(global_step / (time.time() - start_time - eval_time))  # training steps/s, evaluations excluded
        if iteration % 100 == 0 or iteration == args.num_iterations:
            y_pred, y_true = b_values.detach().cpu().numpy(), b_returns.cpu().numpy()
            var_y = np.var(y_true)
            explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
            for name, value in zip(stats.keys(), torch.stack(list(stats.values())).tolist()):
                writer.add_scalar(f"losses/{name}", value, global_step)
            writer.add_scalar("losses/explained_variance", explained_var, global_step)
            writer.add_scalar("charts/SPS", sps, global_step)
        if args.eval_every and global_step // args.eval_every > (global_step - args.batch_size) // args.eval_every:
            eval_start = time.time()
            # fresh episodes at each evaluation, as SB3's EvalCallback plays them; the final evaluation's are fixed
            seed = args.seed + 10_000 + global_step
            returns = evaluate(agent, normalizer, args.gym_id, args.eval_episodes, seed, device)
            eval_time += time.time() - eval_start
            label = f"evaluation at step {global_step:,} ({time.time() - start_time:.1f} s, {sps:,} SPS)"
            mean, std = report(returns, label)
            writer.add_scalar("eval/mean_reward", mean, global_step)
            writer.add_scalar("eval/std_reward", std, global_step)
        if time.time() - last_print > 10 or iteration == args.num_iterations:
            last_print = time.time()
            recent = f"{np.mean(recent_returns):.2f}" if recent_returns else "n/a"
            print(f"step {global_step:>9,}/{args.total_timesteps:,} | {sps:,} SPS | mean return (last 20) {recent}")

    envs.close()
    finish(agent, normalizer, args, run_dir, writer, device)
    writer.close()


if __name__ == "__main__":
    main(tyro.cli(Args))
