"""Taxi, 25,000 training episodes: q_learning.py against the course notebook's loop, side by side on this machine.

    python benchmarks/bench_q_learning.py                 # 3 runs each (seeds 1, 2, 3), interleaved
    python benchmarks/bench_q_learning.py --ablation      # q_learning.py's speed tricks, each on and off
    python benchmarks/bench_q_learning.py --ablation --repeats 5

Both sides run as their own process, so the table has two timings for each:
- training: the 25,000 episodes alone, timed inside the process (the course's `train(...)` call; q_learning.py's own
  "trained ... in X s" line, which includes its TensorBoard logging and progress lines);
- whole process: `python ...` start to exit, as a user waits for it: imports (q_learning.py imports torch for its
  TensorBoard writer), training, the 100-episode evaluation and q_learning.py's writing of results.
Evaluation is the course's: 100 greedy episodes on the course's Taxi seeds, mean +/- std and result = mean - std.
The course loop below is re-typed from the course's unit 2 notebook and runs only here. It differs in two places,
both outside the loop: gymnasium 1.4 has no Taxi-v3, so it makes Taxi-v4 (the same task), and it seeds `random`, the
env and its action space, which the notebook leaves unseeded.

--ablation times the whole default process of q_learning.py (FrozenLake-v1, and Taxi-v3 with its 25,000 episodes) with
all its speed tricks, with each one replaced by the textbook form it departs from, and with all of them replaced. The
textbook forms live here only: this file imports q_learning, swaps the pieces (see VARIANTS) and runs its main(), one
process per run, runs interleaved. A trick earns its place in q_learning.py where it saves at least 5% of the whole
process: saving = (time with the textbook form - time with the trick) / time with the textbook form.
"""

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEDS = (1, 2, 3)
TAXI_EVAL_SEEDS = [
    16, 54, 165, 177, 191, 191, 120, 80, 149, 178, 48, 38, 6, 125, 174, 73, 50, 172, 100, 148,
    146, 6, 25, 40, 68, 148, 49, 167, 9, 97, 164, 176, 61, 7, 54, 55, 161, 131, 184, 51,
    170, 12, 120, 113, 95, 126, 51, 98, 36, 135, 54, 82, 45, 95, 89, 59, 95, 124, 9, 113,
    58, 85, 51, 134, 121, 169, 105, 21, 30, 11, 50, 65, 12, 43, 82, 145, 152, 97, 106, 55,
    31, 85, 38, 112, 102, 168, 123, 97, 21, 83, 158, 26, 80, 63, 5, 81, 32, 11, 28, 148,
]  # fmt: skip


def course_run(seed):
    """The course notebook's Taxi section (its code, its globals), timed; prints one JSON line."""
    global env, learning_rate, gamma
    import random

    import gymnasium as gym
    import numpy as np

    env = gym.make("Taxi-v4", render_mode="rgb_array")  # the notebook: gym.make("Taxi-v3", render_mode="rgb_array")
    state_space = env.observation_space.n
    action_space = env.action_space.n

    def initialize_q_table(state_space, action_space):
        Qtable = np.zeros((state_space, action_space))
        return Qtable

    def greedy_policy(Qtable, state):
        # Exploitation: take the action with the highest state, action value
        action = np.argmax(Qtable[state][:])
        return action

    def epsilon_greedy_policy(Qtable, state, epsilon):
        # Randomly generate a number between 0 and 1
        random_num = random.uniform(0, 1)
        # if random_num > greater than epsilon --> exploitation
        if random_num > epsilon:
            # Take the action with the highest value given a state
            # np.argmax can be useful here
            action = greedy_policy(Qtable, state)
        # else --> exploration
        else:
            action = env.action_space.sample()
        return action

    def train(n_training_episodes, min_epsilon, max_epsilon, decay_rate, env, max_steps, Qtable):
        for episode in range(n_training_episodes):  # the notebook wraps this range in tqdm
            # Reduce epsilon (because we need less and less exploration)
            epsilon = min_epsilon + (max_epsilon - min_epsilon) * np.exp(-decay_rate * episode)
            # Reset the environment
            state, info = env.reset()
            step = 0
            terminated = False
            truncated = False

            # repeat
            for step in range(max_steps):
                # Choose the action At using epsilon greedy policy
                action = epsilon_greedy_policy(Qtable, state, epsilon)

                # Take action At and observe Rt+1 and St+1
                # Take the action (a) and observe the outcome state(s') and reward (r)
                new_state, reward, terminated, truncated, info = env.step(action)

                # Update Q(s,a):= Q(s,a) + lr [R(s,a) + gamma * max Q(s',a') - Q(s,a)]
                Qtable[state][action] = Qtable[state][action] + learning_rate * (
                    reward + gamma * np.max(Qtable[new_state]) - Qtable[state][action]
                )

                # If terminated or truncated finish the episode
                if terminated or truncated:
                    break

                # Our next state is the new state
                state = new_state
        return Qtable

    def evaluate_agent(env, max_steps, n_eval_episodes, Q, seed):
        episode_rewards = []
        for episode in range(n_eval_episodes):  # the notebook wraps this range in tqdm
            if seed:
                state, info = env.reset(seed=seed[episode])
            else:
                state, info = env.reset()
            step = 0
            truncated = False
            terminated = False
            total_rewards_ep = 0

            for step in range(max_steps):
                # Take the action (index) that have the maximum expected future reward given that state
                action = greedy_policy(Q, state)
                new_state, reward, terminated, truncated, info = env.step(action)
                total_rewards_ep += reward

                if terminated or truncated:
                    break
                state = new_state
            episode_rewards.append(total_rewards_ep)
        mean_reward = np.mean(episode_rewards)
        std_reward = np.std(episode_rewards)

        return mean_reward, std_reward

    # The notebook's Taxi hyperparameters
    n_training_episodes = 25000
    learning_rate = 0.7
    n_eval_episodes = 100
    eval_seed = TAXI_EVAL_SEEDS
    max_steps = 99
    gamma = 0.95
    max_epsilon = 1.0
    min_epsilon = 0.05
    decay_rate = 0.005

    random.seed(seed)  # not in the notebook: makes the run repeatable
    env.reset(seed=seed)
    env.action_space.seed(seed)
    Qtable_taxi = initialize_q_table(state_space, action_space)
    start = time.perf_counter()
    Qtable_taxi = train(n_training_episodes, min_epsilon, max_epsilon, decay_rate, env, max_steps, Qtable_taxi)
    train_s = time.perf_counter() - start
    mean_reward, std_reward = evaluate_agent(env, max_steps, n_eval_episodes, Qtable_taxi, eval_seed)
    print(json.dumps(dict(train_s=train_s, mean_reward=float(mean_reward), std_reward=float(std_reward))))


