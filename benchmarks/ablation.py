"""The speed tricks of the scripts, each timed on and off in whole processes, one after the other on this machine.

    python benchmarks/ablation.py                     # every script below, 2 runs of each variant (~25 min)
    python benchmarks/ablation.py --scripts ppo --runs 3
    python benchmarks/ablation.py --scripts ppo_atari dqn_atari --variants bf16   # does --bf16 pay on this CPU?
    python benchmarks/ablation.py --scripts ppo_atari dqn_atari --compute   # layout x precision, the network alone

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

`--compute` times the layout x precision variants of the Atari scripts without the games: the network's work of one
ppo_atari.py iteration (num_steps rollout forwards of num_envs frame stacks, the batched scoring pass, update_epochs x
num_minibatches updates with Adam) or of 1,024 dqn_atari.py steps (an action per step, an update every
train_frequency steps, on random frames), in the scripts' thread setting: the ceiling that the whole process
approaches as the games get faster.
"""

import argparse
import importlib.util
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
            ("bf16, NCHW layout", [BF16, *CHANNELS_LAST]),
        ],
    ),
    "dqn_atari": (
        "dqn_atari.py",
        [
            ("as committed", []),
            ("NCHW layout", CHANNELS_LAST),
            ("unfused Adam", [DQN_FUSED_ADAM]),
            ("bf16", [BF16]),
            ("bf16, NCHW layout", [BF16, *CHANNELS_LAST]),
        ],
    ),
}
COMPUTE_VARIANTS = ("as committed", "NCHW layout", "bf16", "bf16, NCHW layout")  # what --compute times


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


def load_module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ppo_atari_compute(module, repeats: int) -> float:
    """Seconds of the network's work in one ppo_atari.py iteration at the defaults (median of repeats, after one
    warm-up), per 1,024 steps."""
    import gymnasium as gym
    import torch

    args = module.Args()
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    agent = module.Agent(gym.spaces.Box(0, 255, (4, 84, 84), "uint8"), gym.spaces.Discrete(4), args.bf16)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    batch_size = args.num_envs * args.num_steps
    minibatch_size = batch_size // args.num_minibatches
    frames = torch.randint(0, 256, (args.num_steps, args.num_envs, 4, 84, 84), dtype=torch.uint8)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with torch.no_grad():
            actions = torch.stack([agent.get_action(frames[step]) for step in range(args.num_steps)])
            b_obs, b_actions = frames.reshape(batch_size, 4, 84, 84), actions.reshape(-1)
            _, b_logprobs, _, b_values = agent.get_action_and_value(b_obs, b_actions)
        b_advantages, b_returns = torch.randn(batch_size), torch.randn(batch_size)
        for _ in range(args.update_epochs):
            b_inds = torch.randperm(batch_size)
            for begin in range(0, batch_size, minibatch_size):
                mb_inds = b_inds[begin : begin + minibatch_size]
                minibatch = [b[mb_inds] for b in (b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values)]
                loss, _ = module.ppo_loss(agent, args, *minibatch)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
        times.append((time.perf_counter() - start) * 1024 / batch_size)
    return statistics.median(times[1:])


def dqn_atari_compute(module, repeats: int) -> float:
    """Seconds of the network's work in 1,024 dqn_atari.py steps at the defaults once learning runs (median of
    repeats, after one warm-up): a greedy action at every step, an update of batch_size every train_frequency steps."""
    import gymnasium as gym
    import torch

    args = module.Args()
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(0)
    space, action_space = gym.spaces.Box(0, 255, (4, 84, 84), "uint8"), gym.spaces.Discrete(6)
    q_network = module.QNetwork(space, action_space, args.bf16)
    target_network = module.QNetwork(space, action_space, args.bf16)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, fused=True)
    frames = torch.randint(0, 256, (args.batch_size + 1, 4, 84, 84), dtype=torch.uint8)
    actions, rewards, terminated = (
        torch.randint(6, (args.batch_size,)),
        torch.randn(args.batch_size),
        torch.zeros(args.batch_size),
    )
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        for step in range(1024):
            with torch.inference_mode():
                q_network(frames[step % args.batch_size : step % args.batch_size + 1]).argmax(dim=1)
            if step % args.train_frequency == 0:
                loss, _ = module.dqn_loss(
                    q_network, target_network, args, frames[:-1], actions, rewards, terminated, frames[1:]
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def compute_tables(scripts: list[str], repeats: int) -> list[str]:
    """--compute: the layout x precision variants of the Atari scripts, the network's work alone."""
    tables = []
    for name in scripts:
        if name not in ("ppo_atari", "dqn_atari"):
            continue
        script, variants = VARIANTS[name]
        measure = ppo_atari_compute if name == "ppo_atari" else dqn_atari_compute
        seconds = {}
        with tempfile.TemporaryDirectory() as folder:
            for label, replacements in variants:
                if label in COMPUTE_VARIANTS:
                    (Path(folder) / label).mkdir()
                    seconds[label] = measure(load_module(variant(script, replacements, Path(folder) / label)), repeats)
                    print(f"{script} {label}: {seconds[label]:.2f} s per 1,024 steps", flush=True)
        rows = [f"\n### {script}, the network's work alone, medians of {repeats}\n"]
        rows += ["| variant | seconds per 1,024 steps | compute-only steps/s | vs as committed |", "|---|---|---|---|"]
        for label, value in seconds.items():
            rows.append(
                f"| {label} | {value:.2f} | {1024 / value:.0f} | {100 * (value / seconds['as committed'] - 1):+.1f}% |"
            )
        tables.append("\n".join(rows))
    return tables


def machine_line() -> str:
    """The CPU, with the flags that tell whether bf16 can pay (amx_bf16, avx512_bf16: Linux's /proc/cpuinfo)."""
    machine, flags = platform.processor() or platform.machine(), set()
    if Path("/proc/cpuinfo").exists():
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        machine = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), machine)
        flags = set(next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), []))
    bf16 = ", ".join(sorted(flags & {"amx_bf16", "avx512_bf16"})) or "neither amx_bf16 nor avx512_bf16"
    return f"\nMachine: {machine} ({bf16}), {os.cpu_count()} cores, Python {platform.python_version()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--variants", nargs="+", help="only these variants (by label) beside the script as committed")
    parser.add_argument("--runs", type=int, default=2, help="runs of each variant, interleaved (median reported)")
    parser.add_argument("--atari-steps", type=int, default=20_480, help="steps of each ppo_atari.py run")
    parser.add_argument("--dqn-steps", type=int, default=20_000, help="steps of each dqn_atari.py run")
    parser.add_argument("--compute", action="store_true", help="the Atari layout x precision variants, network alone")
    options = parser.parse_args()
    if options.compute:
        tables = compute_tables(options.scripts, max(options.runs, 3))
        print(machine_line(), "\n".join(tables), sep="\n")
        return
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
    print(machine_line(), "\n".join(tables), sep="\n")


if __name__ == "__main__":
    main()
