"""Train every script's tasks for several seeds, then write the results table and one learning-curve plot per task.

    python benchmarks/results.py                          # every task, its seeds; skips runs already recorded
    python benchmarks/results.py --tasks ppo-cartpole     # some tasks only
    python benchmarks/results.py --report                 # only rewrite results/README.md and the plots
    python benchmarks/results.py --list                   # the tasks, their commands and budgets
    python benchmarks/results.py --tasks ppo_atari-breakout --peers   # also SB3 on the same budget (Atari tasks)

Each run trains with the committed script and a fixed seed in results/runs/<task>/seed<k>/ (not kept in git), then
its summary goes to results/data/<task>__seed<k>.json: the command, the wall time of the whole process, the SPS, the
final evaluation (the script's own, as the course scores it) and the training curve (charts/episodic_return). The
table (results/README.md) and the plots (results/<task>.png: mean and min-max over seeds, x = environment steps) are
made from those files only, so runs can be spread over several sessions: what is missing is labelled as missing.
Run one task at a time on a 2-core machine; the wall times are only comparable on a quiet one.

A task with a peer (the Atari ones) also trains Stable-Baselines3 on the same game for the same steps with the same
hyperparameters (benchmarks/sb3_atari.py, in its own venv), evaluated as our script evaluates: its summary goes to
results/data/<task>__sb3__seed<k>.json, and the table and plot show it beside ours (`--peers` runs them too: about
an hour each here, SB3 PPO on Breakout at 1M steps and SB3 DQN on SpaceInvaders at 500k).
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import bench_atari
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
RL_ZOO = "RL Zoo (rl-baselines3-zoo benchmark)"
NO_SERVE = "3e1bc43"  # the last commit whose Atari games did not play the references' reset steps after a lost life


@dataclass
class Task:
    name: str
    script: str
    args: list[str]
    budget: str
    seeds: list[int]
    pass_mark: float | None = None
    reference: str = ""
    note: str = ""
    extra_env: dict = field(default_factory=dict)
    peer: tuple[str, dict] | None = None  # SB3's algorithm and the bench_atari config it trains with (same budget)
    peer_seeds: list[int] = field(default_factory=list)
    commit: str = ""  # run the script as it was at this commit instead (a comparison with an earlier version)
    beside: str = ""  # the task whose runs this task's plot also draws


TASKS = [
    Task("q_learning-frozenlake", "q_learning.py", [], "10,000 episodes", [1, 2, 3], None,
         "the optimum: 1.00 +/- 0.00"),
    Task("q_learning-taxi", "q_learning.py", ["--env-id", "Taxi-v3"], "25,000 episodes", [1, 2, 3], 4.5,
         "the best possible on the course's seeds: 7.56 +/- 2.71 (4.85)"),
    Task("reinforce-cartpole", "reinforce.py", [], "up to 1,000 episodes (stops once solved)", [1, 2, 3], 350,
         "course unit 4 pass mark: mean - std >= 350"),
    Task("a2c-pandareach", "a2c.py", ["--total-timesteps", "100000"], "100k steps (default 1M)", [1, 2, 3], -3.5,
         "SB3 A2C here, same settings: -3.5 first at 40k steps (-0.30 at 50k)",
         "10% of the default budget: the course's pass mark is reached at about 50k steps"),
    Task("a2c-pandareach-1m", "a2c.py", [], "1M steps (the default)", [1], -3.5,
         "course unit 6 pass mark: mean - std >= -3.5", "The default run, as a user starts it"),
    Task("a2c-cartpole", "a2c.py", ["--env-id", "CartPole-v1", "--num-envs", "8", "--total-timesteps", "500000"],
         "500k steps", [1, 2, 3], None, f"{RL_ZOO} A2C: 500.0 +/- 0.0 at 500k"),
    Task("ppo-cartpole", "ppo.py", [], "500k steps", [1, 2, 3], None, "CleanRL ppo.py: 490.0 +/- 6.1 at 500k"),
    Task("ppo-acrobot", "ppo.py", ["--env-id", "Acrobot-v1"], "500k steps", [1, 2, 3], None,
         "CleanRL ppo.py: -86.4 +/- 1.3 at 500k"),
    Task("ppo-lunarlander", "ppo.py",
         ["--env-id", "LunarLander-v3", "--total-timesteps", "1000000", "--num-envs", "16", "--num-steps", "1024",
          "--num-minibatches", "256", "--gamma", "0.999", "--gae-lambda", "0.98", "--learning-rate", "3e-4",
          "--no-anneal-lr", "--no-clip-vloss"],
         "1M steps", [1, 2, 3], 200, f"{RL_ZOO} PPO: 242.1 +/- 31.8 at 1M",
         "Evaluated with deterministic actions, as course unit 1 scores LunarLander"),
    Task("ppo_atari-breakout", "ppo_atari.py", ["--total-timesteps", "1000000"], "1M steps (default 10M)", [1, 2],
         None, f"CleanRL ppo_atari.py: 414.66 +/- 28.09 at 10M; {RL_ZOO} PPO: 398.0 +/- 33.3 at 10M",
         "10% of the default budget and of the references' (neither publishes a figure at 1M)",
         peer=("ppo", bench_atari.PPO | dict(total_timesteps=1_000_000)), peer_seeds=[1]),
    Task("ppo_atari-breakout-409k", "ppo_atari.py", ["--total-timesteps", "409600"], "409,600 steps", [1, 2, 3], None,
         "ppo_atari.py before the reset steps: the next row", "The budget at which a run can stay at random level "
         "when the agent must learn to serve after a lost life", peer=("ppo", bench_atari.PPO |
         dict(total_timesteps=409_600)), peer_seeds=[1], beside="ppo_atari-breakout-409k-noserve"),
    Task("ppo_atari-breakout-409k-noserve", "ppo_atari.py", ["--total-timesteps", "409600"], "409,600 steps", [1, 2, 3],
         None, "ppo_atari.py with the reset steps: the previous row", f"The script as it was at {NO_SERVE}, before "
         "the reset steps after a lost life (the game went on without FIRE, and the frame stack ran on)",
         commit=NO_SERVE),
    Task("dqn_atari-spaceinvaders", "dqn_atari.py", ["--total-timesteps", "500000"], "500k steps (default 10M)", [1],
         200, f"course unit 3 pass mark: mean - std >= 200 (the course trains 1M steps); {RL_ZOO} DQN: 622.7 +/- "
         "201.6 at 10M", "5% of the default budget and of the reference's; learning starts after 100k steps",
         peer=("dqn", bench_atari.DQN | dict(total_timesteps=500_000, learning_starts=100_000)), peer_seeds=[1]),
    Task("ppo_atari-breakout-bf16", "ppo_atari.py", ["--total-timesteps", "1000000", "--bf16"], "1M steps, --bf16",
         [1, 2], None, "the same seeds in fp32: ppo_atari-breakout", "The CNN under bfloat16 autocast, a speed "
         "option: its returns should lie within fp32's seed-to-seed spread",
         beside="ppo_atari-breakout"),
    Task("dqn_atari-spaceinvaders-bf16", "dqn_atari.py", ["--total-timesteps", "500000", "--bf16"],
         "500k steps, --bf16", [1], 200, "the same seed in fp32: dqn_atari-spaceinvaders",
         "The CNN under bfloat16 autocast", beside="dqn_atari-spaceinvaders"),
]  # fmt: skip
BY_NAME = {task.name: task for task in TASKS}


def data_path(task: Task, seed: int) -> Path:
    return RESULTS / "data" / f"{task.name}__seed{seed}.json"


def read_curve(run_dir: Path) -> tuple[list[list[float]], float | None]:
    """The episodic returns logged during training, as [step, return] pairs, and the last SPS logged."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = accumulator.Tags()["scalars"]
    curve = (
        [[e.step, e.value] for e in accumulator.Scalars("charts/episodic_return")]
        if "charts/episodic_return" in tags
        else []
    )
    sps = accumulator.Scalars("charts/SPS")[-1].value if "charts/SPS" in tags else None
    return curve, sps


