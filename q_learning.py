"""Tabular Q-learning, unit 2 of the Hugging Face Deep RL Course (Watkins, 1989; Sutton & Barto, section 6.5).

The agent keeps a table Q(s, a), acts epsilon-greedily with epsilon decaying exponentially over the episodes, and after
every step moves Q(s, a) towards the TD target r + gamma * max_a' Q(s', a') -- just r when s' is terminal; an episode
cut by the step limit still bootstraps. The greedy policy argmax_a Q(s, a) is then evaluated as the course does.

Defaults are the course notebook's for each env: FrozenLake-v1 4x4 not slippery (10,000 episodes) and Taxi-v3
(25,000 episodes; gymnasium 1.4 runs it as Taxi-v4, the same task). Any gymnasium env with Discrete observations and
actions works, e.g. CliffWalking-v1.

    python q_learning.py                                      # FrozenLake-v1, 4x4, not slippery
    python q_learning.py --env-id Taxi-v3 --save-model        # the Q-table lands in runs/<run>/qtable.npy
    python q_learning.py --load-model runs/<run>/qtable.npy --capture-video       # evaluate it, record a replay
    python q_learning.py --env-id Taxi-v3 --hf-repo-id <user>/q-Taxi-v3           # train, evaluate, upload
    python q_learning.py --help

Default runs, measured on a shared 2-core AMD EPYC (seed 1; evaluation as the course does it: 100 greedy episodes,
Taxi on the course's seeds; the optimum there is 7.56 +/- 2.71):
    FrozenLake-v1  1.00 +/- 0.00, result 1.00   training 0.3 s, whole run 3.3 s
    Taxi-v3        7.52 +/- 2.76, result 4.76   training 1.1 s, whole run 4.3 s (the course's loop: 15-16 s)
About 2.5 s of a whole run is importing torch for its TensorBoard writer. benchmarks/bench_q_learning.py runs the
course's loop side by side.
"""

import datetime
import json
import math
import os
import pickle
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import tyro
from gymnasium.envs.toy_text import CliffWalkingEnv, FrozenLakeEnv, TaxiEnv


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
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
    """record a replay of one greedy episode after training (runs/<run>/videos/)"""
    save_model: bool = False
    """save the Q-table (runs/<run>/qtable.npy) and the args (args.json next to it)"""
    load_model: str | None = None
    """path of a saved Q-table: skip training and evaluate it (env and hyperparameters from the args.json next to it)"""
    eval_episodes: int | None = None
    """evaluation episodes (None: the course's 100)"""
    hub_package: bool = False
    """build the Hugging Face Hub folder runs/<run>/hub/ (model card, q-learning.pkl, replay.mp4, ...)"""
    hf_repo_id: str | None = None
    """upload the Hub folder to this model repo, e.g. `user/q-Taxi-v3` (implies --hub-package)"""

    # Algorithm specific arguments; None means the course's default for the env
    env_id: str = "FrozenLake-v1"
    """the id of the environment: any gymnasium env with Discrete observations and actions"""
    map_name: str | None = None
    """FrozenLake's map, 4x4 or 8x8 (None: the id's own, 4x4 for FrozenLake-v1)"""
    is_slippery: bool = False
    """FrozenLake: slippery ice (the course trains without)"""
    total_episodes: int | None = None
    """training episodes (None: the course's 10000; Taxi 25000)"""
    learning_rate: float | None = None
    """the learning rate lr of the update (None: the course's 0.7)"""
    gamma: float | None = None
    """the discount factor gamma (None: the course's 0.95)"""
    max_steps: int | None = None
    """step limit of an episode, in training and evaluation (None: the course's 99)"""
    max_epsilon: float | None = None
    """exploration probability at the start (None: the course's 1.0)"""
    min_epsilon: float | None = None
    """exploration probability it decays to (None: the course's 0.05)"""
    decay_rate: float | None = None
    """exponential decay rate of epsilon per episode (None: the course's 0.0005; Taxi 0.005)"""


