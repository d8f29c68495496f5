"""Proximal Policy Optimization (PPO) on Atari games: Hugging Face Deep RL Course, unit 8 (part 2 trains on Atari).

PPO collects `num_steps` transitions from `num_envs` environments with the current policy, estimates advantages with
GAE, then improves the policy for a few epochs on minibatches of that rollout while clipping the probability ratio
pi_new / pi_old to [1 - clip, 1 + clip], so that one update cannot move the policy far from the one that collected
the data. Paper: Schulman et al. 2017, https://arxiv.org/abs/1707.06347. Defaults follow CleanRL's published
`ppo_atari.py`; this script is ppo.py with the environment and the network changed (`diff ppo.py ppo_atari.py`).

The games run in C++ threads (ale_py's AtariVectorEnv) with the DeepMind preprocessing: frame skip 4 with a max-pool
over the last two frames, 84x84 grayscale, a stack of 4 frames, up to 30 no-op starts and FIRE on reset. The policy
learns from rewards clipped to their sign and treats the loss of a life as the end of an episode, as CleanRL's
wrappers make it; `charts/episodic_return` and the evaluation are the raw scores of whole games (all lives). The
108k-frame cap of a game is a truncation: it bootstraps from the value of the final observation. The Nature CNN
(Mnih et al. 2015) feeds a linear actor and a linear critic; frames stay uint8 until they are on the device.

Run:
    python ppo_atari.py                                       # BreakoutNoFrameskip-v4, 10M steps
    python ppo_atari.py --env-id ALE/SpaceInvaders-v5         # v5 ids play with sticky actions (0.25)
    python ppo_atari.py --load-model runs/<run>/model.pt --capture-video   # evaluate a saved model
    python ppo_atari.py --checkpoint-every 500000             # SIGINT/SIGTERM also checkpoint, then stop
    python ppo_atari.py --resume runs/<run>/checkpoint.pt     # go on from the checkpoint, same run and curves
    torchrun --standalone --nproc-per-node 2 ppo_atari.py --num-envs 16   # one agent, 2 processes x 8 envs
    python ppo_atari.py --help

Under torchrun, --num-envs counts the envs of all processes; each process steps its share, takes minibatches of its
own rollout and averages its gradients with the others' (one all-reduce per minibatch), so that every process holds
the same parameters; step counts are of all processes, and rank 0 alone logs, checkpoints, saves and evaluates.

On a 2-core CPU (AVX-512, torch 2.13) an iteration of 1,024 steps takes 2.3-2.5 s (0.3 s of rollout forwards, 0.5 s
of game steps, 1.5 s of updates), and a process spends 4-5 s starting and ending; whole processes ran at 346 steps/s
over 10,240 steps and 416 over 51,200 (benchmarks/bench_atari.py: 1.43x and 1.51x Stable-Baselines3's PPO with the
same hyperparameters on the same machine, 1.58x CleanRL's ppo_atari.py), so the default 10M steps take about 7
hours. At equal steps the returns are the peers': after 1M steps on Breakout, 23.95 +/- 0.95 over seeds 1 and 2 here
and 25.30 for Stable-Baselines3 (seed 1), same evaluation (results/README.md); CleanRL reports 414.66 +/- 28.09
after 10M.
"""

