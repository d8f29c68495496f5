"""The speed tricks of a2c.py and reinforce.py, each timed on and off in whole processes, side by side on this machine.

    python benchmarks/ablation_a2c_reinforce.py                     # both scripts, 3 runs of each variant
    python benchmarks/ablation_a2c_reinforce.py --script a2c --repeats 6 --a2c-steps 10000

A script departs from the textbook form (nn.Sequential, torch.distributions, torch.no_grad) only where this table
shows the departure saves at least 5% of its whole default run. A trick is a text replacement, applied to a copy of
the script in a temporary folder: switched off where the script has it, on where it does not, so that each variant
differs from the script in that alone. Every variant runs as its own process; the variants take turns in every
repeat, each repeat starting with the next one, so that a busy spell of the machine hits them alike; medians.

- reinforce.py: the default run itself (CartPole-v1 until solved, then 10 evaluation episodes), the whole process. A
  trick that changes the numbers changes the trajectory, and with it the steps to the solved task, so each run's
  training time is scaled to the steps of the script as it is.
- a2c.py: the default run is 1M steps of PandaReachDense-v3, about half an hour, so each variant trains --a2c-steps
  steps with the default settings otherwise; its training time per step, from the script's own SPS, gives the 1M-step
  run (its start-up and final evaluation are a fraction of a percent of it). The tricks for categorical policies do
  not run on Panda's Box actions.
"""

import argparse
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

UNROLLED_MLP = '''

class MLP(nn.Module):
    """Linear layers with an activation between them, written out in one module call."""

    def __init__(self, *layers: nn.Module):
        super().__init__()
        self.layers = nn.ModuleList(layer for layer in layers if isinstance(layer, nn.Linear))
        self.activation = torch.tanh if any(isinstance(layer, nn.Tanh) for layer in layers) else torch.relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        *hidden, out = self.layers
        for layer in hidden:
            x = self.activation(nn.functional.linear(x, layer.weight, layer.bias))
        return nn.functional.linear(x, out.weight, out.bias)
'''
NO_VALIDATION = [("SCRIPT = Path(__file__).resolve()\n", "SCRIPT = Path(__file__).resolve()\n"
                  "torch.distributions.Distribution.set_default_validate_args(False)\n")]  # fmt: skip

REINFORCE_TRICKS = {
    "Gumbel-max sampling (the draws of Categorical.sample)": [(
        '        """a ~ pi(.|s)."""\n        return self.distribution(x).sample()\n',
        '        """a ~ pi(.|s)."""\n        if self.continuous:\n            return self.distribution(x).sample()\n'
        "        logits = self.actor(x)\n"
        "        # Gumbel-max, argmax(logits - log E) with E ~ Exp(1): the very draws of Categorical(logits).sample(), "
        "in about\n"
        "        # half the time of the default run (benchmarks/ablation_a2c_reinforce.py)\n"
        "        return (logits - torch.empty_like(logits).exponential_().log()).argmax(dim=-1)\n",
    )],
    "F.linear MLP": [
        ("\n\n# NETWORK: the policy\n", UNROLLED_MLP + "\n\n# NETWORK: the policy\n"),
        ("        self.actor = nn.Sequential(", "        self.actor = MLP("),
    ],
    "log_softmax + gather log-probabilities": [(
        "        logprob = self.distribution(x).log_prob(action)\n",
        "        if not self.continuous:\n"
        "            return torch.log_softmax(self.actor(x), -1).gather(-1, action.unsqueeze(-1)).squeeze(-1)\n"
        "        logprob = self.distribution(x).log_prob(action)\n",
    )],
    "inference_mode in the rollout": [(
        "        with torch.no_grad():\n            actions[step]",
        "        with torch.inference_mode():\n            actions[step]",
    )],
    "no argument validation": NO_VALIDATION,
    "fused Adam": [("lr=args.learning_rate)\n", "lr=args.learning_rate, fused=True)\n")],
}  # fmt: skip

A2C_TRICKS = {
    "randn sampling (Box actions)": [(
        "        probs = self.distribution(x)\n        return probs.mode if deterministic else probs.sample()\n",
        "        if deterministic or not self.continuous:\n"
        "            probs = self.distribution(x)\n"
        "            return probs.mode if deterministic else probs.sample()\n"
        "        mean = self.actor(x)\n"
        "        return mean + self.actor_logstd.exp() * torch.randn_like(mean)\n",
    )],
    "F.linear MLP": [
        ("\n\nclass Agent(nn.Module):\n", UNROLLED_MLP + "\n\nclass Agent(nn.Module):\n"),
        ("        self.critic = nn.Sequential(\n", "        self.critic = MLP(\n"),
        ("        self.actor = nn.Sequential(\n", "        self.actor = MLP(\n"),
    ],
    "inference_mode in the rollout": [(
        "            with torch.no_grad():\n                actions[step]",
        "            with torch.inference_mode():\n                actions[step]",
    )],
    "no argument validation": NO_VALIDATION,
    "foreach RMSprop and gradient clipping": [
        ("eps=args.rms_prop_eps\n        )\n", "eps=args.rms_prop_eps, foreach=True\n        )\n"),
        ("args.max_grad_norm)\n", "args.max_grad_norm, foreach=True)\n"),
    ],
}  # fmt: skip

