"""Deep Q-Network (DQN) on Atari games: Hugging Face Deep RL Course, unit 3.

DQN learns Q(s, a), the expected discounted return of action a in state s, with the Nature CNN. It acts
epsilon-greedily, keeps its transitions in a replay memory, and every `train_frequency` steps regresses Q(s, a) onto
the TD target r + gamma * max_a' Q_target(s', a') on a random minibatch of them, with a Huber loss; the target network
is a copy of the online network refreshed every `target_network_frequency` steps. Papers: Mnih et al. 2015,
https://www.nature.com/articles/nature14236; `--double-dqn`: van Hasselt et al. 2016, https://arxiv.org/abs/1509.06461.
Defaults are those of the RL Zoo configuration that course unit 3 trains SpaceInvadersNoFrameskip-v4 with; the agent
acts uniformly at random until learning starts.

The games run in C++ threads (ale_py's AtariVectorEnv), played as SB3 and CleanRL play them (see AtariGames). The agent
learns from rewards clipped to their sign and treats a lost life as the end of an episode; `charts/episodic_return` and
the evaluation are the raw scores of whole games. The replay memory stores each frame once and rebuilds the 4-frame
stacks of s and s' when it samples (see ReplayBuffer); a checkpoint holds it too, so that a resumed run goes on learning
at once.

Run:
    python dqn_atari.py                                       # SpaceInvadersNoFrameskip-v4, 10M steps
    python dqn_atari.py --env-id BreakoutNoFrameskip-v4 --double-dqn --buffer-size 1000000
    python dqn_atari.py --load-model runs/<run>/model.pt --capture-video   # evaluate a saved model
    python dqn_atari.py --checkpoint-every 100000             # SIGINT/SIGTERM also checkpoint, then stop
    python dqn_atari.py --resume runs/<run>/checkpoint.pt     # go on from the checkpoint, same run and curves
    python dqn_atari.py --help

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
import torch.nn as nn
import torch.nn.functional as F
import tyro
from ale_py.vector_env import AtariVectorEnv
from gymnasium.utils.save_video import capped_cubic_video_schedule
from torch.utils.tensorboard import SummaryWriter

SCRIPT = Path(__file__).resolve()
MODEL_FILES = ("model.pt",)  # what --load-model finds in a Hub repo, in this order
PASS_MARKS = {"SpaceInvadersNoFrameskip-v4": 200}  # the result (mean - std) course unit 3 asks for


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
    """run the CNN under bfloat16 autocast, in acting and in the update (its last layer, the Q-values, the TD targets
    and Adam stay fp32): faster where the CPU or GPU has fast bf16, slower elsewhere (benchmarks/README.md tells)"""
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
    """whole games of the evaluation after training (epsilon-greedy with end_e, as RL Zoo plays Atari); 0 skips it"""
    hub_package: bool = False
    """build the Hugging Face Hub folder (runs/<run>/hub: card, results, replay video, model, args, script)"""
    hf_repo_id: str | None = None
    """upload the Hub folder to this model repo, e.g. `user/dqn-SpaceInvadersNoFrameskip-v4` (implies --hub-package)"""
    checkpoint_every: int = 0
    """write runs/<run>/checkpoint.pt every this many steps (0: only when SIGINT or SIGTERM stops the run)"""
    resume: str | None = None
    """path of a checkpoint.pt: continue its run (arguments, run name, TensorBoard dir) from the step it was saved at"""

    # Algorithm specific arguments
    env_id: str = "SpaceInvadersNoFrameskip-v4"
    """the id of the Atari game: `XNoFrameskip-v4` plays without sticky actions, `ALE/X-v5` with sticky actions 0.25"""
    total_timesteps: int = 10_000_000
    """total timesteps of the experiment"""
    learning_rate: float = 1e-4
    """the learning rate of the optimizer"""
    num_envs: int = 1
    """the number of parallel game environments"""
    buffer_size: int = 100_000
    """the replay memory buffer size (slots of one frame each: a transition a step, an extra one at an episode's end)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 1.0
    """the target network update rate (1: a copy)"""
    target_network_frequency: int = 1000
    """the timesteps it takes to update the target network"""
    batch_size: int = 32
    """the batch size of sample from the replay memory"""
    start_e: float = 1.0
    """the starting epsilon for exploration"""
    end_e: float = 0.01
    """the ending epsilon for exploration"""
    exploration_fraction: float = 0.1
    """the fraction of `total-timesteps` it takes from start-e to go end-e"""
    learning_starts: int = 100_000
    """timestep to start learning; until then the agent acts uniformly at random to fill the replay memory"""
    train_frequency: int = 4
    """the frequency of training (in steps of the vector env)"""
    gradient_steps: int = 1
    """gradient steps per training"""
    max_grad_norm: float = 10.0
    """the maximum norm for the gradient clipping"""
    double_dqn: bool = False
    """if toggled, the TD target is Double DQN's: the online network picks a', the target network values it"""

    # computed from the others, not options
    game: tyro.conf.Suppress[str] = ""
    """the ROM that runs (from env_id)"""
    repeat_action_probability: tyro.conf.Suppress[float] = 0.0
    """the sticky-action probability that env_id means (0.25 for v5 ids, 0 for NoFrameskip-v4 ids)"""
    num_iterations: tyro.conf.Suppress[int] = 0
    """the number of iterations (steps of the vector env): total_timesteps / num_envs"""


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
        "total_timesteps", "learning_rate", "num_envs", "buffer_size", "target_network_frequency", "batch_size",
        "train_frequency", "gradient_steps", "max_grad_norm",
    )  # fmt: skip
    for name in positive:
        if getattr(args, name) <= 0:
            fail(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not 0 <= args.gamma <= 1 or not 0 < args.tau <= 1:
        fail(f"--gamma must lie in [0, 1] and --tau in (0, 1], got {args.gamma} and {args.tau}")
    if not 0 <= args.end_e <= args.start_e <= 1 or not 0 < args.exploration_fraction <= 1:
        fail(
            f"need 0 <= --end-e <= --start-e <= 1 and 0 < --exploration-fraction <= 1, got {args.end_e}, "
            f"{args.start_e} and {args.exploration_fraction}"
        )
    if args.learning_starts < 0:
        fail(f"--learning-starts must be >= 0, got {args.learning_starts}")
    if args.eval_episodes < 0:
        fail(f"--eval-episodes must be >= 0, got {args.eval_episodes}")
    if args.torch_threads < 0:
        fail(f"--torch-threads must be >= 0, got {args.torch_threads}")
    if args.checkpoint_every < 0:
        fail(f"--checkpoint-every must be >= 0 steps, got {args.checkpoint_every}")
    if args.buffer_size < args.batch_size or args.buffer_size // args.num_envs < ReplayBuffer.MIN_SLOTS:
        fail(
            f"--buffer-size {args.buffer_size} is too small: it must hold a batch (--batch-size {args.batch_size}) "
            f"and {ReplayBuffer.MIN_SLOTS} steps of each of the {args.num_envs} envs"
        )
    args.num_iterations = args.total_timesteps // args.num_envs
    if args.load_model is None:
        if args.num_iterations == 0:
            fail(f"--total-timesteps {args.total_timesteps} is less than one step of the {args.num_envs} envs")
        if args.learning_starts + args.train_frequency * args.num_envs > args.total_timesteps:
            fail(
                f"--learning-starts {args.learning_starts} leaves no update in --total-timesteps "
                f"{args.total_timesteps}: learning starts after it; give more steps or a smaller --learning-starts"
            )
        args.game, args.repeat_action_probability = resolve_env_id(args.env_id)
        check_memory(args)
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


# NETWORK: the Nature CNN with one Q-value per action
class QNetwork(nn.Module):
    """The Nature CNN (conv 32x8x8/4, 64x4x4/2, 64x3x3/1, fc 512) with one output per action, PyTorch's default
    initialisation, as in CleanRL's dqn_atari.py (same parameter names) and SB3's CnnPolicy. Frames arrive as uint8
    and become floats in [0, 1] on the device."""

    def __init__(self, observation_space: gym.spaces.Box, action_space: gym.spaces.Discrete, bf16: bool = False):
        super().__init__()
        self.bf16 = bf16
        self.network = nn.Sequential(
            nn.Conv2d(observation_space.shape[0], 32, 8, stride=4),
            nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 512),
            nn.ReLU(),
            nn.Linear(512, int(action_space.n)),
        )
        # channels-last weights and inputs: CPU convolutions run much faster in this layout, with the same numbers
        # (benchmarks/ablation.py)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Q(s, .): one value per action. With bf16, the layers before the last run under bf16 autocast; the Q-values,
        from which the TD targets and the loss are computed, are fp32."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            features = self.network[:-1](x.contiguous(memory_format=torch.channels_last).float() / 255.0)
        return self.network[-1](features.float())