import datetime
import json
import os
import random
import shutil
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import tyro
from ale_py.vector_env import AtariVectorEnv
from gymnasium.utils.save_video import capped_cubic_video_schedule
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
    torch_threads: int = 2
    """CPU threads for torch (0: torch's default); on a 2-core CPU, 2 (the env threads sleep while torch works)"""
    env_threads: int = 2
    """C++ threads that step the games (0: one per core); on a 2-core CPU, 2 (torch sleeps while they work)"""
    track: bool = False
    """if toggled, the run is tracked with Weights and Biases"""
    wandb_project_name: str = "deep-rl-course"
    """the wandb project name"""
    wandb_entity: str | None = None
    """the wandb entity (team) name"""
    capture_video: bool = False
    """record videos of the agent (training games of the first env, and the evaluation) under runs/<run>/videos"""
    save_model: bool = False
    """save the model (runs/<run>/model.pt) and its arguments (args.json beside it)"""
    load_model: str | None = None
    """path of a saved model.pt: skip training and evaluate it (its args.json must lie beside it)"""
    eval_episodes: int = 10
    """whole games of the evaluation after training (sampled actions, as in course unit 8); 0 skips it"""
    hub_package: bool = False
    """build the Hugging Face Hub folder (runs/<run>/hub: card, results, replay video, model, args, script)"""
    hf_repo_id: str | None = None
    """upload the Hub folder to this model repo, e.g. `user/ppo-BreakoutNoFrameskip-v4` (implies --hub-package)"""
    checkpoint_every: int = 0
    """write runs/<run>/checkpoint.pt every this many steps (0: only when SIGINT or SIGTERM stops the run)"""
    resume: str | None = None
    """path of a checkpoint.pt: continue its run (arguments, run name, TensorBoard dir) from the step it was saved at"""

    # Algorithm specific arguments
    env_id: str = "BreakoutNoFrameskip-v4"
    """the id of the Atari game: `XNoFrameskip-v4` plays without sticky actions, `ALE/X-v5` with sticky actions 0.25"""
    total_timesteps: int = 10_000_000
    """total timesteps of the experiment"""
    learning_rate: float = 2.5e-4
    """the learning rate of the optimizer"""
    num_envs: int = 8
    """the number of parallel game environments"""
    num_steps: int = 128
    """the number of steps to run in each environment per policy rollout"""
    anneal_lr: bool = True
    """toggle learning rate annealing (linear decay to 0 over the run)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda for the general advantage estimation"""
    num_minibatches: int = 4
    """the number of mini-batches"""
    update_epochs: int = 4
    """the K epochs to update the policy"""
    norm_adv: bool = True
    """toggles advantages normalization (per minibatch)"""
    clip_coef: float = 0.1
    """the surrogate clipping coefficient"""
    clip_vloss: bool = True
    """toggles whether or not to use a clipped loss for the value function, as per the paper"""
    ent_coef: float = 0.01
    """coefficient of the entropy"""
    vf_coef: float = 0.5
    """coefficient of the value function"""
    max_grad_norm: float = 0.5
    """the maximum norm for the gradient clipping"""
    target_kl: float | None = None
    """the target KL divergence threshold: stop the epochs of an update early when it is exceeded"""

    # to be filled in runtime
    game: str = ""
    """the ROM that runs (from env_id)"""
    repeat_action_probability: float = 0.0
    """the sticky-action probability that env_id means (0.25 for v5 ids, 0 for NoFrameskip-v4 ids)"""
    batch_size: int = 0
    """the batch size (computed in runtime)"""
    minibatch_size: int = 0
    """the mini-batch size (computed in runtime)"""
    num_iterations: int = 0
    """the number of iterations (computed in runtime)"""
    world_size: int = 1
    """the number of processes training together (torchrun's WORLD_SIZE, set in runtime)"""
    local_num_envs: int = 0
    """the envs each process steps: num_envs / world_size (computed in runtime)"""


def fail(message: str):
    """Bad input: one line on stderr, exit status 2, no traceback."""
    sys.exit(f"{SCRIPT.name}: error: {message}")