# The course notebook's hyperparameters: FrozenLake's for every env, Taxi changes two of them.
COURSE_DEFAULTS = dict(
    total_episodes=10_000,
    learning_rate=0.7,
    gamma=0.95,
    max_steps=99,
    max_epsilon=1.0,
    min_epsilon=0.05,
    decay_rate=0.0005,
    eval_episodes=100,
)
COURSE_DEFAULTS_BY_ENV = {"Taxi": dict(total_episodes=25_000, decay_rate=0.005)}
# The course evaluates Taxi on these seeds, in this order (duplicates included).
TAXI_EVAL_SEEDS = [
    16, 54, 165, 177, 191, 191, 120, 80, 149, 178, 48, 38, 6, 125, 174, 73, 50, 172, 100, 148,
    146, 6, 25, 40, 68, 148, 49, 167, 9, 97, 164, 176, 61, 7, 54, 55, 161, 131, 184, 51,
    170, 12, 120, 113, 95, 126, 51, 98, 36, 135, 54, 82, 45, 95, 89, 59, 95, 124, 9, 113,
    58, 85, 51, 134, 121, 169, 105, 21, 30, 11, 50, 65, 12, 43, 82, 145, 152, 97, 106, 55,
    31, 85, 38, 112, 102, 168, 123, 97, 21, 83, 158, 26, 80, 63, 5, 81, 32, 11, 28, 148,
]  # fmt: skip
# Course ids gymnasium 1.4 retired, and what runs instead (the same task with default arguments).
RETIRED_ENV_IDS = {"Taxi-v3": "Taxi-v4"}
# What a saved Q-table brings with it in its args.json: the env it plays and how it was trained.
MODEL_FIELDS = ("env_id", "map_name", "is_slippery", "total_episodes", "learning_rate", "gamma", "max_steps",
                "max_epsilon", "min_epsilon", "decay_rate")  # fmt: skip
MODEL_FILE = "qtable.npy"


def fail(message):
    """One line on stderr, exit status 1, no traceback."""
    sys.exit(f"q_learning.py: error: {message}")


# ==================================================================================================== environment


def make_env(env_id, env_kwargs, render_mode=None):
    return gym.make(env_id, render_mode=render_mode, **env_kwargs)


class TableEnv:
    """A toy-text env (FrozenLake, Taxi, CliffWalking) stepped straight from its own transition table.

    Those envs keep their whole dynamics in P[s][a] = [(probability, s', reward, terminated), ...] and an initial-state
    distribution. Their step() samples P through numpy and builds an info dict (Taxi's with an action mask): about
    18 us a step here, with or without gymnasium's wrappers. Sampling the same table here takes 0.4 us: the same MDP,
    drawn from a random stream that the env's own seeded generator seeds. No time limit: the training loop keeps its
    own, so truncation stays distinct from termination.
    """

    @staticmethod
    def supports(env):
        base = env.unwrapped
        fickle = getattr(base, "fickle_passenger", False)  # Taxi's fickle passenger changes its mind outside the table
        return isinstance(base, (FrozenLakeEnv, TaxiEnv, CliffWalkingEnv)) and not fickle

    def __init__(self, env):
        base = env.unwrapped
        self.rng = random.Random(int(base.np_random.integers(2**63)))
        self.initial_states = np.flatnonzero(base.initial_state_distrib).tolist()
        self.initial_cum_weights = np.cumsum(base.initial_state_distrib[self.initial_states]).tolist()
        n_states, n_actions = base.observation_space.n, base.action_space.n
        self.outcomes = [[self.cumulate(base.P[s][a]) for a in range(n_actions)] for s in range(n_states)]

    @staticmethod
    def cumulate(transitions):
        """[(p, s', r, terminated), ...] -> ((cumulative p, s', r, terminated), ...), as Python scalars."""
        cum, outcomes = 0.0, []
        for p, s_next, r, terminated in transitions:
            cum += p
            outcomes.append((cum, int(s_next), float(r), bool(terminated)))
        return tuple(outcomes)

    def reset(self):
        self.s = self.rng.choices(self.initial_states, cum_weights=self.initial_cum_weights)[0]
        return self.s, {}

    def step(self, action):
        u = self.rng.random()
        for cum, s_next, r, terminated in self.outcomes[self.s][action]:
            if u < cum:
                break
        self.s = s_next
        return s_next, r, terminated, False, {}


# ==================================================================================================== algorithm
# The Q-table is a list of rows of Python floats: on rows of a few actions, indexing and max() on lists cost a
# fraction of numpy's per-call overhead, and the loop below does little else.


def epsilon(episode, min_epsilon, max_epsilon, decay_rate):
    # epsilon = min_epsilon + (max_epsilon - min_epsilon) * exp(-decay_rate * episode)
    return min_epsilon + (max_epsilon - min_epsilon) * math.exp(-decay_rate * episode)