# ALGO LOGIC: the replay memory, exploration and the TD loss
class ReplayBuffer:
    """A replay memory that stores each frame once and rebuilds the 4-frame stacks of s and s' when it samples.

    Each env writes a stream of slots into a ring of `buffer_size / num_envs` slots: slot i holds the newest frame of
    the observation s_i and, once the env has stepped, the action a_i, the clipped reward r_i and whether the step
    ended an episode for learning (`terminated`: game over or a lost life). The transition of slot i is s_i = frames
    i-3..i and s' = frames i-2..i+1, so that the stacks cost one frame per step instead of eight. `age` (steps since
    the first frame of the episode, capped at 3) tells which frames of a stack come from an earlier episode: those read
    as zeros, exactly as the env restarts its stack. When an episode ends (a game over, a lost life or the frame cap),
    its final frame takes a slot of its own (the s' of the last transition, from which an episode cut by the frame cap
    bootstraps) and the first frame of the next episode the slot after it. A slot is sampled once its successor exists
    and until one of the 3 frames before it is overwritten. The memory is on the
    host; sampled minibatches go to `device`.
    """

    MIN_SLOTS = 8  # a few stacks per env
    STORED = ("frames", "actions", "rewards", "terminated", "age", "valid")  # one entry per slot and env

    def __init__(self, buffer_size: int, num_envs: int, frame_shape: tuple, device: torch.device, seed: int):
        self.slots, self.num_envs, self.device = buffer_size // num_envs, num_envs, device
        shape = (self.slots, num_envs)
        self.frames = np.zeros(shape + tuple(frame_shape), dtype=np.uint8)
        self.actions = np.zeros(shape, dtype=np.uint8)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=bool)
        self.age = np.zeros(shape, dtype=np.uint8)
        self.valid = np.zeros(shape, dtype=bool)
        self.pos = np.full(num_envs, -1, dtype=np.int64)  # the newest slot of each env (-1: none yet)
        self.filled = 0  # slots written so far: the ring fills from slot 0
        self.envs = np.arange(num_envs)
        self.rng = np.random.default_rng(seed)

    @staticmethod
    def bytes_per_slot(frame_shape: tuple) -> int:
        return int(np.prod(frame_shape)) + 1 + 4 + 1 + 1 + 1  # frame, action, reward, terminated, age, valid

    def write(self, slots: np.ndarray, envs: np.ndarray, frames: np.ndarray, age):
        self.filled = max(self.filled, int(np.max(slots)) + 1)
        self.frames[slots, envs] = frames
        self.age[slots, envs] = age
        self.valid[slots, envs] = False  # no action yet (and a final frame never gets one)
        for back in (1, 2, 3):  # the oldest transitions, whose stacks reached into the overwritten slot
            self.valid[(slots + back) % self.slots, envs] = False

    def start(self, first_frames: np.ndarray):
        """The first frame of each env's next game (the newest frame of a reset observation), in the slot after the
        newest: a buffer restored from a checkpoint keeps the last transition of the game that was cut short."""
        self.pos = (self.pos + 1) % self.slots
        self.write(self.pos, self.envs, first_frames, 0)

    def add(self, actions, rewards, terminated, next_frames, ended, final_obs):
        """One step of every env: the action, clipped reward and flag of the newest slot, then the newest frame of s'
        (next_frames; where an episode ended, next_frames[e] is the first frame of the next episode and the final
        observation final_obs[e] gives the last frame of the episode that ended)."""
        p, envs = self.pos, self.envs
        self.actions[p, envs], self.rewards[p, envs], self.terminated[p, envs] = actions, rewards, terminated
        successor = (p + 1) % self.slots
        age = np.minimum(self.age[p, envs] + 1, 3)
        ended = np.flatnonzero(ended)
        if len(ended):  # the final frame of an episode, then the next episode's first frame in the slot after it
            self.write(successor[ended], ended, final_obs[ended, -1], age[ended])
            successor[ended] = (successor[ended] + 1) % self.slots
            age[ended] = 0
        self.write(successor, envs, next_frames, age)
        self.valid[p, envs] = True  # s' exists now
        self.pos = successor

    def state_dict(self) -> dict:
        """What the buffer holds, as tensors (a checkpoint is read back without unpickling anything else): the slots
        written so far, so that a checkpoint taken while the memory fills is as small as what it holds."""
        state = {name: torch.from_numpy(getattr(self, name)[: self.filled]) for name in self.STORED}
        return dict(state, slots=self.slots, pos=torch.from_numpy(self.pos), rng=self.rng.bit_generator.state)

    def load_state_dict(self, state: dict):
        saved = (state["slots"], tuple(state["frames"].shape[1:]))
        if saved != (self.slots, self.frames.shape[1:]):
            raise ValueError(f"a buffer of {saved[0]} x {saved[1]} frames, not {self.slots} x {self.frames.shape[1:]}")
        self.filled = len(state["frames"])
        for name in self.STORED:
            getattr(self, name)[: self.filled] = state[name].numpy()
        self.pos[...] = state["pos"].numpy()
        self.rng.bit_generator.state = state["rng"]

    def sample(self, batch_size: int):
        """A uniform minibatch of the stored transitions (with replacement, as SB3 and CleanRL sample)."""
        return self.get(self.rng.choice(np.flatnonzero(self.valid), size=batch_size))

    def get(self, flat: np.ndarray):
        """The transitions of slots `flat` (indices into the [slots, envs] grid): s, a, r, terminated, s'."""
        slot, env = np.divmod(flat, self.num_envs)
        back = np.arange(3, -2, -1)  # frames i-3, ..., i, i+1
        frames = self.frames[(slot[:, None] - back) % self.slots, env[:, None]]
        frames[back > self.age[slot, env][:, None]] = 0  # frame i-b is of an earlier game iff b > age: the env pads it
        actions = self.actions[slot, env].astype(np.int64)
        terminated = self.terminated[slot, env].astype(np.float32)
        batch = (frames[:, :-1], actions, self.rewards[slot, env], terminated, frames[:, 1:])
        return tuple(torch.as_tensor(array, device=self.device) for array in batch)