def describe(error: Exception) -> str:
    """An exception in one line."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


def check_args(args: Args):
    positive = ("total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "learning_rate")
    for name in positive:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.gamma <= 1 or not 0 <= args.gae_lambda <= 1:
        fail(f"--gamma and --gae-lambda must lie in [0, 1], got {args.gamma} and {args.gae_lambda}")
    if args.eval_episodes < 0:
        fail(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.torch_threads < 0 or args.env_threads < 0:
        fail(f"--torch-threads and --env-threads must be >= 0, got {args.torch_threads} and {args.env_threads}")
    if args.checkpoint_every < 0:
        fail(f"--checkpoint-every must be >= 0 steps, got {args.checkpoint_every}")
    args.world_size = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun sets it; a plain run is one process
    if args.num_envs % args.world_size:
        fail(f"--num-envs {args.num_envs} cannot be shared by {args.world_size} processes; choose a multiple")
    args.local_num_envs = args.num_envs // args.world_size
    args.batch_size = args.num_envs * args.num_steps
    if args.local_num_envs * args.num_steps % args.num_minibatches:
        per_process = "" if args.world_size == 1 else f" per process ({args.world_size} processes)"
        fail(
            f"num_envs * num_steps = {args.local_num_envs * args.num_steps}{per_process} is not divisible by "
            f"--num-minibatches {args.num_minibatches}; choose a divisor"
        )
    if args.load_model is None and args.total_timesteps < args.batch_size:
        fail(f"--total-timesteps {args.total_timesteps} is less than one rollout of {args.batch_size} steps")
    if args.hf_repo_id is not None and args.hf_repo_id.count("/") != 1:
        fail(f"--hf-repo-id must look like `username/repo-name`, got {args.hf_repo_id!r}")
    args.minibatch_size = args.batch_size // args.num_minibatches
    args.num_iterations = args.total_timesteps // args.batch_size
    args.hub_package = args.hub_package or args.hf_repo_id is not None


# ======================================================================================================================
# Environment
# ======================================================================================================================
MAX_FRAMES = 108_000  # 30 minutes of play at 60 frames/s: the cap of a game (a truncation) in the usual protocol


def resolve_env_id(env_id: str) -> tuple[str, float]:
    """The ROM and the sticky-action probability an Atari id means: `BreakoutNoFrameskip-v4` -> ("breakout", 0.0),
    `ALE/Breakout-v5` -> ("breakout", 0.25). The rest of the preprocessing is the same for both."""
    gym.register_envs(ale_py)
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as error:
        fail(f"unknown env id {env_id!r}: {describe(error)}")
    if spec.entry_point != "ale_py.env:AtariEnv":
        fail(
            f"{env_id} is not an Atari game: {SCRIPT.name} plays ids such as BreakoutNoFrameskip-v4 or ALE/Breakout-v5"
        )
    if not (env_id.endswith("NoFrameskip-v4") or spec.namespace == "ALE") or spec.kwargs.get("obs_type") == "ram":
        fail(
            f"{env_id}: use the id `{spec.name.removesuffix('NoFrameskip')}NoFrameskip-v4` (no sticky actions) or "
            f"`ALE/{spec.name.removesuffix('NoFrameskip')}-v5` (sticky actions 0.25); both play from screen pixels"
        )
    return spec.kwargs["game"], float(spec.kwargs.get("repeat_action_probability", 0.0))


class VideoWriter:
    """Streams RGB frames into an mp4 (imageio-ffmpeg, which moviepy brings), so that a long game never sits in memory.
    One frame per agent step, i.e. every 4th frame of the game: 15 frames/s is real time."""

    def __init__(self, path: Path, fps: int = 15):
        import imageio_ffmpeg

        path.parent.mkdir(parents=True, exist_ok=True)
        self.frames = imageio_ffmpeg.write_frames(
            str(path), (160, 210), fps=fps, macro_block_size=1, ffmpeg_log_level="error"
        )
        self.frames.send(None)

    def write(self, frame: np.ndarray):
        self.frames.send(np.ascontiguousarray(frame))

    def close(self):
        self.frames.close()


class AtariGames:
    """`num_envs` Atari games stepped in C++ threads by ale_py's AtariVectorEnv, with the DeepMind preprocessing:
    frame skip 4 with a max-pool over the last two frames, 84x84 grayscale, the last 4 frames stacked, up to 30 no-op
    starts, FIRE on reset, and the 108k-frame cap. The games are whole (all lives) and their rewards raw; step()
    derives the learning signals from them, as CleanRL's EpisodicLifeEnv and ClipRewardEnv do:

    - reward: sign(r), the clipped reward;
    - terminated: the game is over, or a life was lost (the end of an episode for the value target; the game goes on);
    - truncated: the 108k-frame cap cut the game (bootstrap from infos["final_obs"]);
    - infos["raw_reward"], infos["game_over"]: the score and the ends of whole games, for logging and evaluation.

    (The vector env's own `episodic_life` restarts the whole game at a life loss, and its `reward_clipping` hides the
    score, so both are off.) Autoreset is SAME_STEP: the step that ends a game returns the first observation of the
    next one and the final observation in infos["final_obs"], so no step of a rollout is a phantom transition.

    With a video folder, a twin of env 0 (the same game, seed and actions, in RGB at full size) records env 0's
    games that gymnasium's capped cubic schedule picks (0, 1, 8, 27, ...), or only the first in an evaluation.
    """

    def __init__(self, args: Args, num_envs: int, video_folder: str | None = None, evaluation: bool = False):
        rules = dict(
            repeat_action_probability=args.repeat_action_probability,
            frameskip=4,
            maxpool=True,
            noop_max=30,
            use_fire_reset=True,
            max_num_frames_per_episode=MAX_FRAMES,
            episodic_life=False,
            reward_clipping=False,
            autoreset_mode="SameStep",
        )
        threads = min(args.env_threads, num_envs)
        self.envs = AtariVectorEnv(args.game, num_envs, num_threads=threads, stack_num=4, **rules)
        self.single_observation_space = self.envs.single_observation_space
        self.single_action_space = self.envs.single_action_space
        self.num_envs = num_envs
        self.lives = np.zeros(num_envs, dtype=np.int32)
        self.video_folder, self.evaluation, self.twin, self.video = video_folder, evaluation, None, None
        if video_folder is not None:
            rgb = dict(grayscale=False, img_height=210, img_width=160, stack_num=1)
            self.twin = AtariVectorEnv(args.game, 1, num_threads=1, **rgb, **rules)

    def reset(self, seed: int):
        """Env i plays its games from seed + i."""
        obs, infos = self.envs.reset(seed=seed)
        self.lives = infos["lives"]
        if self.twin is not None:
            frames, _ = self.twin.reset(seed=seed)
            self.game = 0
            self.start_video(frames)
        return obs, infos

    def step(self, actions: np.ndarray):
        obs, reward, terminated, truncated, infos = self.envs.step(actions)
        game_over = terminated | truncated
        life_lost = (infos["lives"] < self.lives) & ~game_over  # a new game shows full lives: not a loss
        self.lives = infos["lives"]
        if self.twin is not None and (self.video is not None or not self.evaluation):
            self.record(actions[:1], game_over[0])
        infos["raw_reward"], infos["game_over"] = reward.astype(np.float64), game_over
        return obs, np.sign(reward).astype(np.float32), terminated | life_lost, truncated, infos

    def start_video(self, frames: np.ndarray):
        wanted = self.game == 0 if self.evaluation else capped_cubic_video_schedule(self.game)
        if wanted:
            prefix = "eval" if self.evaluation else "train"
            self.video = VideoWriter(Path(self.video_folder) / f"{prefix}-episode-{self.game}.mp4")
            self.video.write(frames[0, 0])

    def record(self, action: np.ndarray, game_over: bool):
        frames, _, _, _, infos = self.twin.step(action)
        if self.video is not None:
            self.video.write((infos["final_obs"] if game_over else frames)[0, 0])
        if game_over:
            if self.video is not None:
                self.video.close()
                self.video = None
            self.game += 1
            self.start_video(frames)

    def close(self):
        if self.video is not None:
            self.video.close()
        self.envs.close()
        if self.twin is not None:
            self.twin.close()


# ======================================================================================================================
# Network
# ======================================================================================================================
def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """The Nature CNN (conv 32x8x8/4, 64x4x4/2, 64x3x3/1, fc 512) shared by a linear actor and a linear critic,
    orthogonally initialised, as in CleanRL's ppo_atari.py (same parameter names). Frames arrive as uint8 and become
    floats in [0, 1] on the device. Weights and inputs are channels-last: on a CPU the convolutions then run about
    1.7x faster than in the default layout (measured on a 2-core AVX-512 CPU), with the same numbers."""

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.spaces.Discrete):
        super().__init__()
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(observation_space.shape[0], 32, 8, stride=4)),
            nn.ReLU(inplace=True),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(inplace=True),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)),
            nn.ReLU(inplace=True),
        )
        self.actor = layer_init(nn.Linear(512, int(action_space.n)), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1.0)
        self.to(memory_format=torch.channels_last)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x.contiguous(memory_format=torch.channels_last).float().mul_(1.0 / 255.0))

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(self.hidden(x)).squeeze(-1)

    def get_action(self, x: torch.Tensor) -> torch.Tensor:
        """Sample a ~ pi(.|s): all that an evaluation step needs."""
        logits = self.actor(self.hidden(x))
        # Gumbel-max trick: argmax(logits + G), with G = -log(E), E ~ Exp(1), is a sample of softmax(logits)
        return (logits - torch.empty_like(logits).exponential_().log()).argmax(dim=-1)

    def get_action_and_value(self, x: torch.Tensor):
        """Sample a ~ pi(.|s) and return it with log pi(a|s) and V(s): what a rollout step stores."""
        hidden = self.hidden(x)
        log_probs = torch.log_softmax(self.actor(hidden), dim=-1)
        action = (log_probs - torch.empty_like(log_probs).exponential_().log()).argmax(dim=-1)  # Gumbel-max
        return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1), self.critic(hidden).squeeze(-1)

    def evaluate_actions(self, x: torch.Tensor, action: torch.Tensor):
        """Score actions taken in states x: log pi(a|s), the entropy of pi(.|s), and V(s)."""
        hidden = self.hidden(x)
        # the categorical distribution written out: a third of the operations of torch's Categorical
        log_probs = torch.log_softmax(self.actor(hidden), dim=-1)
        logprob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)  # H = -sum_a pi(a|s) log pi(a|s)
        return logprob, entropy, self.critic(hidden).squeeze(-1)


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
    """Generalized Advantage Estimation over a rollout of shape [num_steps, num_envs].

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