def greedy_action(q_row):
    # a = argmax_a Q(s, a); ties go to the lowest action, as np.argmax
    return q_row.index(max(q_row))


def q_update(q, s, a, r, s_next, terminated, learning_rate, gamma):
    """One Q-learning update: bootstraps from s' unless s' is terminal (a time limit does not end the MDP)."""
    td_target = r if terminated else r + gamma * max(q[s_next])  # R + gamma * max_a' Q(S', a')
    q[s][a] += learning_rate * (td_target - q[s][a])  # Q(S, A) := Q(S, A) + lr * (td_target - Q(S, A))


def run_episode(q, env, eps, max_steps, learning_rate, gamma, rng):
    """One training episode of at most max_steps steps: act epsilon-greedily, update Q after every step.

    `env` is a TableEnv or an unwrapped gymnasium env. Returns the episode's return and length."""
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


def evaluate(env, q, n_episodes, max_steps, seeds):
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


# ==================================================================================================== plumbing


def check_args(args):
    """Fill in the course's defaults and check every input before any work starts.

    Returns the env (made with the id gymnasium runs), its keyword arguments and, with --load-model, the Q-table."""
    if args.load_model:
        args_file = Path(args.load_model).parent / "args.json"
        try:
            saved = json.loads(args_file.read_text())
            for field in MODEL_FIELDS:
                setattr(args, field, saved[field])
        except (OSError, ValueError, TypeError, KeyError) as e:
            fail(f"--load-model needs the args.json saved next to the Q-table; {args_file}: {e!r}")

    run_id = RETIRED_ENV_IDS.get(args.env_id, args.env_id)
    try:
        spec = gym.spec(run_id)
    except gym.error.Error as e:  # NameNotFound, VersionNotFound, DeprecatedEnv, ...
        fail(f"unknown env id {args.env_id!r} ({e}); try FrozenLake-v1, Taxi-v3 or CliffWalking-v1")
    if run_id != args.env_id:
        print(f"note: gymnasium {gym.__version__} retired {args.env_id}; running {run_id}, the same task")

    for field, default in (COURSE_DEFAULTS | COURSE_DEFAULTS_BY_ENV.get(spec.name, {})).items():
        if getattr(args, field) is None:
            setattr(args, field, default)
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
    env_kwargs = dict(map_name=args.map_name, is_slippery=args.is_slippery) if frozen_lake else {}
    try:
        env = make_env(run_id, env_kwargs)
    except Exception as e:
        fail(f"cannot make {run_id} with {env_kwargs}: {e!r}")
    spaces = {"observation": env.observation_space, "action": env.action_space}
    for name, space in spaces.items():
        if not isinstance(space, gym.spaces.Discrete) or space.start != 0:
            fail(f"{args.env_id} has a {space} {name} space; tabular Q-learning needs Discrete observations and "
                 f"actions counted from 0 (e.g. FrozenLake-v1, Taxi-v3, CliffWalking-v1)")  # fmt: skip

    qtable = None
    if args.load_model:
        try:
            qtable = np.load(args.load_model, allow_pickle=False)  # never unpickle what we load
        except (OSError, ValueError, EOFError) as e:
            fail(f"cannot read the Q-table {args.load_model} (a .npy saved by --save-model): {e!r}")
        shape = (spaces["observation"].n, spaces["action"].n)
        if qtable.shape != shape or qtable.dtype.kind != "f":
            fail(f"{args.load_model} holds a {qtable.dtype} array of shape {qtable.shape}; {args.env_id} needs floats "
                 f"of shape {shape} (states, actions)")  # fmt: skip

    if args.hf_repo_id:
        import huggingface_hub

        if args.hf_repo_id.count("/") != 1:
            fail(f"--hf-repo-id must look like user/name, got {args.hf_repo_id!r}")
        if not huggingface_hub.get_token():
            fail("--hf-repo-id needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
        args.hub_package = True
    return env, env_kwargs, qtable


def leaderboard_env_name(env_id, env_kwargs):
    """The name the course leaderboard files a model under: the course's id, plus FrozenLake's map and no slipping."""
    name = env_id + (f"-{env_kwargs['map_name']}" if "map_name" in env_kwargs else "")
    return name + ("-no_slippery" if env_kwargs.get("is_slippery") is False else "")


def save_model(folder, qtable, args):
    np.save(folder / MODEL_FILE, qtable)
    (folder / "args.json").write_text(json.dumps(vars(args), indent=2))


def hyperparameter_table(args):
    return "|param|value|\n|-|-|\n" + "\n".join(f"|{key}|{value}|" for key, value in vars(args).items())


def build_hub_folder(hub_dir, args, qtable, results, replay, env_kwargs, eval_seeds):
    """The folder the course leaderboard understands; building it needs no network."""
    hub_dir.mkdir()
    save_model(hub_dir, qtable, args)
    (hub_dir / "results.json").write_text(json.dumps(results, indent=2))
    shutil.copy(replay, hub_dir / "replay.mp4")
    shutil.copy(__file__, hub_dir / os.path.basename(__file__))

    # The course's own format, read by its load_from_hub (pickle.load): its keys, the table as a numpy array.
    course_model = dict(
        env_id=args.env_id,
        max_steps=args.max_steps,
        n_training_episodes=args.total_episodes,
        n_eval_episodes=args.eval_episodes,
        eval_seed=eval_seeds,
        learning_rate=args.learning_rate,
        gamma=args.gamma,
        max_epsilon=args.max_epsilon,
        min_epsilon=args.min_epsilon,
        decay_rate=args.decay_rate,
        qtable=qtable,
    )
    if "map_name" in env_kwargs:
        course_model |= dict(map_name=env_kwargs["map_name"], slippery=env_kwargs["is_slippery"])
    with open(hub_dir / "q-learning.pkl", "wb") as f:
        pickle.dump(course_model, f)

    env_name = leaderboard_env_name(args.env_id, env_kwargs)
    model_name = args.hf_repo_id.split("/")[1] if args.hf_repo_id else f"q-{env_name}"
    mean, std = results["mean_reward"], results["std_reward"]
    ran_as = RETIRED_ENV_IDS.get(args.env_id)
    retired = f"gymnasium {gym.__version__} retired {args.env_id}: trained and evaluated on {ran_as}, the same task."
    (hub_dir / "README.md").write_text(f"""---
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

A tabular Q-learning agent of the Hugging Face Deep RL Course (unit 2), trained with `q_learning.py` (in this repo).
{retired if ran_as else ""}

Evaluation over {results["n_evaluation_episodes"]} greedy episodes{" on the course's seeds" if eval_seeds else ""}:
mean reward {mean:.2f} +/- {std:.2f}, course result (mean - std) {mean - std:.2f}.

## Usage

With the course's `load_from_hub` (it unpickles `q-learning.pkl`):

```python
model = load_from_hub(repo_id="{args.hf_repo_id or f"<user>/{model_name}"}", filename="q-learning.pkl")

# Don't forget to check if you need to add additional attributes (is_slippery=False etc)
env = gym.make(model["env_id"])
```

Or without unpickling anything (`{MODEL_FILE}` reads with `np.load(..., allow_pickle=False)`):

```bash
python q_learning.py --load-model {MODEL_FILE}  # the env and hyperparameters come from args.json
```

## Hyperparameters

{hyperparameter_table(args)}
""")


def upload(hub_dir, repo_id):
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, exist_ok=True)
        url = api.upload_folder(repo_id=repo_id, folder_path=hub_dir, commit_message="Upload Q-learning agent")
    except Exception as e:
        fail(f"uploading to {repo_id} failed ({e!r}); the folder is ready, retry with `hf upload {repo_id} {hub_dir}`")
    print(f"uploaded to {url}")


