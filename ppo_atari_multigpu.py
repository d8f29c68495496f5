"""PPO on Atari games on several processes (torchrun): Hugging Face Deep RL Course, unit 8 (part 2 trains on Atari).

PPO collects `num_steps` transitions from each of `num_envs` environments with the current policy, estimates
advantages with GAE, then improves the policy for a few epochs on minibatches of that rollout while clipping the
probability ratio pi_new / pi_old to [1 - clip, 1 + clip], so that one update cannot move the policy far from the one
that collected the data. Paper: Schulman et al. 2017, https://arxiv.org/abs/1707.06347. Defaults follow CleanRL's
`ppo_atari.py`. This is ppo_atari.py trained data-parallel (`diff ppo_atari.py ppo_atari_multigpu.py`): each process
steps its share of the envs, takes minibatches of its own rollout and averages its gradients with the others' (one
all-reduce per minibatch), so that all processes hold one agent. --num-envs and the step counts are of all processes;
rank 0 alone logs (the game returns are those of its own envs), checkpoints, saves and evaluates. NCCL on CUDA (one
GPU per process), gloo on CPU.

The games run in C++ threads (ale_py's AtariVectorEnv), played as SB3 and CleanRL play them (see AtariGames). The policy
learns from rewards clipped to their sign and treats a lost life as the end of an episode; `charts/episodic_return` and
the evaluation are the raw scores of whole games. The Nature CNN (Mnih et al. 2015) feeds a linear actor and a linear
critic.

Run:
    torchrun --standalone --nproc-per-node 2 ppo_atari_multigpu.py                 # 2 processes x 4 envs, 10M steps
    torchrun --standalone --nproc-per-node 2 ppo_atari_multigpu.py --num-envs 16   # 2 processes x 8 envs
    torchrun --standalone --nproc-per-node 2 ppo_atari_multigpu.py --resume runs/<run>/checkpoint.pt
    python ppo_atari_multigpu.py --help

What it reaches and how fast: README.md and results/README.md.
"""

import datetime
import json
import os
import random
import shutil
import signal
import sys
import time
import zipfile
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
from torch.distributions import Categorical
from torch.utils.tensorboard import SummaryWriter

SCRIPT = Path(__file__).resolve()
MODEL_FILES = ("model.pt",)  # what --load-model finds in a Hub repo, in this order
PASS_MARKS = {}  # the course sets no pass mark for an Atari PPO agent


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
    bf16: bool = False
    """run the CNN under bfloat16 autocast, in the rollout and the update (the heads, log-probabilities, values and Adam
    stay fp32): faster where the CPU or GPU has fast bf16, slower elsewhere (benchmarks/README.md: how to tell)"""
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
    """the number of parallel game environments, of all processes together"""
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

    # computed from the others, not options
    game: tyro.conf.Suppress[str] = ""
    """the ROM that runs (from env_id)"""
    repeat_action_probability: tyro.conf.Suppress[float] = 0.0
    """the sticky-action probability that env_id means (0.25 for v5 ids, 0 for NoFrameskip-v4 ids)"""
    batch_size: tyro.conf.Suppress[int] = 0
    """the batch size: num_envs * num_steps"""
    minibatch_size: tyro.conf.Suppress[int] = 0
    """the mini-batch size: batch_size / num_minibatches"""
    num_iterations: tyro.conf.Suppress[int] = 0
    """the number of iterations: total_timesteps / batch_size"""
    world_size: tyro.conf.Suppress[int] = 1
    """the number of processes training together (torchrun's WORLD_SIZE)"""
    local_num_envs: tyro.conf.Suppress[int] = 0
    """the envs each process steps: num_envs / world_size"""
    local_batch_size: tyro.conf.Suppress[int] = 0
    """the steps of each process's rollout: local_num_envs * num_steps"""
    local_minibatch_size: tyro.conf.Suppress[int] = 0
    """each process's share of a minibatch: local_batch_size / num_minibatches"""


def fail(message: str):
    """Bad input: one line on stderr that names the fix, a non-zero exit, no traceback."""
    sys.exit(f"{SCRIPT.name}: error: {message}")