def ppo_loss(agent: Agent, args: Args, obs, actions, old_logprobs, advantages, returns, old_values):
    """The clipped PPO objective on one minibatch: (total loss, dict of detached statistics)."""
    newlogprob, entropy, newvalue = agent.evaluate_actions(obs, actions)
    logratio = newlogprob - old_logprobs
    ratio = logratio.exp()  # r_t(theta) = pi_theta(a_t|s_t) / pi_theta_old(a_t|s_t)
    with torch.no_grad():
        old_approx_kl = (-logratio).mean()
        approx_kl = ((ratio - 1) - logratio).mean()  # http://joschu.net/blog/kl-approx.html
        clipfrac = ((ratio - 1.0).abs() > args.clip_coef).float().mean()
    if args.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

    # L^CLIP = E[min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t)], maximised, so its negative is minimised
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
    pg_loss = torch.max(pg_loss1, pg_loss2).mean()

    # L^VF = (V(s_t) - V_t^targ)^2, optionally clipped around the old value estimate
    if args.clip_vloss:
        v_loss_unclipped = (newvalue - returns) ** 2
        v_clipped = old_values + torch.clamp(newvalue - old_values, -args.clip_coef, args.clip_coef)
        v_loss_clipped = (v_clipped - returns) ** 2
        v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
    else:
        v_loss = 0.5 * ((newvalue - returns) ** 2).mean()

    entropy_loss = entropy.mean()
    # L = L^CLIP - c_2 S[pi] + c_1 L^VF (signs for minimisation)
    loss = pg_loss - args.ent_coef * entropy_loss + v_loss * args.vf_coef
    stats = dict(
        policy_loss=pg_loss.detach(),
        value_loss=v_loss.detach(),
        entropy=entropy_loss.detach(),
        old_approx_kl=old_approx_kl,
        approx_kl=approx_kl,
        clipfrac=clipfrac,
    )
    return loss, stats