def train(task: Task, seed: int):
    """One run of the committed script, whole process timed; its summary written to results/data."""
    workdir = RESULTS / "runs" / task.name / f"seed{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    script = ROOT / task.script
    if task.commit:  # the script is one file: as it was then, run beside the run's folder
        script = workdir / task.script
        script.write_text(git("show", f"{task.commit}:{task.script}"))
    command = [sys.executable, str(script), *task.args, "--seed", str(seed)]
    print(f"[{time.strftime('%H:%M:%S')}] {task.name} seed {seed}: {' '.join(command[1:])}", flush=True)
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", **task.extra_env}
    start = time.time()
    with open(workdir / "stdout.txt", "w") as log:
        proc = subprocess.run(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.time() - start
    if proc.returncode != 0:
        sys.exit(f"{task.name} seed {seed} failed (exit {proc.returncode}); see {workdir / 'stdout.txt'}")
    (run_dir,) = [p for p in (workdir / "runs").iterdir() if p.is_dir()]
    evaluation = json.loads((run_dir / "results.json").read_text())
    curve, sps = read_curve(run_dir)
    summary = dict(
        task=task.name, seed=seed, command=" ".join([task.script, *task.args, "--seed", str(seed)]),
        wall_s=round(wall, 1), sps=sps, mean_reward=evaluation["mean_reward"], std_reward=evaluation["std_reward"],
        n_evaluation_episodes=evaluation["n_evaluation_episodes"], date=time.strftime("%Y-%m-%d"),
        machine=machine(), commit=task.commit or commit(task.script), curve=curve,
    )  # fmt: skip
    data_path(task, seed).parent.mkdir(parents=True, exist_ok=True)
    data_path(task, seed).write_text(json.dumps(summary))
    result = summary["mean_reward"] - summary["std_reward"]
    print(f"    {summary['mean_reward']:.2f} +/- {summary['std_reward']:.2f} (result {result:.2f}) in {wall:.0f} s")


def peer_path(task: Task, seed: int) -> Path:
    return RESULTS / "data" / f"{task.name}__sb3__seed{seed}.json"


def train_peer(task: Task, seed: int):
    """One run of SB3 with the task's peer config and this seed, whole process timed; its summary to results/data."""
    algo, config = task.peer
    config = config | dict(seed=seed)
    workdir = RESULTS / "runs" / f"{task.name}-sb3" / f"seed{seed}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    command = [bench_atari.sb3_python(), str(ROOT / "benchmarks" / "sb3_atari.py"), algo, json.dumps(config), "out"]
    print(f"[{time.strftime('%H:%M:%S')}] {task.name}, SB3 {algo.upper()}, seed {seed}", flush=True)
    start = time.time()
    with open(workdir / "stdout.txt", "w") as log:
        proc = subprocess.run(command, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"{task.name} SB3 seed {seed} failed (exit {proc.returncode}); see {workdir / 'stdout.txt'}")
    record_peer(task, seed, workdir / "out", time.time() - start)


def record_peer(task: Task, seed: int, out: Path, wall: float):
    """The summary of an SB3 run (sb3_atari.py's curve.json and results.json in `out`) in the format of ours."""
    algo, config = task.peer
    evaluation = json.loads((out / "results.json").read_text())
    config = config | dict(seed=seed)
    summary = dict(
        task=task.name, seed=seed, command=f"benchmarks/sb3_atari.py {algo} '{json.dumps(config)}' out",
        wall_s=round(wall, 1), sps=round(config["total_timesteps"] / wall), mean_reward=evaluation["mean_reward"],
        std_reward=evaluation["std_reward"], n_evaluation_episodes=evaluation["n_evaluation_episodes"],
        date=time.strftime("%Y-%m-%d"), machine=machine(), commit=commit("benchmarks/sb3_atari.py"),
        curve=json.loads((out / "curve.json").read_text()),
    )  # fmt: skip
    peer_path(task, seed).write_text(json.dumps(summary))
    mean, std = summary["mean_reward"], summary["std_reward"]
    print(f"    SB3: {mean:.2f} +/- {std:.2f} (result {mean - std:.2f}) in {wall:.0f} s")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def commit(path: str) -> str:
    """The commit the run's code comes from, marked "+changes" where the file differs from it."""
    head = git("rev-parse", "--short", "HEAD").strip()
    return head + ("+changes" if git("status", "--porcelain", "--", path).strip() else "")


def machine() -> str:
    cpu = platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores"


def load(task: Task, peer: bool = False) -> list[dict]:
    """The recorded runs of a task (or of its SB3 peer), by seed."""
    pattern = f"{task.name}__sb3__seed*.json" if peer else f"{task.name}__seed*.json"
    runs = [json.loads(path.read_text()) for path in (RESULTS / "data").glob(pattern)]
    return sorted(runs, key=lambda run: run["seed"])


def binned_curves(runs: list[dict], edges: np.ndarray) -> np.ndarray:
    """Each run's training returns averaged in bins of steps: [run, bin]."""
    centres = (edges[:-1] + edges[1:]) / 2
    binned = []
    for run in runs:
        steps, returns = np.array(run["curve"]).T
        which = np.clip(np.digitize(steps, edges) - 1, 0, len(centres) - 1)
        means = np.array([returns[which == b].mean() if (which == b).any() else np.nan for b in range(len(centres))])
        valid = ~np.isnan(means)  # bins without a finished episode: carried from their neighbours
        binned.append(np.interp(centres, centres[valid], means[valid]))
    return np.array(binned)


def plot(task: Task, runs: list[dict], peers: list[dict]):
    """Mean over seeds (and min-max) of the training returns, each seed's curve averaged in bins of steps; the SB3
    peer's beside it where it was run, and the runs of the task named in task.beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = [run for run in load(BY_NAME[task.beside]) if run["curve"]] if task.beside else []
    end = max(max(step for step, _ in run["curve"]) for run in runs + peers + others)
    edges = np.linspace(0, end, 51)
    centres = (edges[:-1] + edges[1:]) / 2
    figure, axes = plt.subplots(figsize=(6, 3.6), dpi=110)
    own = task.name if task.beside else task.script  # beside another task's runs, each group goes by its task
    groups = [(runs, own), (peers, f"SB3 {task.peer[0].upper()}" if task.peer else ""), (others, task.beside)]
    for group, label in groups:
        if not group:
            continue
        binned = binned_curves(group, edges)
        (line,) = axes.plot(centres, binned.mean(0), label=f"{label}, mean of {len(group)} seed(s)")
        if len(group) > 1:
            axes.fill_between(
                centres, binned.min(0), binned.max(0), color=line.get_color(), alpha=0.25, label=f"{label}, min - max"
            )
    if task.pass_mark is not None:
        axes.axhline(task.pass_mark, color="grey", linestyle="--", linewidth=1, label="course pass mark (mean - std)")
    axes.set_title(f"{task.name}, {task.budget}", fontsize=9)
    axes.set_xlabel("environment steps")
    axes.set_ylabel("episodic return (training)")
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(RESULTS / f"{task.name}.png")
    plt.close(figure)


def late_return(run: dict) -> float:
    """The mean training return of the episodes that ended in the last 10% of the run's steps."""
    steps, returns = np.array(run["curve"]).T
    return float(returns[steps >= 0.9 * steps.max()].mean())


def table_row(task: Task, runs: list[dict], name: str, what: str, reference: str, expected=None) -> str:
    """One row of the results table: the runs of one task (ours or the peer's) summarised over their seeds."""
    means = [run["mean_reward"] for run in runs]
    results = [run["mean_reward"] - run["std_reward"] for run in runs]
    seeds = ", ".join(str(run["seed"]) for run in runs)
    missing = sorted(set(task.seeds if expected is None else expected) - {run["seed"] for run in runs})
    seeds += f" (seed {', '.join(map(str, missing))} not run yet)" if missing else ""
    sps = [run["sps"] for run in runs if run["sps"]]
    sps_text = f"{statistics.median(sps):,.0f}" if sps else ""
    wall = statistics.median(run["wall_s"] for run in runs)
    mark = "" if task.pass_mark is None else f"{task.pass_mark:g}"
    passed = "" if task.pass_mark is None else (" (all pass)" if min(results) >= task.pass_mark else " (not all)")
    spread = f" +/- {np.std(means):.2f}" if len(runs) > 1 else " (one seed)"
    return (
        f"| {name} | {what} | {seeds} | {np.mean(means):.2f}{spread} | {statistics.median(results):.2f} "
        f"({min(results):.2f}){passed} | {mark} | {wall:.0f} s | {sps_text} | {reference} |"
    )


def report():
    """results/README.md and the plots, from results/data."""
    lines = [
        "# Results",
        "",
        "Made by `python benchmarks/results.py` from the runs recorded in `data/` (one JSON file per run: command,",
        "wall time, SPS, evaluation, training curve). Every run used the committed script with the seed shown; the",
        "evaluation is the script's own after training (the course protocol of its unit). mean +/- std is over seeds",
        "of each seed's evaluation mean; \"result\" is the course's score, the evaluation's mean - std, as a median",
        "over seeds (worst seed in brackets). Wall time is the whole process, median over seeds.",
        "",
        "| task | script and budget | seeds | evaluation mean +/- std over seeds | result (worst) | pass mark | wall time | SPS | reference |",  # noqa: E501
        "|---|---|---|---|---|---|---|---|---|",
    ]
    plots, machines = [], set()
    for task in TASKS:
        runs, peers = load(task), load(task, peer=True)
        mark = "" if task.pass_mark is None else f"{task.pass_mark:g}"
        if not runs:
            lines.append(
                f"| {task.name} | `{task.script}`, {task.budget} | not run yet | | | {mark} | | | {task.reference} |"
            )
            continue
        note = f" {task.note}." if task.note else ""
        lines.append(table_row(task, runs, task.name, f"`{task.script}`, {task.budget}", f"{task.reference}.{note}"))
        if peers:
            algo = task.peer[0].upper()
            what = f"`benchmarks/sb3_atari.py {task.peer[0]}`, {task.peer[1]['total_timesteps']:,} steps"
            about = f"Stable-Baselines3 {algo}, {task.script}'s hyperparameters, same game, steps and evaluation"
            lines.append(table_row(task, peers, f"{task.name} (SB3 {algo})", what, about, expected=task.peer_seeds))
        machines |= {run["machine"] for run in runs + peers}
        if any(run["curve"] for run in runs):
            plot(task, [run for run in runs if run["curve"]], [run for run in peers if run["curve"]])
            plots.append(f"### {task.name}\n\n![{task.name}]({task.name}.png)\n")
    lines += ["", f"Machine: {'; '.join(sorted(machines))}, no GPU.", "", "## Each run", ""]
    lines += [
        "| task | seed | evaluation | result | training return, last 10% of steps | wall time | date | commit |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        for label, runs in ((task.name, load(task)), (f"{task.name} (SB3)", load(task, peer=True))):
            for run in runs:
                result = run["mean_reward"] - run["std_reward"]
                evaluation = (
                    f"{run['mean_reward']:.2f} +/- {run['std_reward']:.2f} ({run['n_evaluation_episodes']} episodes)"
                )
                late = f"{late_return(run):.2f}" if run["curve"] else ""
                lines.append(
                    f"| {label} | {run['seed']} | {evaluation} | {result:.2f} | {late} | {run['wall_s']:.0f} s | "
                    f"{run['date']} | {run.get('commit', 'not recorded')} |"
                )
    lines += ["", "## Learning curves", "", *plots]
    lines += ["## Commands", "", "```"]
    for task in TASKS:
        script = f"/tmp/{task.script}" if task.commit else task.script  # an earlier version: git show writes it there
        fetch = f"git show {task.commit}:{task.script} > {script} && " if task.commit else ""
        lines.append(f"{fetch}python {script} {' '.join(task.args)} --seed <seed>   # {task.name}".replace("  ", " "))
    peers = [task.name for task in TASKS if task.peer]
    lines += [f"python benchmarks/results.py --tasks {name} --peers   # and SB3 beside it" for name in peers]
    lines += ["```", ""]
    (RESULTS / "README.md").write_text("\n".join(lines))
    print(f"wrote {RESULTS / 'README.md'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(BY_NAME), default=list(BY_NAME), help="tasks to run")
    parser.add_argument("--seeds", nargs="+", type=int, help="these seeds instead of each task's own")
    parser.add_argument("--force", action="store_true", help="run again what is already recorded")
    parser.add_argument("--report", action="store_true", help="only rewrite the table and plots")
    parser.add_argument("--list", action="store_true", help="print the tasks and exit")
    parser.add_argument("--peers", action="store_true", help="also train the SB3 peers of the tasks (Atari; long)")
    options = parser.parse_args()
    if options.list:
        for task in TASKS:
            peer = f"; SB3 {task.peer[0].upper()} beside it, seeds {task.peer_seeds}" if task.peer else ""
            print(f"{task.name}: python {task.script} {' '.join(task.args)} ({task.budget}; seeds {task.seeds}{peer})")
        return
    if not options.report:
        for name in options.tasks:
            task = BY_NAME[name]
            for seed in options.seeds or task.seeds:
                if options.force or not data_path(task, seed).exists():
                    train(task, seed)
            if not (options.peers and task.peer):
                continue
            for seed in options.seeds or task.peer_seeds:
                if options.force or not peer_path(task, seed).exists():
                    train_peer(task, seed)
    report()


if __name__ == "__main__":
    main()