def main(args):
    env, env_kwargs, qtable = check_args(args)
    # torch is here only for its TensorBoard writer; importing it after the checks lets a bad flag answer at once
    from torch.utils.tensorboard import SummaryWriter

    # ==================================================================== plumbing: run dir, logging, seeding
    run_name = f"{args.env_id}__{args.exp_name}__{args.seed}__{int(time.time())}"
    run_dir = Path("runs") / run_name
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
    writer = SummaryWriter(str(run_dir))
    writer.add_text("hyperparameters", hyperparameter_table(args))

    env.reset(seed=args.seed)  # seeds the env's generator (and through it, a TableEnv's)
    rng = random.Random(args.seed)  # the agent's exploration
    # our own time limit: the course's max_steps, or the env's registered one if shorter
    max_steps = min(args.max_steps, env.spec.max_episode_steps or args.max_steps)
    # Taxi: the course's evaluation seeds; any other env: its first evaluation episode seeded with --seed
    eval_seeds = TAXI_EVAL_SEEDS if env.spec.name == "Taxi" else []

    # ==================================================================== algorithm: Q-learning
    if qtable is None:
        sim = TableEnv(env) if TableEnv.supports(env) else env.unwrapped
        n_states, n_actions = env.observation_space.n, env.action_space.n
        q = [[0.0] * n_actions for _ in range(n_states)]  # Q(s, a) = 0 for every state and action

        # charts/episodic_* are means over windows of consecutive episodes, every episode in exactly one window:
        # 250 points a run, at the global step where the window ends (an add_scalar per episode would cost more
        # than the training itself)
        log_window, progress_every = max(1, args.total_episodes // 250), max(1, args.total_episodes // 10)
        returns, lengths, logged = [], [], 0
        global_step, start_time = 0, time.perf_counter()
        for episode in range(args.total_episodes):
            eps = epsilon(episode, args.min_epsilon, args.max_epsilon, args.decay_rate)
            episodic_return, episodic_length = run_episode(q, sim, eps, max_steps, args.learning_rate, args.gamma, rng)

            # ------------------------------------------------------------ plumbing: logging
            returns.append(episodic_return)
            lengths.append(episodic_length)
            global_step += episodic_length
            done = episode + 1
            if done % log_window == 0 or done == args.total_episodes:
                writer.add_scalar("charts/episodic_return", statistics.fmean(returns[logged:]), global_step)
                writer.add_scalar("charts/episodic_length", statistics.fmean(lengths[logged:]), global_step)
                writer.add_scalar("charts/epsilon", eps, global_step)
                writer.add_scalar("charts/SPS", int(global_step / (time.perf_counter() - start_time)), global_step)
                logged = done
            if done % progress_every == 0:
                episodes_per_s = done / (time.perf_counter() - start_time)
                recent_return = statistics.fmean(returns[-100:])
                print(f"episode {done}/{args.total_episodes}, {episodes_per_s:.0f} episodes/s, "
                      f"mean return of the last 100 {recent_return:.2f}, epsilon {eps:.3f}")  # fmt: skip
        train_time = time.perf_counter() - start_time
        print(f"trained {args.total_episodes} episodes ({global_step} steps) in {train_time:.2f} s")
        qtable = np.array(q)
    q = qtable.tolist()

    # ==================================================================== algorithm: the course's evaluation
    returns = evaluate(env, q, args.eval_episodes, max_steps, eval_seeds or [args.seed])
    mean_reward, std_reward = float(np.mean(returns)), float(np.std(returns))
    print(f"mean_reward={mean_reward:.2f} std_reward={std_reward:.2f} result (mean-std)={mean_reward - std_reward:.2f}")

    # ==================================================================== plumbing: results, model, video, Hub
    for episode, episodic_return in enumerate(returns):
        writer.add_scalar("eval/episodic_return", episodic_return, episode)
    results = dict(
        env_id=args.env_id,
        mean_reward=mean_reward,
        std_reward=std_reward,
        n_evaluation_episodes=args.eval_episodes,
        eval_datetime=datetime.datetime.now().isoformat(),
    )
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    if args.save_model:
        save_model(run_dir, qtable, args)
        print(f"model saved to {run_dir / MODEL_FILE}")

    if args.capture_video or args.hub_package:
        # one greedy episode, capped at max_steps so it ends even if the policy loops; closing the env writes it
        video_env = gym.wrappers.RecordVideo(
            make_env(env.spec.id, env_kwargs, render_mode="rgb_array"),
            str(run_dir / "videos"),
            episode_trigger=lambda _: True,
            name_prefix="replay",
        )
        evaluate(video_env, q, 1, max_steps, [args.seed])
        video_env.close()
        replay = run_dir / "videos" / "replay-episode-0.mp4"  # RecordVideo's name for it
        print(f"replay video saved to {replay}")
    if args.hub_package:
        hub_dir = run_dir / "hub"
        build_hub_folder(hub_dir, args, qtable, results, replay, env_kwargs, eval_seeds)
        print(f"Hub folder built in {hub_dir}")
        if args.hf_repo_id:
            upload(hub_dir, args.hf_repo_id)

    env.close()
    writer.close()


if __name__ == "__main__":
    main(tyro.cli(Args))