# ======================================================================================================================
# Evaluation, saving and the Hub
# ======================================================================================================================
def env_action(action: torch.Tensor, action_space: gym.Space) -> np.ndarray:
    """What the environment receives: the sampled action indices, on the host."""
    return action.cpu().numpy()


def evaluate(agent: Agent, args: Args, episodes: int, seed: int, device: torch.device, video_folder: str | None):
    """Course unit 8's protocol: whole games (all lives, raw score) with sampled actions and the preprocessing of
    training; the first one is recorded if video_folder. The games are played side by side, game i seeded with
    seed + i. Seeded, so that a model evaluates to the same numbers after training and after loading."""
    torch.manual_seed(seed)
    envs = AtariGames(args, episodes, video_folder, evaluation=True)
    obs, _ = envs.reset(seed=seed)
    returns, finished = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    while not finished.all():
        with torch.inference_mode():
            action = agent.get_action(torch.as_tensor(obs, device=device))
        obs, _, _, _, infos = envs.step(env_action(action, envs.single_action_space))
        returns += np.where(finished, 0.0, infos["raw_reward"])  # each env's first game only
        finished |= infos["game_over"]
    envs.close()
    return returns.tolist()


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
    except (ValueError, TypeError) as error:
        fail(f"{args_path} is not a valid args file ({error})")
    saved.game, saved.repeat_action_probability = resolve_env_id(saved.env_id)
    envs = AtariGames(saved, 1)
    agent = Agent(envs.single_observation_space, envs.single_action_space).to(device)
    envs.close()
    try:
        state_dict = torch.load(model_path, map_location=device, weights_only=True)  # never unpickles code
        agent.load_state_dict(state_dict)
    except Exception as error:
        fail(f"cannot load {path} as a {SCRIPT.name} model for {saved.env_id} ({describe(error)})")
    return agent, saved


def model_card(args: Args, mean: float, std: float) -> str:
    env_id = args.env_id  # the id the course leaderboard reads
    hyperparameters = "\n".join(f"| {k} | {v} |" for k, v in vars(args).items())
    sticky = (
        f"sticky actions {args.repeat_action_probability}" if args.repeat_action_probability else "no sticky actions"
    )
    return f"""---
tags:
- {env_id}
- ppo
- reinforcement-learning
- deep-reinforcement-learning
- custom-implementation
- deep-rl-course
model-index:
- name: PPO
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

# PPO agent playing {env_id}

A PPO agent trained with `{SCRIPT.name}`, a single-file PyTorch implementation of PPO (Hugging Face Deep RL Course,
unit 8), on `{env_id}`: frame skip 4 with max-pool, 84x84 grayscale, 4 stacked frames, up to 30 no-op starts,
FIRE on reset, {sticky}. It scores **{mean:.2f} +/- {std:.2f}** (raw score of whole games) over {args.eval_episodes}
evaluation games with sampled actions.

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
        api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Upload PPO agent")
    except Exception as error:
        fail(f"upload to {repo_id} failed ({describe(error)}); the folder is kept at {folder}")
    print(f"uploaded {folder} to https://huggingface.co/{repo_id}")


# ======================================================================================================================
# Plumbing: run name, logging, seeding
# ======================================================================================================================
def start_run(args: Args, run_name: str | None = None, resume_step: int | None = None):
    """The run's name, folder and TensorBoard writer; a resumed run writes on in its own folder, and TensorBoard drops
    what the interrupted process logged after resume_step (it is logged again)."""
    run_name = run_name or f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
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
    purge_step = None if resume_step is None else resume_step + 1
    writer = SummaryWriter(f"runs/{run_name}", purge_step=purge_step)
    table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    return run_name, Path("runs") / run_name, writer


def seed_everything(args: Args, rank: int = 0) -> torch.device:
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)  # the same on every process: they build the same network
    torch.backends.cudnn.deterministic = args.torch_deterministic
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    if torch.cuda.is_available() and args.cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))  # one GPU per process on a node
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


# ======================================================================================================================
# Plumbing: several processes (torchrun), checkpoints, stopping on a signal
# ======================================================================================================================
def init_distributed(args: Args) -> int:
    """Under torchrun (WORLD_SIZE > 1) join the process group (NCCL on CUDA, gloo on CPU); this process's rank."""
    if args.world_size == 1:
        return 0
    dist.init_process_group("nccl" if torch.cuda.is_available() and args.cuda else "gloo")
    return dist.get_rank()