def timed(command, cwd):
    """Run a command; return its stdout and the whole process's wall time."""
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wall_s = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench_q_learning.py: error: {' '.join(map(str, command))} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout, wall_s


def run_course(seed, workdir):
    stdout, wall_s = timed([sys.executable, __file__, "--course-run", str(seed)], workdir)
    return dict(json.loads(stdout.splitlines()[-1]), wall_s=wall_s)


def run_ours(seed, workdir):
    command = [sys.executable, ROOT / "q_learning.py", "--env-id", "Taxi-v3", "--seed", str(seed)]
    stdout, wall_s = timed(command, workdir)
    train_s = float(re.search(r"^trained \d+ episodes \(\d+ steps\) in ([\d.]+) s$", stdout, re.M).group(1))
    run_dir = next((Path(workdir) / "runs").glob(f"Taxi-v3__q_learning__{seed}__*"))
    results = json.loads((run_dir / "results.json").read_text())
    return dict(train_s=train_s, wall_s=wall_s, mean_reward=results["mean_reward"], std_reward=results["std_reward"])


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; "
            f"Python {platform.python_version()}")  # fmt: skip


# ---- --ablation: q_learning.py with a speed trick replaced by the textbook form it departs from


def textbook_env(q):
    """env.step of the gymnasium env instead of TableEnv's sampling of its transition table."""
    q.TableEnv.supports = staticmethod(lambda env: False)


def numpy_qtable(q):
    """The course's Q-table: a numpy array, qtable[s, a], np.argmax and np.max, instead of rows of Python floats."""
    import numpy as np

    def q_update(qtable, s, a, r, s_next, terminated, learning_rate, gamma):
        td_target = r if terminated else r + gamma * np.max(qtable[s_next])
        qtable[s, a] = qtable[s, a] + learning_rate * (td_target - qtable[s, a])

    q.initialize_q_table = lambda n_states, n_actions: np.zeros((n_states, n_actions))
    q.greedy_action = lambda q_row: np.argmax(q_row)
    q.q_update = q_update


def log_every_episode(q):
    """Every episode's return and length (and epsilon, SPS) written to TensorBoard, instead of means over windows."""
    q.LOG_POINTS = 10**12


TRICKS = {"TableEnv": textbook_env, "list-of-floats Q-table": numpy_qtable, "windowed logging": log_every_episode}
VARIANTS = {"all tricks": [], **{f"{name} off": [off] for name, off in TRICKS.items()}, "all off": [*TRICKS.values()]}
DEFAULT_RUNS = {"FrozenLake-v1": [], "Taxi-v3": ["--env-id", "Taxi-v3"]}