def check_memory(args: Args):
    """The replay memory must fit in the memory the host has available (Linux tells it in /proc/meminfo): its pages
    are taken as it fills, so a buffer that does not fit would stop the run hours after it started."""
    meminfo = Path("/proc/meminfo")
    lines = meminfo.read_text().splitlines() if meminfo.exists() else []  # elsewhere, nothing is checked
    available = [int(line.split()[1]) * 1024 for line in lines if line.startswith("MemAvailable:")]
    need = args.buffer_size * ReplayBuffer.bytes_per_slot((84, 84))
    if available and need > available[0]:
        fail(
            f"--buffer-size {args.buffer_size} needs {need / 2**30:.1f} GiB of memory, {available[0] / 2**30:.1f} GiB "
            "are available; choose a smaller buffer"
        )


def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    """epsilon falls linearly from start_e to end_e over `duration` steps, then stays."""
    slope = (end_e - start_e) / duration
    return max(slope * t + start_e, end_e)  # epsilon_t = max(start_e + (end_e - start_e) * t / duration, end_e)


def epsilon_greedy(q_network: QNetwork, obs: torch.Tensor, epsilon: float, num_actions: int) -> np.ndarray:
    """a = a random action with probability epsilon (per env), else argmax_a Q(s, a). The draws come from torch's
    generator, whose state a checkpoint keeps, so that a resumed run explores as the stopped one would have."""
    explore = torch.rand(len(obs)) < epsilon
    actions = torch.randint(num_actions, (len(obs),))
    if not explore.all():  # the network is asked only when some env acts greedily
        with torch.inference_mode():
            actions = torch.where(explore, actions, q_network(obs).argmax(dim=1).cpu())
    return actions.numpy()