def average_gradients(params: list[torch.Tensor], world_size: int):
    """Every process ends with the mean of all processes' gradients: one all-reduce of one flat buffer."""
    flat = torch.cat([param.grad.reshape(-1) for param in params])
    dist.all_reduce(flat)
    flat /= world_size
    for param, grad in zip(params, flat.split([param.numel() for param in params])):
        param.grad.copy_(grad.view_as(param.grad))


class NoWriter:
    """What processes other than rank 0 log: nothing."""

    def add_scalar(self, *args, **kwargs):
        pass

    def close(self):
        pass


class StopSignal:
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler pre-empting the job) ask the run to stop: the loop checks `requested`
    after each iteration, writes a checkpoint there and exits. A second signal stops at once: the checkpoint written
    last is kept whole, as checkpoints are written to a temporary file and renamed."""

    def __init__(self):
        self.signum = 0
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.handle)

    def handle(self, signum, frame):
        if self.signum:
            sys.exit(128 + signum)
        self.signum = signum
        print(f"{signal.Signals(signum).name}: stopping after this iteration", file=sys.stderr, flush=True)

    def requested(self, world_size: int) -> bool:
        """Whether any process was signalled (they all stop at the same iteration)."""
        if world_size == 1:
            return bool(self.signum)
        flag = torch.tensor([float(self.signum)])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


CHECKPOINT_SETTINGS = (  # what a resumed run may change on its command line; the rest is the checkpoint's
    "torch_threads", "env_threads", "cuda", "track", "wandb_project_name", "wandb_entity", "checkpoint_every", "resume",
)  # fmt: skip


def save_checkpoint(path: Path, args: Args, run_name: str, global_step: int, iteration: int, agent, optimizer):
    """Everything the learner needs to continue: written to a temporary file, then renamed over the last one."""
    checkpoint = dict(
        script=SCRIPT.name,
        args=vars(args),
        run_name=run_name,
        global_step=global_step,
        iteration=iteration,
        model=agent.state_dict(),
        optimizer=optimizer.state_dict(),
        torch_rng=torch.get_rng_state(),
        cuda_rng=torch.cuda.get_rng_state() if torch.cuda.is_available() and args.cuda else None,
    )
    temporary = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, temporary)
    os.replace(temporary, path)


def load_checkpoint(args: Args) -> tuple[dict, Args]:
    """A checkpoint of this script (read without unpickling code) and the arguments of its run; refuses, in one line,
    a missing, truncated or foreign file and command-line arguments that contradict the run's."""
    path = Path(args.resume)
    if args.load_model is not None:
        fail("--resume continues training and --load-model evaluates a saved model: give one of them")
    if not path.is_file():
        fail(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        fail(f"cannot read checkpoint {path}: truncated or not a checkpoint ({describe(error)})")
    if not isinstance(checkpoint, dict) or checkpoint.get("script") != SCRIPT.name:
        owner = checkpoint.get("script") if isinstance(checkpoint, dict) else None
        fail(f"{path} is not a checkpoint of {SCRIPT.name}" + (f" (it was written by {owner})" if owner else ""))
    missing = {"args", "run_name", "global_step", "iteration", "model", "optimizer", "torch_rng"} - set(checkpoint)
    if missing:
        fail(f"{path} is not a complete checkpoint (no {', '.join(sorted(missing))})")
    defaults = Args()
    try:
        saved = Args(**{k: v for k, v in checkpoint["args"].items() if k in Args.__dataclass_fields__})
    except (AttributeError, KeyError, TypeError) as error:
        fail(f"{path} holds no valid run arguments ({describe(error)})")
    for name in Args.__dataclass_fields__:
        given = getattr(args, name)
        if name in CHECKPOINT_SETTINGS:
            if given != getattr(defaults, name):  # given on this command line: it wins over the run's
                setattr(saved, name, given)
        elif given != getattr(defaults, name) and given != getattr(saved, name):
            fail(
                f"--{name.replace('_', '-')} {given} contradicts the checkpoint's {getattr(saved, name)}: a resumed "
                "run keeps its own arguments (give only --resume and run settings such as --torch-threads)"
            )
    return checkpoint, saved


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
    returns = evaluate(agent, args, args.eval_episodes, args.seed + 10_000, device, video_folder and str(video_folder))
    for idx, episodic_return in enumerate(returns):
        writer.add_scalar("eval/episodic_return", episodic_return, idx)
    mean, std = float(np.mean(returns)), float(np.std(returns))
    print(
        f"evaluation over {len(returns)} episodes: mean_reward={mean:.2f} std_reward={std:.2f} result={mean - std:.2f}"
    )
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
    checkpoint = None
    if args.resume is not None:  # continue an interrupted run with its own arguments
        checkpoint, args = load_checkpoint(args)
    check_args(args)
    if args.load_model is not None:  # evaluate a saved model, no training
        device = seed_everything(args)
        agent, saved = load_agent(args.load_model, device)
        for field in ("seed", "capture_video", "eval_episodes", "hub_package", "hf_repo_id", "load_model"):
            setattr(saved, field, getattr(args, field))
        saved.save_model = False
        _, run_dir, writer = start_run(saved)
        finish(agent, saved, run_dir, writer, device)
        writer.close()
        return

    args.game, args.repeat_action_probability = resolve_env_id(args.env_id)
    rank = init_distributed(args)  # under torchrun, this process's share of the envs; only rank 0 logs and saves
    device = seed_everything(args)
    if rank == 0:
        resumed_at = checkpoint and (checkpoint["run_name"], checkpoint["global_step"])
        run_name, run_dir, writer = start_run(args, *(resumed_at or ()))
    else:
        run_name, run_dir, writer = None, None, NoWriter()

    # env setup: whole games in C++ threads; step() returns the learning signals (clipped rewards, a lost life ends
    # an episode) and SAME_STEP autoreset hands over the final observation of a game in the step that ends it.
    video_folder = str(run_dir / "videos") if args.capture_video and rank == 0 else None
    envs = AtariGames(args, args.local_num_envs, video_folder)
    action_space = envs.single_action_space

    agent = Agent(envs.single_observation_space, action_space).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    global_step, first_iteration = 0, 1
    if checkpoint is not None:
        try:
            agent.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            global_step, first_iteration = checkpoint["global_step"], checkpoint["iteration"] + 1
            torch.set_rng_state(checkpoint["torch_rng"])
        except (KeyError, RuntimeError, TypeError, ValueError) as error:
            fail(f"{args.resume} does not fit the network for {args.env_id} ({describe(error)})")
        if checkpoint["cuda_rng"] is not None and device.type == "cuda":
            torch.cuda.set_rng_state(checkpoint["cuda_rng"])
        if rank == 0:
            print(f"resuming {run_name} at step {global_step:,} of {args.total_timesteps:,}")
    params = list(agent.parameters())
    if args.world_size > 1:
        for param in params:  # the same start on every process, whatever their RNGs did
            dist.broadcast(param.data, src=0)
        # each process samples its own actions and minibatches: a stream of its own for each (re)start
        torch.manual_seed(int(np.random.SeedSequence([args.seed, rank, global_step]).generate_state(1)[0]))
    stop_signal = StopSignal()

    # rollout storage: frames (uint8 until the network reads them), actions, log-probabilities and values live on
    # device; what the envs return is gathered on the host and moved once per rollout
    storage_shape = (args.num_steps, args.local_num_envs)
    channels, height, width = envs.single_observation_space.shape  # stored channels-last, the layout Agent reads
    frames = torch.zeros(storage_shape + (height, width, channels), device=device, dtype=torch.uint8)
    obs = frames.movedim(-1, -3)  # [step, env, channels, height, width], a view of the frames
    actions = torch.zeros(storage_shape + action_space.shape, device=device, dtype=torch.long)
    logprobs = torch.zeros(storage_shape, device=device)
    values = torch.zeros(storage_shape, device=device)
    rewards = np.zeros(storage_shape, dtype=np.float32)
    terminations = np.zeros(storage_shape, dtype=np.float32)
    truncations = np.zeros(storage_shape, dtype=np.float32)

    # game statistics: the vector env reports none, so raw scores of whole games are tracked here
    episode_returns = np.zeros(args.local_num_envs)
    episode_lengths = np.zeros(args.local_num_envs, dtype=np.int64)
    recent_returns = deque(maxlen=20)

    start_step, start_time = global_step, time.time()
    last_print = start_time
    # env i of all num_envs plays from seed + i; a resumed run starts new games (the emulators' state is not saved)
    next_obs, _ = envs.reset(seed=args.seed + global_step + rank * args.local_num_envs)
    next_obs = torch.as_tensor(next_obs, device=device)

    for iteration in range(first_iteration, args.num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        # ==============================================================================================================
        # Rollout: num_steps steps of every env with the current policy
        # ==============================================================================================================
        start_of_iteration = global_step
        cut_episodes = []  # (step, env, final observation) of the episodes a time limit cut
        for step in range(args.num_steps):
            global_step += args.num_envs  # all processes' steps
            obs[step] = next_obs
            # the CNN trunk dominates the compute and runs here anyway: keeping log pi(a|s) and V(s) from this pass
            # is ~8% faster per iteration than scoring the whole rollout again afterwards, as ppo.py does for its
            # small MLPs (benchmarks/bench_atari.py --rollout-ablation)
            with torch.inference_mode():
                action, logprobs[step], values[step] = agent.get_action_and_value(next_obs)
                actions[step] = action

            next_obs_np, reward, terminated, truncated, infos = envs.step(env_action(action, action_space))
            rewards[step], terminations[step], truncations[step] = reward, terminated, truncated
            next_obs = torch.as_tensor(next_obs_np, device=device)
            cut_episodes += [(step, i, infos["final_obs"][i]) for i in np.flatnonzero(truncated & ~terminated)]

            # logging: every game that ended, in every env (raw scores of whole games, all lives)
            episode_returns += infos["raw_reward"]
            episode_lengths += 1
            for i in np.flatnonzero(infos["game_over"]):
                writer.add_scalar("charts/episodic_return", episode_returns[i], global_step)
                writer.add_scalar("charts/episodic_length", episode_lengths[i], global_step)
                recent_returns.append(episode_returns[i])
                episode_returns[i], episode_lengths[i] = 0.0, 0

        # ==============================================================================================================
        # Advantages (GAE) and value targets
        # ==============================================================================================================
        # one row per observation: a minibatch takes its rows with index_select, which copies them at memory speed,
        # where indexing the channels-last obs gathers byte by byte (0.3 ms vs 4 ms for 256 observations on a CPU)
        b_frames = frames.view(-1, height * width * channels)
        b_actions = actions.reshape((-1,) + action_space.shape)
        b_logprobs, b_values = logprobs.reshape(-1), values.reshape(-1)
        with torch.no_grad():
            last_values = agent.get_value(next_obs)
            final_values = torch.zeros(storage_shape, device=device)
            if cut_episodes:  # bootstrap values of the final observations of truncated episodes
                steps, env_ids, final_obs = zip(*cut_episodes)
                final_obs = torch.as_tensor(np.stack(final_obs), device=device)
                final_values[steps, env_ids] = agent.get_value(final_obs)
            advantages, returns = compute_gae(
                torch.as_tensor(rewards, device=device),
                values,
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
        # Optimizing the policy and value network: update_epochs passes over shuffled minibatches
        # ==============================================================================================================
        # (with several processes, each takes minibatches of its own rollout and they average their gradients: one
        # update on minibatches of the size a single process would use)
        local_batch_size = args.local_num_envs * args.num_steps
        local_minibatch_size = local_batch_size // args.num_minibatches
        epoch_stats = []
        for epoch in range(args.update_epochs):
            b_inds = torch.randperm(local_batch_size, device=device)
            for start in range(0, local_batch_size, local_minibatch_size):
                mb_inds = b_inds[start : start + local_minibatch_size]
                loss, stats = ppo_loss(
                    agent,
                    args,
                    b_frames.index_select(0, mb_inds).view(-1, height, width, channels).movedim(-1, -3),
                    b_actions[mb_inds],
                    b_logprobs[mb_inds],
                    b_advantages[mb_inds],
                    b_returns[mb_inds],
                    b_values[mb_inds],
                )
                optimizer.zero_grad()
                loss.backward()
                if args.world_size > 1:
                    average_gradients(params, args.world_size)
                nn.utils.clip_grad_norm_(params, args.max_grad_norm, foreach=True)
                optimizer.step()
                epoch_stats.append(torch.stack(list(stats.values())))
            if args.target_kl is not None:
                approx_kl = stats["approx_kl"].clone()
                if args.world_size > 1:  # every process stops at the same epoch
                    dist.all_reduce(approx_kl)
                    approx_kl /= args.world_size
                if approx_kl > args.target_kl:
                    break

        # ==============================================================================================================
        # Plumbing: logging and progress
        # ==============================================================================================================
        mean_stats = torch.stack(epoch_stats).mean(0)
        if args.world_size > 1:
            dist.all_reduce(mean_stats)
            mean_stats /= args.world_size
        mean_stats = mean_stats.tolist()
        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        for name, value in zip(stats.keys(), mean_stats):
            writer.add_scalar(f"losses/{name}", value, global_step)
        writer.add_scalar("losses/explained_variance", explained_var, global_step)
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        if time.time() - last_print > 10 or iteration == args.num_iterations:
            last_print = time.time()
            recent = f"{np.mean(recent_returns):.1f}" if recent_returns else "n/a"
            if rank == 0:
                print(f"step {global_step:>9,}/{args.total_timesteps:,} | {sps:,} SPS | mean return (last 20) {recent}")

        # checkpoint every checkpoint_every steps, and when a signal stops the run
        stop = stop_signal.requested(args.world_size)
        every = args.checkpoint_every
        due = every > 0 and global_step // every > start_of_iteration // every  # a multiple of it was passed
        if rank == 0 and (stop or due):
            save_checkpoint(run_dir / "checkpoint.pt", args, run_name, global_step, iteration, agent, optimizer)
        if stop:
            envs.close()
            writer.close()
            if rank == 0:
                launcher = "torchrun <its options>" if args.world_size > 1 else "python"
                resume = f"{launcher} {SCRIPT.name} --resume {run_dir / 'checkpoint.pt'}"
                print(f"stopped at step {global_step:,}; continue with: {resume}", file=sys.stderr)
            if args.world_size > 1:
                dist.destroy_process_group()
            sys.exit(128 + (stop_signal.signum or signal.SIGTERM))

    envs.close()
    if args.world_size > 1:
        dist.destroy_process_group()
    if rank == 0:
        finish(agent, args, run_dir, writer, device)
    writer.close()


if __name__ == "__main__":
    main(tyro.cli(Args))