def variant_run(variant, argv):
    """One q_learning.py run, in this process, with the variant's textbook forms swapped in."""
    sys.path.insert(0, str(ROOT))
    import tyro

    import q_learning

    for off in VARIANTS[variant]:
        off(q_learning)
    q_learning.main(q_learning.check_args(tyro.cli(q_learning.Args, args=argv)))


def run_variant(variant, argv, workdir):
    stdout, wall_s = timed([sys.executable, __file__, "--variant-run", variant, *argv], workdir)
    train_s = float(re.search(r"^trained \d+ episodes \(\d+ steps\) in ([\d.]+) s$", stdout, re.M).group(1))
    run_dir = max((Path(workdir) / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    results = json.loads((run_dir / "results.json").read_text())
    shutil.rmtree(Path(workdir) / "runs")
    return dict(train_s=train_s, wall_s=wall_s, mean_reward=results["mean_reward"], std_reward=results["std_reward"])


def ablation(repeats):
    import tempfile

    print(f"machine: {machine()}", flush=True)
    runs = {(env, variant): [] for env in DEFAULT_RUNS for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as workdir:
        for repeat in range(repeats):  # interleaved, so that a busy spell of the machine hits every variant alike
            for (env, variant), results in runs.items():
                results.append(run_variant(variant, DEFAULT_RUNS[env], workdir))
                r = results[-1]
                evaluation = f"{r['mean_reward']:.2f} +/- {r['std_reward']:.2f}"
                print(f"  {repeat + 1}/{repeats} {env}, {variant}: process {r['wall_s']:.2f} s, "
                      f"training {r['train_s']:.2f} s, {evaluation}", flush=True)  # fmt: skip
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")

    def median(env, variant, key="wall_s"):
        return statistics.median(r[key] for r in runs[env, variant])

    print(f"\nWhole default process, medians of {repeats} interleaved runs (seed 1); min-max in brackets; saving of a")
    print("trick = (time with its textbook form - time with all tricks) / time with its textbook form\n")
    print("| variant | " + " | ".join(f"{env}: process (s) | saving | training (s)" for env in DEFAULT_RUNS) + " |")
    print("|-" * (1 + 3 * len(DEFAULT_RUNS)) + "|")
    for variant in VARIANTS:
        cells = []
        for env in DEFAULT_RUNS:
            walls = [r["wall_s"] for r in runs[env, variant]]
            off, on = median(env, variant), median(env, "all tricks")
            saving = f"{(off - on) / off:.1%}" if variant != "all tricks" else ""
            train_s = median(env, variant, "train_s")
            cells += [f"{off:.2f} [{min(walls):.2f}-{max(walls):.2f}]", saving, f"{train_s:.2f}"]
        print(f"| {variant} | " + " | ".join(cells) + " |")


def main():
    import tempfile

    import gymnasium
    import numpy

    print(f"machine: {machine()}, gymnasium {gymnasium.__version__}, numpy {numpy.__version__}", flush=True)
    runs = {"course notebook loop": [], "q_learning.py": []}
    with tempfile.TemporaryDirectory() as workdir:
        for seed in SEEDS:  # interleaved, so that a busy spell of the machine hits both sides alike
            for name, run in (("course notebook loop", run_course), ("q_learning.py", run_ours)):
                runs[name].append(run(seed, workdir))
                r = runs[name][-1]
                print(f"  {name}, seed {seed}: training {r['train_s']:.2f} s, process {r['wall_s']:.2f} s, "
                      f"{r['mean_reward']:.2f} +/- {r['std_reward']:.2f}", flush=True)  # fmt: skip

    course = {key: statistics.median(r[key] for r in runs["course notebook loop"]) for key in ("train_s", "wall_s")}
    print(f"\nTaxi, 25,000 training episodes, medians of {len(SEEDS)} runs (seeds {', '.join(map(str, SEEDS))})\n")
    print("| | training (s) | ratio | whole process (s) | ratio | evaluation per seed: mean +/- std (result) |")
    print("|-|-|-|-|-|-|")
    for name, results in runs.items():
        train_s, wall_s = (statistics.median(r[key] for r in results) for key in ("train_s", "wall_s"))
        evaluations = ", ".join(
            f"{r['mean_reward']:.2f} +/- {r['std_reward']:.2f} ({r['mean_reward'] - r['std_reward']:.2f})"
            for r in results
        )
        print(f"| {name} | {train_s:.2f} | {train_s / course['train_s']:.2f}x | {wall_s:.2f} | "
              f"{wall_s / course['wall_s']:.2f}x | {evaluations} |")  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--course-run"]:
        course_run(int(sys.argv[2]))
    elif sys.argv[1:2] == ["--variant-run"]:
        variant_run(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:2] == ["--ablation"]:
        ablation(int(sys.argv[sys.argv.index("--repeats") + 1]) if "--repeats" in sys.argv else 3)
    else:
        main()