def td_target(rewards, next_q_target, terminated, gamma: float, next_q_online=None) -> torch.Tensor:
    """The TD target of DQN, or of Double DQN given next_q_online = Q(s', .) of the online network. A transition cut by
    the frame cap is not terminated: it bootstraps from its s', the final observation of the game."""
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values  # max_a' Q_target(s', a')
    else:  # Q_target(s', argmax_a' Q(s', a')): the online network picks a', the target network values it
        next_value = next_q_target.gather(1, next_q_online.argmax(dim=1, keepdim=True)).squeeze(1)
    # y = r + gamma * max_a' Q_target(s', a'), and y = r where the episode terminated
    return rewards + gamma * next_value * (1.0 - terminated)


def dqn_loss(q_network: QNetwork, target_network: QNetwork, args: Args, obs, actions, rewards, terminated, next_obs):
    """The TD loss on one minibatch, as SB3's DQN computes it: (loss, mean Q(s, a))."""
    with torch.no_grad():
        next_q_online = q_network(next_obs) if args.double_dqn else None
        target = td_target(rewards, target_network(next_obs), terminated, args.gamma, next_q_online)
    q_values = q_network(obs).gather(1, actions.unsqueeze(1)).squeeze(1)  # Q(s, a)
    # L = Huber(Q(s, a) - y): squared below 1, linear above, so that a large TD error cannot blow up the gradient
    return F.smooth_l1_loss(q_values, target), q_values.detach().mean()