def describe(error: Exception) -> str:
    """An exception in one line."""
    return f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"


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
    if args.resume is not None:  # continue an interrupted run with its own arguments
        args = resumed_args(args)
    positive = (
        "total_timesteps", "num_envs", "num_steps", "num_minibatches", "update_epochs", "learning_rate", "clip_coef",
        "max_grad_norm",
    )  # fmt: skip
    for name in positive:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.gamma <= 1 or not 0 <= args.gae_lambda <= 1:
        fail(f"--gamma and --gae-lambda must lie in [0, 1], got {args.gamma} and {args.gae_lambda}")
    if args.ent_coef < 0 or args.vf_coef < 0:
        fail(f"--ent-coef and --vf-coef must be >= 0, got {args.ent_coef} and {args.vf_coef}")
    if args.eval_episodes < 0:
        fail(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.torch_threads < 0:
        fail(f"--torch-threads must be >= 0, got {args.torch_threads}")
    if args.checkpoint_every < 0:
        fail(f"--checkpoint-every must be >= 0 steps, got {args.checkpoint_every}")
    if args.load_model is None and "WORLD_SIZE" not in os.environ:
        fail(f"{SCRIPT.name} trains under torchrun: torchrun --standalone --nproc-per-node 2 {SCRIPT.name}")
    args.world_size = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun sets it for each process it starts
    gpus, processes_here = torch.cuda.device_count() if args.cuda else 0, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if 0 < gpus < processes_here:  # one GPU per process
        fail(f"{processes_here} processes on this machine and {gpus} GPU(s): give torchrun --nproc-per-node {gpus}")
    if args.num_envs % args.world_size:
        fail(f"--num-envs {args.num_envs} cannot be shared by {args.world_size} processes; choose a multiple")
    args.local_num_envs = args.num_envs // args.world_size
    args.batch_size = args.num_envs * args.num_steps
    args.local_batch_size = args.local_num_envs * args.num_steps
    if args.local_batch_size % args.num_minibatches:
        fail(
            f"num_envs * num_steps = {args.local_batch_size} per process ({args.world_size} processes) is not "
            f"divisible by --num-minibatches {args.num_minibatches}; choose a divisor"
        )
    args.minibatch_size = args.batch_size // args.num_minibatches
    args.local_minibatch_size = args.local_batch_size // args.num_minibatches
    args.num_iterations = args.total_timesteps // args.batch_size
    if args.load_model is None:
        if args.num_iterations == 0:
            fail(f"--total-timesteps {args.total_timesteps} is less than one rollout of {args.batch_size} steps")
        args.game, args.repeat_action_probability = resolve_env_id(args.env_id)
    check_accounts(args)
    return args


# ENV: the environment
MAX_FRAMES = 108_000  # 30 minutes of play at 60 frames/s: the cap of a game (a truncation) in the usual protocol


def resolve_env_id(env_id: str) -> tuple[str, float]:
    """The ROM and the sticky-action probability an Atari id means: `BreakoutNoFrameskip-v4` -> ("breakout", 0.0),
    `ALE/Breakout-v5` -> ("breakout", 0.25). The rest of the preprocessing is the same for both."""
    gym.register_envs(ale_py)
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as error:
        hint = f" (did you mean ALE/{env_id}?)" if f"ALE/{env_id}" in gym.registry else ""
        fail(f"unknown env id {env_id!r}: {describe(error)}{hint}")
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
    """`num_envs` Atari games, each in a C++ thread of its own (ale_py's AtariVectorEnv), played as the references play
    them (SB3's AtariWrapper, CleanRL's ppo_atari.py): frame skip 4 with a max-pool over the last two frames (ALE pools
    them in grayscale, the references in RGB), 84x84 grayscale, 1-30 no-op frames at the start of a game, the 108k-frame
    cap, 4 stacked frames. The games are whole (all lives) and their rewards raw; step() derives the learning signals
    from them: the reward sign(r); terminated at game over or a lost life; truncated at the frame cap (bootstrap from
    infos["final_obs"]: SAME_STEP autoreset); infos["raw_reward"] and infos["game_over"] tell the score and the ends of
    whole games. Where an episode ends, the game plays the references' reset steps before the agent acts again (after a
    lost life a no-op; in games with FIRE, then FIRE and action 2) and the frame stack restarts: zeros, then the newest
    frame (SB3's VecFrameStack; CleanRL's FrameStack repeats it); infos["final_obs"] is the observation the episode
    ended on. (The vector env's own episodic_life restarts the game at a lost life, its FIRE reset presses FIRE at the
    start of a game only, and its reward_clipping hides the score: all three are off.) With a video folder, a twin of
    env 0 (same game, seed and actions, in RGB) records the games that gymnasium's capped cubic schedule picks, or the
    first game of an evaluation."""

    def __init__(self, args: Args, num_envs: int, video_folder: Path | None = None, evaluation: bool = False):
        rules = dict(
            repeat_action_probability=args.repeat_action_probability,
            frameskip=4,
            maxpool=True,
            noop_max=30,
            use_fire_reset=False,
            max_num_frames_per_episode=MAX_FRAMES,
            episodic_life=False,
            reward_clipping=False,
            autoreset_mode="SameStep",
        )
        # one vector env a game, so that a game can play its reset steps while the others wait
        self.games = [AtariVectorEnv(args.game, 1, num_threads=1, stack_num=1, **rules) for _ in range(num_envs)]
        self.single_action_space = self.games[0].single_action_space
        self.single_observation_space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
        has_fire = ale_py.Action.FIRE in self.games[0].ale.get_action_set()  # then it is action 1, as in every game
        self.serve = [1, 2] if has_fire else []  # FIRE, then action 2: the references' FireResetEnv
        self.stack = np.zeros((num_envs, 4, 84, 84), dtype=np.uint8)
        self.lives = np.zeros(num_envs, dtype=np.int32)
        self.head_start = np.zeros(num_envs)  # what the reset steps of a new game scored: it counts in its first step
        self.video_folder, self.evaluation, self.twin, self.video = video_folder, evaluation, None, None
        if video_folder is not None:
            rgb = dict(grayscale=False, img_height=210, img_width=160, stack_num=1)
            self.twin = AtariVectorEnv(args.game, 1, num_threads=1, **rgb, **rules)

    def reset(self, seed: int):
        """Env i plays its games from seed + i."""
        if self.twin is not None:
            frames, _ = self.twin.reset(seed=seed)
            self.game = 0
            self.start_video(frames)
        self.head_start[:] = 0
        for i, game in enumerate(self.games):
            frame, infos = game.reset(seed=seed + i)
            self.lives[i] = infos["lives"][0]
            self.restart(i, frame[0], new_game=True)
        return self.stack, {}

    def step(self, actions: np.ndarray):
        for game, action in zip(self.games, actions):
            game.send(action[None])
        frames, reward, terminated, truncated, infos = zip(*(game.recv() for game in self.games))
        frames, reward, terminated, truncated = map(np.concatenate, (frames, reward, terminated, truncated))
        game_over = terminated | truncated
        reached = np.stack(
            [info["final_obs"][0] if "final_obs" in info else frame for frame, info in zip(frames, infos)]
        )
        self.stack = np.concatenate([self.stack[:, 1:], reached], axis=1)  # the observation each step reached
        lives = np.array([info["lives"][0] for info in infos])
        life_lost = (lives < self.lives) & ~game_over  # a new game shows full lives: not a loss
        self.lives = lives
        self.follow(actions[0], game_over[0])
        infos = dict(final_obs=self.stack.copy(), raw_reward=reward + self.head_start, game_over=game_over)
        self.head_start = np.zeros(len(self.games))
        for i in np.flatnonzero(game_over | life_lost):  # an episode ended: reset steps, a new stack
            score, ended = self.restart(i, frames[i], new_game=game_over[i])
            infos["raw_reward"][i] += score
            game_over[i] |= ended
        return self.stack, np.sign(reward).astype(np.float32), terminated | life_lost, truncated, infos

    def restart(self, i: int, frame: np.ndarray, new_game: bool) -> tuple[float, bool]:
        """Game i plays the reset steps, which the agent does not see (the serve at the start of a game; after a lost
        life a no-op, then the serve), and its frame stack restarts from the frame they end on. Returns what they
        scored in the game that was on, and whether it ended in them; a new game's score goes to self.head_start."""
        score, ended, steps = 0.0, False, list(self.serve) if new_game else [0, *self.serve]
        while steps:
            action = np.array([steps.pop(0)])
            frames, reward, terminated, truncated, infos = self.games[i].step(action)
            frame = frames[0]
            if new_game:
                self.head_start[i] += float(reward[0])
            else:
                score += float(reward[0])
            self.lives[i] = infos["lives"][0]
            if i == 0:
                self.follow(action[0], terminated[0] or truncated[0])
            if terminated[0] or truncated[0]:  # the next game serves
                ended, new_game, steps = True, True, list(self.serve)
        self.stack[i] = 0
        self.stack[i, -1:] = frame
        return score, ended

    def follow(self, action: int, game_over: bool):
        """The twin plays env 0's step and records it, until the video of an evaluation is done."""
        if self.twin is None or (self.evaluation and self.video is None):
            return
        frames, _, _, _, infos = self.twin.step(np.array([action]))
        if self.video is not None:
            self.video.write((infos["final_obs"] if game_over else frames)[0, 0])
        if game_over:
            if self.video is not None:
                self.video.close()
                self.video = None
            self.game += 1
            self.start_video(frames)

    def start_video(self, frames: np.ndarray):
        wanted = self.game == 0 if self.evaluation else capped_cubic_video_schedule(self.game)
        if wanted:
            prefix = "eval" if self.evaluation else "train"
            self.video = VideoWriter(self.video_folder / f"{prefix}-episode-{self.game}.mp4")
            self.video.write(frames[0, 0])

    def close(self):
        if self.video is not None:
            self.video.close()
        for game in self.games:
            game.close()
        if self.twin is not None:
            self.twin.close()


# NETWORK: the Nature CNN, an actor and a critic
def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


class Agent(nn.Module):
    """The Nature CNN (conv 32x8x8/4, 64x4x4/2, 64x3x3/1, fc 512) shared by a linear actor and a linear critic,
    orthogonally initialised, as in CleanRL's ppo_atari.py (same parameter names). Frames arrive as uint8 and become
    floats in [0, 1] on the device."""

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.spaces.Discrete, bf16: bool = False):
        super().__init__()
        self.bf16 = bf16
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(observation_space.shape[0], 32, 8, stride=4)),
            nn.ReLU(),
            layer_init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
            nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)),
            nn.ReLU(),
        )
        self.actor = layer_init(nn.Linear(512, int(action_space.n)), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1.0)
        # channels-last weights and inputs: CPU convolutions run much faster in this layout, with the same numbers
        # (benchmarks/ablation.py)
        self.to(memory_format=torch.channels_last)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The CNN's features; with bf16 computed under bf16 autocast, and handed to the heads as fp32, so that the
        logits, log-probabilities, their ratio and the values are fp32."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            features = self.network(x.contiguous(memory_format=torch.channels_last).float() / 255.0)
        return features.float()

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        return self.critic(self.hidden(x)).squeeze(-1)

    def get_action(self, x: torch.Tensor) -> torch.Tensor:
        """a ~ pi(.|s): all that a rollout step needs (log-probabilities and values are computed after the rollout)."""
        return Categorical(logits=self.actor(self.hidden(x))).sample()

    def get_action_and_value(self, x: torch.Tensor, action: torch.Tensor | None = None):
        """a ~ pi(.|s) (or the given action), log pi(a|s), the entropy of pi(.|s), and V(s)."""
        hidden = self.hidden(x)
        probs = Categorical(logits=self.actor(hidden))
        if action is None:
            action = probs.sample()
        return action, probs.log_prob(action), probs.entropy(), self.critic(hidden).squeeze(-1)


