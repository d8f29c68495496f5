"""The speed tricks of the scripts, each timed on and off in whole processes, one after the other on this machine.

    python benchmarks/ablation.py                     # every script below, 2 runs of each variant (~25 min)
    python benchmarks/ablation.py --scripts ppo --runs 3
    python benchmarks/ablation.py --scripts ppo_atari dqn_atari --variants bf16   # does --bf16 pay on this CPU?

A script departs from the textbook form only where this table shows the departure saves at least 5% of its whole
default run. Each "off" variant is the committed script with that one trick replaced by the textbook form (the
replacement text is below, applied to a copy in a temporary folder), so the rows differ in that alone.

- ppo.py, the default run (CartPole-v1, 500k steps, evaluation included): wall time of the whole process.
  Tricks: Gumbel-max sampling in the rollout (off: `Categorical(logits=...).sample()`), and scoring the rollout in one
  batched pass after it (off: CleanRL's design, log pi(a|s) and V(s) kept from each rollout step's forward pass).
- ppo_atari.py (Breakout, the default hyperparameters): whole-process steps/s over `--atari-steps` steps, which is
  what the default 10M-step run's hours follow. Tricks: channels-last weights and inputs (off: the default NCHW
  layout), and scoring the rollout in one batched pass after it, as ppo.py does (off: CleanRL's design); and the
  `--bf16` option on (whether bfloat16 autocast pays depends on the CPU).
- dqn_atari.py (SpaceInvaders, the default hyperparameters with learning from step 5,000): whole-process steps/s over
  `--dqn-steps` steps. Tricks: channels-last (off: NCHW), and Adam's fused update (off: torch's default Adam); and
  the `--bf16` option on.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PPO_GUMBEL = (
    """        logits = self.actor(x)
        # Gumbel-max: argmax(logits + G), G = -log(E), E ~ Exp(1), is a sample of softmax(logits), in a fraction of
        # the operations of Categorical(logits).sample() (benchmarks/ablation.py)
        return (logits - torch.empty_like(logits).exponential_().log()).argmax(dim=-1)""",
    """        return Categorical(logits=self.actor(x)).sample()""",
)
SCORES_IN_ROLLOUT = [
    (
        """            with torch.no_grad():
                actions[step] = action = agent.get_action(next_obs)""",
        """            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
            actions[step], logprobs[step], values[step] = action, logprob, value""",
    ),
    (
        """    rewards = np.zeros(storage_shape, dtype=np.float32)""",
        """    logprobs = torch.zeros(storage_shape, device=device)
    values = torch.zeros(storage_shape, device=device)
    rewards = np.zeros(storage_shape, dtype=np.float32)""",
    ),
    (
        """            _, b_logprobs, _, b_values = agent.get_action_and_value(b_obs, b_actions)""",
        """            b_logprobs, b_values = logprobs.reshape(-1), values.reshape(-1)""",
    ),
]
CHANNELS_LAST = [
    ("        self.to(memory_format=torch.channels_last)\n", ""),
    ("x.contiguous(memory_format=torch.channels_last).float()", "x.float()"),
]
DQN_FUSED_ADAM = (
    """    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)""",
    """    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate)""",
)
BF16 = ("    bf16: bool = False\n", "    bf16: bool = True\n")  # the --bf16 option, on
VARIANTS = {
    "ppo": (
        "ppo.py",
        [
            ("as committed", []),
            ("Categorical sampling", [PPO_GUMBEL]),
            ("scores kept in the rollout", SCORES_IN_ROLLOUT),
        ],
    ),
    "ppo_atari": (
        "ppo_atari.py",
        [
            ("as committed", []),
            ("NCHW layout", CHANNELS_LAST),
            ("scores kept in the rollout", SCORES_IN_ROLLOUT),
            ("bf16", [BF16]),
        ],
    ),
    "dqn_atari": (
        "dqn_atari.py",
        [("as committed", []), ("NCHW layout", CHANNELS_LAST), ("unfused Adam", [DQN_FUSED_ADAM]), ("bf16", [BF16])],
    ),
}


def variant(script: str, replacements: list[tuple[str, str]], folder: Path) -> Path:
    """A copy of the script with the replacements made; each must match exactly once."""
    source = (ROOT / script).read_text()
    for old, new in replacements:
        if source.count(old) != 1:
            sys.exit(f"ablation.py: {script} no longer holds the text this variant replaces:\n{old}")
        source = source.replace(old, new)
    path = folder / script
    path.write_text(source)
    return path


def whole_process(path: Path, flags: list[str], workdir: Path) -> float:
    start = time.time()
    subprocess.run([sys.executable, str(path), *flags], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    return time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--variants", nargs="+", help="only these variants (by label) beside the script as committed")
    parser.add_argument("--runs", type=int, default=2, help="runs of each variant, interleaved (median reported)")
    parser.add_argument("--atari-steps", type=int, default=20_480, help="steps of each ppo_atari.py run")
    parser.add_argument("--dqn-steps", type=int, default=20_000, help="steps of each dqn_atari.py run")
    options = parser.parse_args()
    flags = {
        "ppo": [],
        "ppo_atari": ["--total-timesteps", str(options.atari_steps), "--eval-episodes", "0"],
        "dqn_atari": ["--total-timesteps", str(options.dqn_steps), "--learning-starts", "5000", "--eval-episodes", "0"],
    }
    tables = []
    for name in options.scripts:
        script, variants = VARIANTS[name]
        if options.variants:
            variants = [(label, r) for label, r in variants if label == "as committed" or label in options.variants]
        times = {label: [] for label, _ in variants}
        with tempfile.TemporaryDirectory() as folder:
            paths = {}
            for label, replacements in variants:
                (Path(folder) / label).mkdir()
                paths[label] = variant(script, replacements, Path(folder) / label)
            for run in range(options.runs):
                for label, _ in variants:
                    with tempfile.TemporaryDirectory() as workdir:
                        seconds = whole_process(paths[label], flags[name], Path(workdir))
                    times[label].append(seconds)
                    print(f"{script} {label}, run {run + 1}: {seconds:.1f} s", flush=True)
        base = statistics.median(times["as committed"])
        rows = [f"\n### {script} {' '.join(flags[name]) or '(default run)'}, medians of {options.runs}\n"]
        rows += ["| variant | whole process | vs as committed |", "|---|---|---|"]
        for label, _ in variants:
            seconds = statistics.median(times[label])
            rows.append(f"| {label} | {seconds:.1f} s | {100 * (seconds / base - 1):+.1f}% |")
        tables.append("\n".join(rows))
    machine = platform.processor() or platform.machine()
    print(f"\nMachine: {machine}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("\n".join(tables))


if __name__ == "__main__":
    main()