# EVALUATION, SAVING AND THE HUB
def evaluate(agent: QNetwork, args: Args, episodes: int, seed: int, device: torch.device, video_folder: Path | None):
    """Course unit 3's protocol as the RL Zoo runs it for Atari: whole games (all lives, raw score), epsilon-greedy with
    the final exploration rate end_e, the preprocessing of training; the first game is recorded if video_folder. The
    games are played side by side, game i seeded with seed + i. Seeded, so that a model evaluates to the same numbers
    after training and after loading with the same --seed."""
    torch.manual_seed(seed)
    envs = AtariGames(args, episodes, video_folder, evaluation=True)
    obs, _ = envs.reset(seed=seed)
    returns, finished = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    while not finished.all():
        actions = epsilon_greedy(
            agent, torch.as_tensor(obs, device=device), args.end_e, int(envs.single_action_space.n)
        )
        obs, _, _, _, infos = envs.step(actions)
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


def load_agent(path: str, device: torch.device) -> tuple[QNetwork, Args]:
    """A saved model and the arguments it was trained with; one clear line for anything missing or corrupt."""
    saved = read_saved_args(path)
    saved.game, saved.repeat_action_probability = resolve_env_id(saved.env_id)
    envs = AtariGames(saved, 1)
    agent = QNetwork(envs.single_observation_space, envs.single_action_space, saved.bf16).to(device)
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
    name = "Double DQN" if args.double_dqn else "DQN"
    return f"""---
tags:
- {env_id}
- dqn
- reinforcement-learning
- deep-reinforcement-learning
- custom-implementation
- deep-rl-course
model-index:
- name: DQN
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

# {name} agent playing {env_id}

A {name} agent trained with `{SCRIPT.name}`, a single-file PyTorch implementation of DQN (Hugging Face Deep RL Course,
unit 3), on `{env_id}`: frame skip 4 with max-pool, 84x84 grayscale, 4 stacked frames, up to 30 no-op starts,
FIRE on reset, {sticky}. It scores **{mean:.2f} +/- {std:.2f}** (raw score of whole games) over {args.eval_episodes}
evaluation games, epsilon-greedy with epsilon {args.end_e}.

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


def finish(agent: QNetwork, args: Args, run_dir: Path, writer: SummaryWriter, device: torch.device, stopped: int = 0):
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
    return torch.device("cuda" if torch.cuda.is_available() and args.cuda else "cpu")


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

    def __init__(self, args: Args, run_name: str, run_dir: Path, **parts):
        self.args, self.run_name, self.path, self.parts = args, run_name, run_dir / "checkpoint.pt", parts
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
        came. True after a signal: the run stops here."""
        every = self.args.checkpoint_every
        if self.stop.signum or every > 0 and global_step // every > (global_step - steps) // every:
            self.save(global_step)
        if self.stop.signum:
            print(f"checkpoint of step {global_step:,} saved; continue with: python {SCRIPT.name} --resume {self.path}")
        return bool(self.stop.signum)


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
    run_name, run_dir, writer = start_run(args, checkpoint)
    device = seed_everything(args)

    # env setup: whole games in C++ threads; step() returns the learning signals (clipped rewards, a lost life ends
    # an episode), and SAME_STEP autoreset hands over the final observation of a game in the step that ends it
    video_folder = run_dir / "videos" if args.capture_video else None
    envs = AtariGames(args, args.num_envs, video_folder)
    action_space = envs.single_action_space

    q_network = QNetwork(envs.single_observation_space, action_space, args.bf16).to(device)
    # fused: Adam's update of all parameters in one kernel; the batch-32 updates are so small that it saves a large
    # part of each (benchmarks/ablation.py)
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
    target_network = QNetwork(envs.single_observation_space, action_space, args.bf16).to(device)
    target_network.load_state_dict(q_network.state_dict())
    rb = ReplayBuffer(args.buffer_size, args.num_envs, envs.single_observation_space.shape[1:], device, args.seed)
    parts = dict(q_network=q_network, target_network=target_network, optimizer=optimizer, replay_buffer=rb)
    checkpoints = Checkpoints(args, run_name, run_dir, **parts)  # torch's generator, which explores, is saved too
    global_step = checkpoints.restore(checkpoint, device) if checkpoint is not None else 0

    # game statistics: the vector env reports none, so raw scores of whole games are tracked here
    episode_returns = np.zeros(args.num_envs)
    episode_lengths = np.zeros(args.num_envs, dtype=np.int64)

    start_step, start_time = global_step, time.time()
    progress = Progress(args.total_timesteps, global_step)
    # env i plays from seed + i; a resumed run starts new games (the emulators' state is not saved), whose first
    # frames the buffer takes as a new game's
    obs, _ = envs.reset(seed=args.seed + global_step)
    rb.start(obs[:, -1])
    exploration_steps = args.exploration_fraction * args.total_timesteps

    for iteration in range(global_step // args.num_envs + 1, args.num_iterations + 1):
        global_step += args.num_envs

        # ALGO LOGIC: act uniformly at random until learning starts (the replay memory fills, as SB3 fills it), then
        # epsilon-greedily, epsilon annealed linearly over the first exploration_fraction of the steps
        epsilon = linear_schedule(args.start_e, args.end_e, exploration_steps, global_step)
        if global_step <= args.learning_starts:
            epsilon = 1.0
        actions = epsilon_greedy(q_network, torch.as_tensor(obs, device=device), epsilon, int(action_space.n))
        # a game cut by the frame cap is truncated, not terminated: its TD target bootstraps from the final observation
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)

        # ALGO LOGIC: store (s, a, r, terminated, s'), s' the final observation where an episode ended; the buffer
        # takes the newest frame of each observation only
        rb.add(actions, rewards, terminated, next_obs[:, -1], terminated | truncated, infos["final_obs"])
        obs = next_obs

        # logging: every game that ended, in every env (raw scores of whole games, all lives)
        episode_returns += infos["raw_reward"]
        episode_lengths += 1
        for i in np.flatnonzero(infos["game_over"]):
            writer.add_scalar("charts/episodic_return", episode_returns[i], global_step)
            writer.add_scalar("charts/episodic_length", episode_lengths[i], global_step)
            progress.returns.append(episode_returns[i])
            episode_returns[i], episode_lengths[i] = 0.0, 0

        # ALGO LOGIC: training, gradient steps on minibatches of the replay memory every train_frequency steps
        if global_step > args.learning_starts:
            if iteration % args.train_frequency == 0:
                for _ in range(args.gradient_steps):
                    loss, q_values = dqn_loss(q_network, target_network, args, *rb.sample(args.batch_size))
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(q_network.parameters(), args.max_grad_norm)
                    optimizer.step()
                if iteration % 100 == 0:
                    writer.add_scalar("losses/td_loss", loss.item(), global_step)
                    writer.add_scalar("losses/q_values", q_values.item(), global_step)

            # ALGO LOGIC: target network update, theta_target <- tau * theta + (1 - tau) * theta_target
            if iteration % max(args.target_network_frequency // args.num_envs, 1) == 0:
                for target_param, param in zip(target_network.parameters(), q_network.parameters()):
                    target_param.data.copy_(args.tau * param.data + (1.0 - args.tau) * target_param.data)

        # logging and progress
        if iteration % 100 == 0 or iteration == args.num_iterations:
            sps = int((global_step - start_step) / (time.time() - start_time))
            writer.add_scalar("charts/SPS", sps, global_step)
            writer.add_scalar("charts/epsilon", epsilon, global_step)
            writer.add_scalar("charts/learning_rate", optimizer.param_groups[0]["lr"], global_step)
        progress.show(global_step, final=iteration == args.num_iterations)
        if checkpoints.save_if_due(global_step, args.num_envs):
            break

    envs.close()
    finish(q_network, args, run_dir, writer, device, checkpoints.stop.end())
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