# ALGO LOGIC: advantages and the clipped objective
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


def ppo_loss(agent: Agent, args: Args, obs, actions, old_logprobs, advantages, returns, old_values):
    """The clipped PPO objective on one minibatch: (total loss, dict of detached statistics)."""
    _, newlogprob, entropy, newvalue = agent.get_action_and_value(obs, actions)
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


# EVALUATION, SAVING AND THE HUB
def evaluate(agent: Agent, args: Args, episodes: int, seed: int, device: torch.device, video_folder: Path | None):
    """Course unit 8's protocol: whole games (all lives, raw score) with sampled actions and the preprocessing of
    training; the first one is recorded if video_folder. The games are played side by side, game i seeded with
    seed + i. Seeded, so that a model evaluates to the same numbers after training and after loading with the same
    --seed."""
    torch.manual_seed(seed)
    envs = AtariGames(args, episodes, video_folder, evaluation=True)
    obs, _ = envs.reset(seed=seed)
    returns, finished = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    while not finished.all():
        with torch.inference_mode():
            action = agent.get_action(torch.as_tensor(obs, device=device))
        obs, _, _, _, infos = envs.step(action.cpu().numpy())
        returns += np.where(finished, 0.0, infos["raw_reward"])  # each env's first game only
        finished |= infos["game_over"]
    envs.close()
    return returns.tolist()


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
    saved.game, saved.repeat_action_probability = resolve_env_id(saved.env_id)
    envs = AtariGames(saved, 1)
    agent = Agent(envs.single_observation_space, envs.single_action_space, saved.bf16).to(device)
    envs.close()
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        fail(f"cannot load {path}: it is no model file (--save-model of {SCRIPT.name} writes runs/<run>/model.pt)")
    try:
        agent.load_state_dict(torch.load(path, map_location=device, weights_only=True))  # never unpickles code
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
def start_run(args: Args, checkpoint: dict | None = None) -> tuple[str, Path, SummaryWriter]:
    """The run's name and folder, its TensorBoard writer with the hyperparameters, and wandb with --track. A resumed
    run writes on in its own folder, and TensorBoard drops what the stopped process logged after its checkpoint."""
    run_name = f"{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__{int(time.time())}"
    purge_step = None
    if checkpoint is not None:
        run_name, purge_step = checkpoint["run_name"], checkpoint["global_step"] + 1
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
    writer = SummaryWriter(f"runs/{run_name}", purge_step=purge_step)
    table = "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())
    writer.add_text("hyperparameters", f"|param|value|\n|-|-|\n{table}")
    print(f"run folder: runs/{run_name} (watch it with: tensorboard --logdir runs)")
    return run_name, Path("runs") / run_name, writer


