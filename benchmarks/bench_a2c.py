"""PandaReachDense-v3, course unit 6: a2c.py against Stable-Baselines3's A2C, side by side on this machine.

    python benchmarks/bench_a2c.py                  # seeds 1, 2, 3, interleaved; ~10 minutes on 2 cores
    python benchmarks/bench_a2c.py --seeds 1 --eval-every 5000

Both sides train with the course's settings (4 envs x 5 steps, RMSprop lr 7e-4, gamma 0.99, GAE lambda 1.0, entropy 0,
value 0.5, grad norm 0.5, 64-64 tanh actor and critic, observation and reward normalisation clipped at 10) and both
evaluate every `--eval-every` steps with the course's protocol: 10 episodes, deterministic actions, observations
normalised with the training statistics frozen, raw rewards. a2c.py does it with `--eval-every`; SB3 with a callback
(sb3_a2c.py) in its own venv, benchmarks/.venv-sb3 (shared with bench_ppo.py), made on first use with
`pip install torch==2.13.0 stable-baselines3==2.9.2 gymnasium==1.4.0 panda-gym==3.0.7`.

Each run is one process, timed from its start (imports included) until it prints the first evaluation whose
mean_reward - std_reward reaches the course's pass mark, -3.5; it is stopped there. The table gives, per side, the
medians over seeds of: the training SPS at that point (each process counts it with its evaluations left out), the
steps and the wall time to the pass mark, and the ratio of wall times. Both sides use one torch thread.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SB3_VENV = ROOT / "benchmarks" / ".venv-sb3"
SB3_PACKAGES = ["torch==2.13.0", "stable-baselines3==2.9.2", "gymnasium==1.4.0", "panda-gym==3.0.7"]
ENV_ID = "PandaReachDense-v3"
PASS_MARK = -3.5
EVAL_LINE = re.compile(  # both sides' periodic evaluation line (sb3_a2c.py's also gives the seconds so far)
    r"^evaluation at step ([\d,]+) \((?:[\d.]+ s, )?([\d,]+) SPS\) over \d+ episodes: "
    r"mean_reward=(-?[\d.]+) std_reward=([\d.]+) result=(-?[\d.]+)$"
)


def sb3_python() -> Path:
    """The SB3 venv's interpreter, apart from the project's pins; made on first use, its packages checked each time."""
    python = SB3_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", SB3_VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *SB3_PACKAGES], check=True)
    return python


def run_until_pass(command: list, cwd: str, max_wall_s: float) -> dict:
    """Start a training process, read its evaluation lines as they come, stop it at the first one that passes."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    result = dict(wall_s=None, steps=None, sps=None, evaluations=[])
    tail = []
    try:
        for line in proc.stdout:
            tail = (tail + [line])[-20:]
            match = EVAL_LINE.match(line.strip())
            if match:
                steps, sps, score = int(match[1].replace(",", "")), int(match[2].replace(",", "")), float(match[5])
                result["evaluations"].append((steps, round(time.perf_counter() - start, 1), score))
                if score >= PASS_MARK:
                    result.update(wall_s=time.perf_counter() - start, steps=steps, sps=sps)
                    break
            if time.perf_counter() - start > max_wall_s:
                break
    finally:
        proc.kill()
        proc.wait()
    if result["wall_s"] is None and not result["evaluations"]:
        sys.exit(f"bench_a2c.py: error: {' '.join(map(str, command))} printed no evaluation:\n{''.join(tail)}")
    return result


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return (f"{cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; "
            f"Python {platform.python_version()}")  # fmt: skip


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--eval-every", type=int, default=10_000, help="steps between evaluations (both sides)")
    parser.add_argument("--max-steps", type=int, default=300_000, help="give up on a run after this many steps")
    parser.add_argument("--max-wall-s", type=float, default=900, help="give up on a run after this many seconds")
    options = parser.parse_args()

    python = sb3_python()
    config = dict(env_id=ENV_ID, eval_every=options.eval_every, eval_episodes=10, total_timesteps=options.max_steps,
                  torch_threads=1)  # fmt: skip
    commands = {
        "a2c.py": lambda seed: [
            sys.executable, ROOT / "a2c.py", "--env-id", ENV_ID, "--seed", seed, "--eval-every", options.eval_every,
            "--eval-episodes", 10, "--total-timesteps", options.max_steps, "--torch-threads", 1,
        ],
        "SB3 A2C": lambda seed: [python, ROOT / "benchmarks" / "sb3_a2c.py", json.dumps(config | dict(seed=seed))],
    }  # fmt: skip
    print(f"machine: {machine()}", flush=True)
    runs = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as workdir:
        for seed in options.seeds:  # interleaved, so that a busy spell of the machine hits both sides alike
            for name, command in commands.items():
                r = run_until_pass([str(c) for c in command(seed)], workdir, options.max_wall_s)
                runs[name].append(r)
                reached = f"{r['wall_s']:.1f} s, {r['steps']:,} steps, {r['sps']} SPS" if r["wall_s"] else "not reached"
                print(
                    f"  {name}, seed {seed}: {reached}; evaluations (step, s, result): {r['evaluations']}", flush=True
                )

    ours = median(r["wall_s"] for r in runs["a2c.py"])
    peer = median(r["wall_s"] for r in runs["SB3 A2C"])
    seeds = ", ".join(map(str, options.seeds))
    print(f"\n{ENV_ID}, course settings, evaluation every {options.eval_every:,} steps; medians over seeds {seeds}; "
          f"load average {os.getloadavg()[0]:.2f} at the end\n")  # fmt: skip
    print(f"| | SPS (training) | steps to {PASS_MARK} | wall time to {PASS_MARK} (s, whole process) | ratio |")
    print("|-|-|-|-|-|")
    for name, results in runs.items():
        wall = median(r["wall_s"] for r in results)
        sps, steps = median(r["sps"] for r in results), median(r["steps"] for r in results)
        ratio = f"{wall / peer:.2f}x" if wall and peer else "n/a"
        reached = sum(r["wall_s"] is not None for r in results)
        note = "" if reached == len(results) else f" ({reached} of {len(results)} runs reached it)"
        print(
            f"| {name} | {sps:,.0f} | {steps:,.0f} | {wall:.1f}{note} | {ratio} |"
            if wall
            else f"| {name} | n/a | n/a | n/a | n/a |"
        )
    if ours and peer:
        print(f"\na2c.py takes {ours / peer:.2f}x SB3's wall time to the pass mark")


if __name__ == "__main__":
    main()