BASE = "the script as it is"
TRAINED_LINE = re.compile(r"^trained ([\d,]+) episodes \(([\d,]+) steps\) in ([\d.]+) s$", re.M)
PROGRESS_LINE = re.compile(r"^step +([\d,]+)/[\d,]+ \| ([\d,]+) SPS", re.M)


def in_script(source: str, pairs: list[tuple[str, str]]) -> bool:
    """Whether the script has the trick (its replacements' new text) or the textbook form (their old text)."""
    if all(source.count(new) == 1 for _, new in pairs):
        return True
    if all(source.count(old) == 1 for old, _ in pairs):
        return False
    sys.exit(f"ablation: the script has neither form of a trick; its text changed:\n{pairs}")


def toggled(source: str, pairs: list[tuple[str, str]]) -> str:
    """The script with the trick switched: on where it is off, off where it is on."""
    on = in_script(source, pairs)
    for old, new in pairs:
        source = source.replace(new, old) if on else source.replace(old, new)
    return source


def run(source: str, script: str, args: list[str], workdir: Path) -> dict:
    """One whole process: its wall time, its CPU time (children included) and its output."""
    (workdir / script).write_text(source)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, script, *args], cwd=workdir, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"ablation: {script} {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return dict(wall=wall, cpu=cpu, stdout=proc.stdout)


def reinforce_figures(r: dict) -> dict:
    episodes, steps, train_s = TRAINED_LINE.search(r["stdout"]).groups()
    return dict(r, steps=int(steps.replace(",", "")), train_s=float(train_s), episodes=int(episodes.replace(",", "")))


def a2c_figures(r: dict) -> dict:
    steps, sps = PROGRESS_LINE.findall(r["stdout"])[-1]
    steps, sps = int(steps.replace(",", "")), int(sps.replace(",", ""))
    return dict(r, steps=steps, train_s=steps / sps)


def measure(script: str, tricks: dict, args: list[str], repeats: int, figures) -> dict:
    """Runs of the script as it is and with each trick switched, interleaved: {variant: [figures of each run]}."""
    source = (ROOT / script).read_text()
    sources = {BASE: source} | {name: toggled(source, pairs) for name, pairs in tricks.items()}
    runs = {name: [] for name in sources}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(repeats):
            order = list(sources.items())
            order = order[repeat % len(order) :] + order[: repeat % len(order)]  # each variant first in its turn
            for k, (name, variant) in enumerate(order):
                workdir = Path(tmp) / f"{repeat}-{k}"
                workdir.mkdir()
                r = figures(run(variant, script, args, workdir))
                runs[name].append(r)
                label = name if name == BASE else f"{name} switched"
                print(f"  {script}, {label}, repeat {repeat + 1}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, "
                      f"{r['steps']:,} steps trained in {r['train_s']:.1f} s", flush=True)  # fmt: skip
    return runs


def table(script: str, tricks: dict, runs: dict, metric, unit: str):
    """One row a trick: the metric's median with the trick and without it, what it saves, and the verdict."""
    source = (ROOT / script).read_text()
    base = statistics.median(map(metric, runs[BASE]))
    print(f"| trick | with it ({unit}) | without it ({unit}) | saves | in {script} | at least 5% |")
    print("|-|-|-|-|-|-|")
    for name, pairs in tricks.items():
        other = statistics.median(map(metric, runs[name]))
        on, off = (base, other) if in_script(source, pairs) else (other, base)
        verdict = "yes: kept" if 1 - on / off >= 0.05 else "no: reverted"
        print(f"| {name} | {on:.1f} | {off:.1f} | {1 - on / off:.1%} | {'yes' if in_script(source, pairs) else 'no'} | "
              f"{verdict} |")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--script", choices=["a2c", "reinforce", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--a2c-steps", type=int, default=20_000, help="steps of each shortened a2c.py run")
    options = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; "
          f"Python {platform.python_version()}", flush=True)  # fmt: skip
    results = {}
    if options.script in ("reinforce", "both"):
        results["reinforce"] = measure("reinforce.py", REINFORCE_TRICKS, [], options.repeats, reinforce_figures)
    if options.script in ("a2c", "both"):
        args = ["--total-timesteps", str(options.a2c_steps), "--eval-episodes", "0"]
        results["a2c"] = measure("a2c.py", A2C_TRICKS, args, options.repeats, a2c_figures)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end; medians of {options.repeats} runs")
    if "reinforce" in results:
        runs = results["reinforce"]
        ref_steps = statistics.median(r["steps"] for r in runs[BASE])
        print("\nreinforce.py, default run (CartPole-v1 until solved, 10 evaluation episodes): the whole process, its "
              "training scaled to the steps of the script as it is")  # fmt: skip
        table(
            "reinforce.py",
            REINFORCE_TRICKS,
            runs,
            lambda r: r["wall"] + r["train_s"] * (ref_steps / r["steps"] - 1),
            "s",
        )
    if "a2c" in results:
        print(f"\na2c.py, PandaReachDense-v3, default settings: the 1M-step default run at the training speed of "
              f"{options.a2c_steps:,}-step runs")  # fmt: skip
        table("a2c.py", A2C_TRICKS, results["a2c"], lambda r: 1e6 * r["train_s"] / r["steps"] / 60, "min")


if __name__ == "__main__":
    main()