def seed_everything(args: Args) -> torch.device:
    """Seed every generator the run draws from; the device to train on."""
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    if torch.cuda.is_available() and args.cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))  # one GPU per process on a node
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


# PLUMBING: several processes
def average_gradients(params: list[torch.Tensor], world_size: int):
    """Every process ends with the mean of all processes' gradients: one all-reduce of one flat buffer."""
    flat = torch.cat([param.grad.reshape(-1) for param in params])
    dist.all_reduce(flat)
    flat /= world_size
    for param, grad in zip(params, flat.split([param.numel() for param in params])):
        param.grad.copy_(grad.view_as(param.grad))


def mean_over_processes(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """The mean of a tensor over all processes (every process gets it)."""
    tensor = tensor.clone()
    dist.all_reduce(tensor)
    return tensor / world_size


class NoWriter:
    """What processes other than rank 0 log: nothing."""

    def add_scalar(self, *args, **kwargs):
        pass

    def close(self):
        pass


# PLUMBING: checkpoints, resuming, stopping on a signal
CHECKPOINT_SETTINGS = (  # what a resumed run may change on its command line; the rest is the checkpoint's
    "torch_threads", "bf16", "cuda", "track", "wandb_project_name", "wandb_entity", "checkpoint_every",
    "resume",
)  # fmt: skip


def read_checkpoint(path: str) -> dict:
    """A checkpoint of this script, read without unpickling code; one clear line for a missing, truncated or foreign
    file. Memory-mapped, its tensors read from disk when they are used, except on Windows, where a mapped file could
    not be replaced by the run's next checkpoint."""
    if not Path(path).is_file():
        fail(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=sys.platform != "win32")
    except Exception as error:
        fail(f"cannot read checkpoint {path}: truncated or not a checkpoint ({describe(error)})")
    if not isinstance(checkpoint, dict) or checkpoint.get("script") != SCRIPT.name:
        owner = checkpoint.get("script") if isinstance(checkpoint, dict) else None
        fail(f"{path} is not a checkpoint of {SCRIPT.name}" + (f" (it was written by {owner})" if owner else ""))
    missing = {"args", "run_name", "global_step", "torch_rng"} - set(checkpoint)  # the learner's parts: restore()
    if missing:
        fail(f"{path} is not a complete checkpoint (no {', '.join(sorted(missing))})")
    return checkpoint


def resumed_args(args: Args) -> Args:
    """The arguments of the run that --resume continues, with the run settings this command changes and a longer
    --total-timesteps if one is given (the schedules of learning rate and exploration then follow it, as if the run
    had started with it); arguments that contradict the run's are refused."""
    if args.load_model is not None:
        fail("--resume continues training and --load-model evaluates a saved model: give one of them")
    checkpoint = read_checkpoint(args.resume)
    defaults = Args()
    try:
        saved = Args(**{k: v for k, v in checkpoint["args"].items() if k in Args.__dataclass_fields__})
    except (AttributeError, KeyError, TypeError) as error:
        fail(f"{args.resume} holds no valid run arguments ({describe(error)})")
    for name in Args.__dataclass_fields__:
        given = getattr(args, name)
        if given == getattr(defaults, name) or given == getattr(saved, name):
            continue  # not given on this command line, or given as the run has it
        if name in CHECKPOINT_SETTINGS or name == "total_timesteps" and given > saved.total_timesteps:
            setattr(saved, name, given)  # a run setting, or a longer run
        else:
            fail(
                f"--{name.replace('_', '-')} {given} contradicts the checkpoint's {getattr(saved, name)}: a resumed "
                "run keeps its own arguments (give only --resume, run settings such as --torch-threads, or a larger "
                "--total-timesteps)"
            )
    return saved


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


class Checkpoints:
    """runs/<run>/checkpoint.pt, every `checkpoint_every` steps and when SIGINT (Ctrl-C) or SIGTERM (a scheduler
    pre-empting the job) asks the run to stop (StopSignal). A second signal stops at once: the checkpoint written last
    stays whole, as checkpoints are written to a temporary file and renamed. `parts` are what the learner needs to
    continue (objects with a state_dict)."""

    def __init__(self, args: Args, run_name: str, run_dir: Path, rank: int, device: torch.device, **parts):
        self.args, self.run_name, self.path, self.parts = args, run_name, run_dir and run_dir / "checkpoint.pt", parts
        self.rank, self.device = rank, device
        self.stop = StopSignal()

    def restore(self, checkpoint: dict, device: torch.device) -> int:
        """The learner's state as the checkpoint saved it; the step it was saved at."""
        try:
            for name, part in self.parts.items():
                part.load_state_dict(checkpoint[name])
            torch.set_rng_state(checkpoint["torch_rng"])
        except (KeyError, RuntimeError, TypeError, ValueError) as error:
            fail(f"{self.args.resume} does not fit the network for {self.args.env_id} ({describe(error)})")
        if checkpoint.get("cuda_rng") is not None and device.type == "cuda":
            torch.cuda.set_rng_state(checkpoint["cuda_rng"])
        if self.rank == 0:
            print(f"resuming {self.run_name} at step {checkpoint['global_step']:,} of {self.args.total_timesteps:,}")
        return checkpoint["global_step"]

    def save(self, global_step: int):
        checkpoint = dict(
            script=SCRIPT.name,
            args=vars(self.args),
            run_name=self.run_name,
            global_step=global_step,
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state() if torch.cuda.is_available() and self.args.cuda else None,
            **{name: part.state_dict() for name, part in self.parts.items()},
        )
        temporary = self.path.with_name(self.path.name + ".tmp")
        torch.save(checkpoint, temporary)
        os.replace(temporary, self.path)

    def save_if_due(self, global_step: int, steps: int) -> bool:
        """After an iteration of `steps` steps: a checkpoint if a multiple of checkpoint_every was passed or a signal
        came to any process. True after a signal: every process stops here."""
        every = self.args.checkpoint_every
        # all processes stop at the same iteration if any was signalled (on the device: NCCL reduces no CPU tensor);
        # a signal that comes while this all-reduce runs is kept for the next one
        signum = torch.tensor([self.stop.signum], device=self.device)
        dist.all_reduce(signum, op=dist.ReduceOp.MAX)
        agreed = int(signum.item())
        self.stop.signum = max(self.stop.signum, agreed)
        if self.rank == 0 and (agreed or every > 0 and global_step // every > (global_step - steps) // every):
            self.save(global_step)
        if agreed and self.rank == 0:
            resume = f"torchrun <its options> {SCRIPT.name} --resume {self.path}"
            print(f"checkpoint of step {global_step:,} saved; continue with: {resume}")
        return bool(agreed)


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
    checkpoint = read_checkpoint(args.resume) if args.resume is not None else None
    device = seed_everything(args)
    # one process of world_size (gloo also runs a single process); only rank 0 logs and saves
    dist.init_process_group(
        "nccl" if device.type == "cuda" else "gloo", device_id=device if device.type == "cuda" else None
    )
    rank = dist.get_rank()
    run_name, run_dir, writer = start_run(args, checkpoint) if rank == 0 else (None, None, NoWriter())

    # env setup: whole games in C++ threads; step() returns the learning signals (clipped rewards, a lost life ends
    # an episode), and SAME_STEP autoreset hands over the final observation of a game in the step that ends it
    video_folder = run_dir / "videos" if args.capture_video and rank == 0 else None
    envs = AtariGames(args, args.local_num_envs, video_folder)
    action_space = envs.single_action_space

    agent = Agent(envs.single_observation_space, action_space, args.bf16).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    checkpoints = Checkpoints(args, run_name, run_dir, rank, device, model=agent, optimizer=optimizer)
    global_step = checkpoints.restore(checkpoint, device) if checkpoint is not None else 0
    params = list(agent.parameters())
    for param in params:  # the same start on every process, whatever their generators did
        dist.broadcast(param.data, src=0)
    # each process samples its own actions and minibatches: a stream of its own for each (re)start
    torch.manual_seed(int(np.random.SeedSequence([args.seed, rank, global_step]).generate_state(1)[0]))

    # ALGO LOGIC: storage setup; what the envs return stays on the host until the rollout ends
    storage_shape = (args.num_steps, args.local_num_envs)
    obs = torch.zeros(storage_shape + envs.single_observation_space.shape, device=device, dtype=torch.uint8)
    actions = torch.zeros(storage_shape + action_space.shape, device=device, dtype=torch.long)
    rewards = np.zeros(storage_shape, dtype=np.float32)
    terminations = np.zeros(storage_shape, dtype=np.float32)
    truncations = np.zeros(storage_shape, dtype=np.float32)
    final_values = torch.zeros(storage_shape, device=device)  # V(final obs) where a time limit cut an episode

    # game statistics: the vector env reports none, so raw scores of whole games are tracked here
    episode_returns = np.zeros(args.local_num_envs)
    episode_lengths = np.zeros(args.local_num_envs, dtype=np.int64)

    start_step, start_time = global_step, time.time()
    progress = Progress(args.total_timesteps, global_step)
    # env i of all num_envs plays from seed + i; a resumed run starts new games (the emulators' state is not saved)
    next_obs, _ = envs.reset(seed=args.seed + global_step + rank * args.local_num_envs)
    next_obs = torch.as_tensor(next_obs, device=device)

    for iteration in range(global_step // args.batch_size + 1, args.num_iterations + 1):
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / args.num_iterations
            optimizer.param_groups[0]["lr"] = frac * args.learning_rate

        # ALGO LOGIC: rollout, num_steps steps of every env with the current policy
        final_values.zero_()
        for step in range(args.num_steps):
            global_step += args.num_envs  # all processes' steps
            obs[step] = next_obs
            with torch.no_grad():
                actions[step] = action = agent.get_action(next_obs)

            next_obs, reward, terminated, truncated, infos = envs.step(action.cpu().numpy())
            rewards[step], terminations[step], truncations[step] = reward, terminated, truncated
            next_obs = torch.as_tensor(next_obs, device=device)
            for i in np.flatnonzero(truncated & ~terminated):  # cut by a time limit: bootstrap from V(final obs)
                with torch.no_grad():
                    final_values[step, i] = agent.get_value(
                        torch.as_tensor(infos["final_obs"][i : i + 1], device=device)
                    )

            # logging: every game that ended, in every env (raw scores of whole games, all lives)
            episode_returns += infos["raw_reward"]
            episode_lengths += 1
            for i in np.flatnonzero(infos["game_over"]):
                writer.add_scalar("charts/episodic_return", episode_returns[i], global_step)
                writer.add_scalar("charts/episodic_length", episode_lengths[i], global_step)
                progress.returns.append(episode_returns[i])
                episode_returns[i], episode_lengths[i] = 0.0, 0

        # ALGO LOGIC: log-probabilities and values of the rollout, advantages (GAE) and value targets
        # the network did not change during the rollout, so its steps are scored in one batched pass, faster than
        # one by one in the rollout (benchmarks/ablation.py)
        b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
        b_actions = actions.reshape((-1,) + action_space.shape)
        with torch.no_grad():
            _, b_logprobs, _, b_values = agent.get_action_and_value(b_obs, b_actions)
            next_value = agent.get_value(next_obs)
            advantages, returns = compute_gae(
                torch.as_tensor(rewards, device=device),
                b_values.reshape(storage_shape),
                next_value,
                torch.as_tensor(terminations, device=device),
                torch.as_tensor(truncations, device=device),
                final_values,
                args.gamma,
                args.gae_lambda,
            )
        b_advantages = advantages.reshape(-1)
        b_returns = returns.reshape(-1)

        # ALGO LOGIC: update_epochs passes over shuffled minibatches of the rollout
        epoch_stats = []
        for epoch in range(args.update_epochs):
            b_inds = torch.randperm(args.local_batch_size, device=device)
            for start in range(0, args.local_batch_size, args.local_minibatch_size):
                mb_inds = b_inds[start : start + args.local_minibatch_size]
                minibatch = [b[mb_inds] for b in (b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values)]
                loss, stats = ppo_loss(agent, args, *minibatch)
                optimizer.zero_grad()
                loss.backward()
                average_gradients(params, args.world_size)  # one update of the one agent, on all processes' data
                nn.utils.clip_grad_norm_(params, args.max_grad_norm)
                optimizer.step()
                epoch_stats.append(torch.stack(list(stats.values())))
            # every process stops at the same epoch
            if args.target_kl is not None and mean_over_processes(stats["approx_kl"], args.world_size) > args.target_kl:
                break

        # logging and progress
        mean_stats = mean_over_processes(torch.stack(epoch_stats).mean(0), args.world_size).tolist()
        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
        writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        for name, value in zip(stats.keys(), mean_stats):
            writer.add_scalar(f"losses/{name}", value, global_step)
        writer.add_scalar("losses/explained_variance", explained_var, global_step)
        sps = int((global_step - start_step) / (time.time() - start_time))
        writer.add_scalar("charts/SPS", sps, global_step)
        if rank == 0:
            progress.show(global_step, final=iteration == args.num_iterations)
        if checkpoints.save_if_due(global_step, args.batch_size):
            break

    envs.close()
    dist.barrier()  # no process closes its connections while another still receives what it was sent
    dist.destroy_process_group()
    stopped = checkpoints.stop.end()  # the signal of any process
    if rank == 0:
        finish(agent, args, run_dir, writer, device, stopped)  # which ends the process after a signal
    writer.close()
    if stopped:
        sys.exit(128 + stopped)


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
