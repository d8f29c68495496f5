"""ppo.py against Stable-Baselines3 PPO, same hyperparameters, measured one after the other on this machine.

    python benchmarks/bench_ppo.py          # 3 CartPole runs per side, then LunarLander (~35 min on 2 cores)
    python benchmarks/bench_ppo.py --runs 1 --skip-lunarlander

- CartPole-v1 with ppo.py's defaults (CleanRL's hyperparameters), 500k steps: the wall time from launching the process
  until the mean return of the last 20 finished episodes first reaches 475, the steps taken by then, and the SPS of
  the whole process (start-up included). Medians over seeds 1..runs.
- LunarLander-v3 with the README's hyperparameters (RL Zoo's), 1M steps, seed 1: evaluation over 10 episodes with
  deterministic actions on both sides, as course unit 1 scores it (mean, std, mean - std), and the whole-process wall
  time.

SB3 gets the same hyperparameters: value clipping as `clip_range_vf`, the annealed learning rate as a linear schedule,
the minibatch count as `batch_size`, and the same single torch thread (with torch's default of one thread per
core, the second thread only contends with the environments and any other process: SB3 took 505 s instead of
~110 s for CartPole while another process was running). It runs in its own venv (benchmarks/.venv-sb3, made on
first use) so it never touches the project's pins. Episode times come from ppo.py's TensorBoard events and SB3's
Monitor files.
"""

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SB3_VENV = ROOT / "benchmarks" / ".venv-sb3"
SB3_PACKAGES = [
    "torch==2.13.0", "stable-baselines3==2.9.2", "gymnasium[box2d]==1.4.0", "panda-gym==3.0.7", "ale-py==0.12.1"
]  # fmt: skip

CARTPOLE = dict(
    env_id="CartPole-v1", total_timesteps=500_000, learning_rate=2.5e-4, num_envs=4, num_steps=128, anneal_lr=True,
    gamma=0.99, gae_lambda=0.95, num_minibatches=4, update_epochs=4, clip_coef=0.2, clip_vloss=True, ent_coef=0.01,
    vf_coef=0.5, max_grad_norm=0.5, torch_threads=1,
)  # fmt: skip
LUNARLANDER = CARTPOLE | dict(
    env_id="LunarLander-v3", total_timesteps=1_000_000, learning_rate=3e-4, num_envs=16, num_steps=1024,
    num_minibatches=256, gamma=0.999, gae_lambda=0.98, anneal_lr=False, clip_vloss=False,
)  # fmt: skip


def ppo_flags(config: dict) -> list[str]:
    flags = []
    for key, value in config.items():
        name = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(name if value else "--no-" + key.replace("_", "-"))
        else:
            flags += [name, str(value)]
    return flags


def first_reaching(episodes, threshold: float, window: int = 20):
    """episodes: (time, step, return) in the order they ended -> (time, step) when the window mean first reaches it."""
    recent = deque(maxlen=window)
    for t, step, episodic_return in episodes:
        recent.append(episodic_return)
        if len(recent) == window and statistics.fmean(recent) >= threshold:
            return t, step
    return None, None


def run_ppo(config: dict, seed: int, workdir: Path, root: Path = ROOT) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    start = time.time()
    subprocess.run(
        [sys.executable, str(root / "ppo.py"), *ppo_flags(config), "--seed", str(seed)],
        cwd=workdir, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wall = time.time() - start
    run_dir = next((workdir / "runs").iterdir())
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    episodes = [(e.wall_time - start, e.step, e.value) for e in events.Scalars("charts/episodic_return")]
    return dict(wall=wall, episodes=episodes, **json.loads((run_dir / "results.json").read_text()))


def sb3_python() -> str:
    python = SB3_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SB3_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *SB3_PACKAGES], check=True)
    return str(python)


def run_sb3(python: str, config: dict, seed: int, workdir: Path) -> dict:
    start = time.time()
    subprocess.run(
        [python, str(ROOT / "benchmarks" / "sb3_ppo.py"), str(workdir), json.dumps(config | dict(seed=seed))],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wall = time.time() - start
    episodes = []
    for monitor in workdir.glob("*.monitor.csv"):
        with open(monitor) as f:
            t_start = json.loads(f.readline()[1:])["t_start"]
            env_steps = 0
            for row in csv.DictReader(f):
                env_steps += int(row["l"])  # synchronous vector env: every env has taken as many steps
                episodes.append((t_start + float(row["t"]) - start, env_steps * config["num_envs"], float(row["r"])))
    episodes.sort()
    return dict(wall=wall, episodes=episodes, **json.loads((workdir / "results.json").read_text()))


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec=".1f"):
    return "not reached" if value is None else format(value, spec)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="CartPole runs per side (seeds 1..runs)")
    parser.add_argument("--skip-lunarlander", action="store_true", help="leave out the 1M-step LunarLander runs")
    parser.add_argument("--baseline", type=Path, help="also time the ppo.py of this checkout (e.g. a git worktree)")
    options = parser.parse_args()
    python = sb3_python()

    runners = {"ppo.py": run_ppo, "SB3 PPO": lambda c, s, w: run_sb3(python, c, s, w)}
    if options.baseline is not None:
        runners[f"ppo.py of {options.baseline}"] = lambda c, s, w: run_ppo(c, s, w, root=options.baseline)
    rows = {name: [] for name in runners}
    for seed in range(1, options.runs + 1):
        for name, runner in runners.items():
            with tempfile.TemporaryDirectory() as workdir:
                result = runner(CARTPOLE, seed, Path(workdir))
            t, step = first_reaching(result["episodes"], 475)
            rows[name].append(
                dict(time=t, step=step, sps=CARTPOLE["total_timesteps"] / result["wall"], wall=result["wall"])
            )
            print(
                f"CartPole seed {seed} {name}: 475 at {fmt(t)} s, step {step}, whole run {result['wall']:.1f} s",
                flush=True,
            )

    machine = platform.processor() or platform.machine()
    print(f"\nMachine: {machine}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"\n### CartPole-v1, CleanRL's hyperparameters, 500k steps (medians of {options.runs} seeds)\n")
    print("| | wall time to 20-episode mean >= 475 | steps then | SPS (whole process) | whole run |")
    print("|---|---|---|---|---|")
    ours = median(r["time"] for r in rows["ppo.py"])
    for name, runs in rows.items():
        t = median(r["time"] for r in runs)
        ratio = f" ({t / ours:.2f}x)" if t and ours else ""
        print(f"| {name} | {fmt(t)} s{ratio} | {fmt(median(r['step'] for r in runs), ',.0f')} | "
              f"{median(r['sps'] for r in runs):,.0f} | {median(r['wall'] for r in runs):.1f} s |")  # fmt: skip

    if options.skip_lunarlander:
        return
    print("\n### LunarLander-v3, RL Zoo's hyperparameters, 1M steps, seed 1 (10 episodes, deterministic actions)\n")
    print("| | mean +/- std | mean - std | wall time |")
    print("|---|---|---|---|")
    for name, runner in (("ppo.py", run_ppo), ("SB3 PPO", lambda c, s, w: run_sb3(python, c, s, w))):
        with tempfile.TemporaryDirectory() as workdir:
            result = runner(LUNARLANDER, 1, Path(workdir))
        mean, std = result["mean_reward"], result["std_reward"]
        print(f"| {name} | {mean:.1f} +/- {std:.1f} | {mean - std:.1f} | {result['wall']:.0f} s |", flush=True)


if __name__ == "__main__":
    main()
