"""ppo_atari.py and dqn_atari.py against Stable-Baselines3, same hyperparameters, one after the other on this machine.

    python benchmarks/bench_atari.py                      # speed (medians of 3) and replay memory (~35 min)
    python benchmarks/bench_atari.py --threads            # also: ppo_atari.py's torch threads
    python benchmarks/bench_atari.py --torchrun           # also: ppo_atari_multigpu.py on 2 processes, all-reduce cost
    python benchmarks/bench_atari.py --breakdown          # also: where a ppo_atari.py process spends its time
    python benchmarks/bench_atari.py --algos ppo --ppo-steps 102400 --repeat 1 --skip-memory   # a longer PPO row
    python benchmarks/bench_atari.py --bf16 --skip-memory --ppo-steps 51200   # also the scripts with --bf16

- PPO, BreakoutNoFrameskip-v4, CleanRL's ppo_atari.py hyperparameters (8 envs x 128 steps, 4 x 4 minibatch epochs),
  10,240 steps: whole-process SPS (start-up included, no evaluation).
- DQN, SpaceInvadersNoFrameskip-v4, course unit 3's RL Zoo hyperparameters with learning starting after 5k steps,
  30k steps: whole-process SPS.
- Replay memory per transition: the slope of the peak RSS of a whole process between two buffer sizes, each filled
  (random play, no learning), so that everything but the buffer cancels.

CleanRL does not install from PyPI; its figures on this machine were measured beforehand, the same way (its published
scripts at CleanRL's pins). SB3 runs in its own venv (benchmarks/.venv-sb3, made on first use) so it never touches the
project's pins. The machine is shared and noisy (+/-15%): `--repeat N` runs each row N times and reports the median, and
the load average is printed with the results.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SB3_VENV = ROOT / "benchmarks" / ".venv-sb3"
SB3_PACKAGES = [
    "torch==2.13.0", "stable-baselines3==2.9.2", "gymnasium[box2d]==1.4.0", "panda-gym==3.0.7", "ale-py==0.12.1",
    "opencv-python-headless",
]  # fmt: skip
CLEANRL = {"ppo": 219, "dqn": 97}  # SPS of CleanRL's ppo_atari.py / dqn_atari.py on this machine, measured before

PPO = dict(
    env_id="BreakoutNoFrameskip-v4", total_timesteps=10_240, learning_rate=2.5e-4, num_envs=8, num_steps=128,
    gamma=0.99, gae_lambda=0.95, num_minibatches=4, update_epochs=4, clip_coef=0.1, ent_coef=0.01, vf_coef=0.5,
    max_grad_norm=0.5, seed=1,
)  # fmt: skip
DQN = dict(
    env_id="SpaceInvadersNoFrameskip-v4", total_timesteps=30_000, learning_rate=1e-4, num_envs=1, buffer_size=100_000,
    gamma=0.99, target_network_frequency=1000, batch_size=32, end_e=0.01, exploration_fraction=0.1,
    learning_starts=5_000, train_frequency=4, gradient_steps=1, seed=1,
)  # fmt: skip
SCRIPT_FLAGS = {
    "ppo": ["env_id", "total_timesteps", "learning_rate", "num_envs", "num_steps", "gamma", "gae_lambda",
            "num_minibatches", "update_epochs", "clip_coef", "ent_coef", "vf_coef", "max_grad_norm", "seed"],
    "dqn": ["env_id", "total_timesteps", "learning_rate", "num_envs", "buffer_size", "gamma",
            "target_network_frequency", "batch_size", "end_e", "exploration_fraction", "learning_starts",
            "train_frequency", "gradient_steps", "seed"],
}  # fmt: skip


def flags(algo: str, config: dict) -> list[str]:
    return [item for key in SCRIPT_FLAGS[algo] for item in ("--" + key.replace("_", "-"), str(config[key]))]


def timed(command: list[str], env: dict | None = None) -> tuple[float, int]:
    """Run a command in a temporary directory: (wall seconds, peak RSS in bytes) of that process alone."""
    with tempfile.TemporaryDirectory() as workdir:
        start = time.time()
        proc = subprocess.Popen(command, cwd=workdir, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - start
    if status != 0:
        sys.exit(f"{' '.join(command)} failed with status {status}")
    return wall, usage.ru_maxrss * 1024


def ours(algo: str, config: dict, *extra: str, env: dict | None = None, root: Path = ROOT) -> tuple[float, int]:
    script = root / f"{algo}_atari.py"
    return timed([sys.executable, str(script), *flags(algo, config), "--eval-episodes", "0", *extra], env)


def sb3(python: str, algo: str, config: dict) -> tuple[float, int]:
    return timed([python, str(ROOT / "benchmarks" / "sb3_atari.py"), algo, json.dumps(config)])


def sb3_python() -> str:
    python = SB3_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SB3_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *SB3_PACKAGES], check=True)
    return str(python)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    import torch

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def speed(python: str, repeat: int, algos: list[str], ppo_steps: int = PPO["total_timesteps"], baseline=None,
          bf16: bool = False):  # fmt: skip
    """Our scripts against SB3, with --bf16 too when `bf16`, and against the scripts of another checkout (`baseline`)
    when one is given."""
    print(f"\n### Speed: whole process, start-up included, median of {repeat} run(s) each, interleaved\n", flush=True)
    print("| | steps | wall | SPS | vs CleanRL (measured before) | vs SB3 (this run) |")
    print("|---|---|---|---|---|---|")
    configs = {
        "ppo": (PPO | dict(total_timesteps=ppo_steps), "PPO, Breakout"),
        "dqn": (DQN, "DQN, SpaceInvaders, 5k warm-up"),
    }
    for algo in algos:
        config, label = configs[algo]
        steps = config["total_timesteps"]
        walls_ours, walls_sb3, walls_baseline, walls_bf16 = [], [], [], []
        for _ in range(repeat):  # alternating, so that the machine's noise hits both alike
            walls_ours.append(ours(algo, config)[0])
            walls_sb3.append(sb3(python, algo, config)[0])
            if bf16:
                walls_bf16.append(ours(algo, config, "--bf16")[0])
            if baseline is not None:
                walls_baseline.append(ours(algo, config, root=baseline)[0])
        wall_ours, wall_sb3 = statistics.median(walls_ours), statistics.median(walls_sb3)
        sps_ours, sps_sb3 = steps / wall_ours, steps / wall_sb3
        cleanrl = CLEANRL[algo] if steps == (PPO if algo == "ppo" else DQN)["total_timesteps"] else None
        ratio_ours, ratio_sb3 = (f"{sps / cleanrl:.2f}x" if cleanrl else "" for sps in (sps_ours, sps_sb3))
        print(f"| {algo}_atari.py ({label}) | {steps:,} | {wall_ours:.1f} s | **{sps_ours:.0f}** | {ratio_ours} | "
              f"{sps_ours / sps_sb3:.2f}x |")  # fmt: skip
        if bf16:
            wall = statistics.median(walls_bf16)
            ratio = f"{steps / wall / cleanrl:.2f}x" if cleanrl else ""
            print(f"| {algo}_atari.py --bf16 | {steps:,} | {wall:.1f} s | **{steps / wall:.0f}** | {ratio} | "
                  f"{wall_sb3 / wall:.2f}x |")  # fmt: skip
        print(f"| SB3 {algo.upper()} | {steps:,} | {wall_sb3:.1f} s | {sps_sb3:.0f} | {ratio_sb3} | 1.00x |")
        if baseline is not None:
            wall = statistics.median(walls_baseline)
            print(f"| {algo}_atari.py of {baseline} | {steps:,} | {wall:.1f} s | {steps / wall:.0f} | | "
                  f"{wall_sb3 / wall:.2f}x |")  # fmt: skip
        if cleanrl:  # measured at this length only
            print(f"| CleanRL {algo}_atari.py (measured before) | {steps:,} | | {cleanrl} | 1.00x | |", flush=True)


def memory(python: str, sizes=(10_000, 30_000)):
    print("\n### Replay memory per transition: peak-RSS slope between two filled buffers\n", flush=True)
    print(f"| | peak RSS, {sizes[0]:,} | peak RSS, {sizes[1]:,} | per transition | 1M transitions |")
    print("|---|---|---|---|---|")
    for name in ("dqn_atari.py", "SB3 DQN (optimize_memory_usage=False)"):
        rss = []
        for size in sizes:
            config = DQN | dict(total_timesteps=size, buffer_size=size, learning_starts=size + 1)
            rss.append((ours("dqn", config) if name == "dqn_atari.py" else sb3(python, "dqn", config))[1])
        slope = (rss[1] - rss[0]) / (sizes[1] - sizes[0])
        print(f"| {name} | {rss[0] / 2**20:.0f} MiB | {rss[1] / 2**20:.0f} MiB | **{slope / 1000:.2f} KB** | "
              f"{slope * 1e6 / 2**30:.1f} GiB |", flush=True)  # fmt: skip


def thread_split():
    print("\n### ppo_atari.py: torch threads (10,240 steps, whole process; each game has a C++ thread)\n", flush=True)
    print("| torch threads | OMP_WAIT_POLICY | SPS |")
    print("|---|---|---|")
    for torch_threads, policy in ((2, ""), (1, ""), (2, "PASSIVE")):
        env = {"OMP_WAIT_POLICY": policy} if policy else None
        wall, _ = ours("ppo", PPO, "--torch-threads", str(torch_threads), env=env)
        print(f"| {torch_threads} | {policy or 'default'} | {PPO['total_timesteps'] / wall:.0f} |", flush=True)


def breakdown(repeat: int = 3):
    """Where a whole 10,240-step ppo_atari.py process spends its time: its start-up and exit, phase by phase, and one
    iteration (rollout forwards, game steps, updates), each measured in a fresh interpreter by breakdown_child();
    medians over `repeat` processes. The sum is what a serial process of 10 iterations costs at these figures."""
    runs = []
    for _ in range(repeat):
        launched = time.time()
        child = [sys.executable, str(Path(__file__).resolve()), "--breakdown-child", str(launched)]
        run = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout)
        run["exit"] = time.time() - run.pop("finished")  # from its last line to the end of the process
        runs.append(run)
    phases = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    startup = [
        ("start-up: interpreter start", "interpreter"),
        ("start-up: imports (torch, gymnasium, ale_py, tyro, tensorboard)", "imports"),
        ("start-up: 8 games built (ALE loads the ROM in each, one core, GIL held)", "env_construction"),
        ("start-up: network and first torch.optim optimizer (it imports torch._dynamo)", "optimizer"),
        ("start-up: TensorBoard writer", "writer"),
        ("start-up: reset: no-op starts of 8 games", "reset"),
        ("start-up: first iteration's extra time (oneDNN kernels built for each shape)", "first_iteration_extra"),
        ("exit: the interpreter's teardown after the last line", "exit"),
    ]
    loop = [
        ("policy forwards (128 x batch 8, inference mode)", "forwards"),
        ("game steps (128 x 8 games, a C++ thread each)", "game_steps"),
        ("advantages (GAE) and bootstrap values", "advantages"),
        ("updates (4 epochs x 4 minibatches of 256)", "updates"),
    ]
    steps = PPO["total_timesteps"]
    iterations = steps // 1024
    total_startup = sum(phases[key] for _, key in startup)
    per_iteration = sum(phases[key] for _, key in loop)
    print(f"\n### ppo_atari.py: where a {steps:,}-step process spends its time (medians of {repeat})\n")
    print("| phase | seconds |\n|---|---|")
    for label, key in startup:
        print(f"| {label} | {phases[key]:.2f} |")
    print(f"| **start-up and exit in all** | **{total_startup:.2f}** |")
    for label, key in loop:
        print(f"| per iteration of 1,024 steps: {label} | {phases[key]:.2f} |")
    print(f"| **one iteration in all** ({1024 / per_iteration:.0f} SPS) | **{per_iteration:.2f}** |")
    whole = total_startup + iterations * per_iteration
    print(
        f"\nA process of {iterations} iterations at these figures: {whole:.1f} s, {steps / whole:.0f} SPS; with no "
        f"start-up or exit at all: {1024 / per_iteration:.0f} SPS.",
        flush=True,
    )


def breakdown_child(launched: float):
    """The phases of breakdown(), in this fresh interpreter, as one JSON line on stdout."""
    times = {"interpreter": time.time() - launched}
    start = time.perf_counter()

    def lap(name: str):
        nonlocal start
        now = time.perf_counter()
        times[name] = times.get(name, 0.0) + now - start
        start = now

    sys.path.insert(0, str(ROOT))
    import numpy as np
    import torch
    from torch.utils.tensorboard import SummaryWriter

    import ppo_atari

    lap("imports")
    args = ppo_atari.check_args(ppo_atari.Args(**{k: v for k, v in PPO.items() if k != "total_timesteps"}))
    torch.set_num_threads(args.torch_threads)
    envs = ppo_atari.AtariGames(args, args.num_envs)
    lap("env_construction")
    agent = ppo_atari.Agent(envs.single_observation_space, envs.single_action_space)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    lap("optimizer")
    with tempfile.TemporaryDirectory() as folder:
        writer = SummaryWriter(folder)
        lap("writer")
        next_obs = torch.as_tensor(envs.reset(seed=1)[0])
        lap("reset")
        obs = torch.zeros((128, 8, 4, 84, 84), dtype=torch.uint8)
        actions = torch.zeros((128, 8), dtype=torch.long)
        rewards, terminations = np.zeros((128, 8), dtype=np.float32), np.zeros((128, 8), dtype=np.float32)
        iterations = []
        for _ in range(4):
            before = dict(times)
            for step in range(128):
                obs[step] = next_obs
                with torch.inference_mode():
                    actions[step] = action = agent.get_action(next_obs)
                lap("forwards")
                next_obs_np, rewards[step], terminations[step], _, _ = envs.step(action.numpy())
                next_obs = torch.as_tensor(next_obs_np)
                lap("game_steps")
            b_obs, b_actions = obs.reshape(1024, 4, 84, 84), actions.reshape(-1)
            with torch.no_grad():
                _, b_logprobs, _, b_values = agent.get_action_and_value(b_obs, b_actions)
                zeros = torch.zeros(128, 8)
                advantages, returns = ppo_atari.compute_gae(
                    torch.as_tensor(rewards), b_values.reshape(128, 8), agent.get_value(next_obs),
                    torch.as_tensor(terminations), zeros, zeros, args.gamma, args.gae_lambda,
                )  # fmt: skip
            lap("advantages")
            b_advantages, b_returns = advantages.reshape(-1), returns.reshape(-1)
            for _ in range(args.update_epochs):
                for mb in torch.randperm(1024).split(256):
                    loss, _ = ppo_atari.ppo_loss(
                        agent, args, b_obs[mb], b_actions[mb], b_logprobs[mb], b_advantages[mb], b_returns[mb],
                        b_values[mb],
                    )  # fmt: skip
                    optimizer.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                    optimizer.step()
            lap("updates")
            iterations.append({key: times[key] - before.get(key, 0.0) for key in times if key in LOOP_PHASES})
        writer.close()
    envs.close()
    later = {key: statistics.median(it[key] for it in iterations[1:]) for key in LOOP_PHASES}
    times.update(later)
    times["first_iteration_extra"] = max(0.0, sum(iterations[0].values()) - sum(later.values()))
    print(json.dumps(times | dict(finished=time.time())))


LOOP_PHASES = ("forwards", "game_steps", "advantages", "updates")


def torchrun_speed(steps: int = 20_480):
    """ppo_atari.py on 1 process and ppo_atari_multigpu.py on 2 (torchrun, gloo), the same 8 envs in all, whole
    process; then the cost of the gradient all-reduce that each minibatch update adds."""
    print(
        f"\n### ppo_atari.py, and ppo_atari_multigpu.py on 2 processes (8 envs in all, {steps:,} steps)\n", flush=True
    )
    print("| processes | torch threads each | wall | SPS |")
    print("|---|---|---|---|")
    config = PPO | dict(total_timesteps=steps)
    for processes, threads in ((1, 2), (2, 1)):
        extra = ["--torch-threads", str(threads)]
        if processes == 1:
            wall, _ = ours("ppo", config, *extra)
        else:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
            script = [str(ROOT / "ppo_atari_multigpu.py"), *flags("ppo", config), "--eval-episodes", "0", *extra]
            wall, _ = timed(launcher + script, {"OMP_NUM_THREADS": "1"})
        print(f"| {processes} | {threads} | {wall:.1f} s | {steps / wall:.0f} |", flush=True)
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(all_reduce_cost, args=(2, folder), nprocs=2)
        print(Path(folder, "cost.txt").read_text())


def all_reduce_cost(rank: int, world_size: int, folder: str, repeats: int = 50):
    """One process of two: the time of the all-reduce of a flat buffer of the Nature CNN agent's gradients."""
    import torch
    import torch.distributed as dist

    sys.path.insert(0, str(ROOT))
    import gymnasium as gym
    import numpy as np

    import ppo_atari_multigpu

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    agent = ppo_atari_multigpu.Agent(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4))
    for param in agent.parameters():
        param.grad = torch.randn_like(param)
    params = list(agent.parameters())
    ppo_atari_multigpu.average_gradients(params, world_size)  # warm-up
    dist.barrier()
    start = time.perf_counter()
    for _ in range(repeats):
        ppo_atari_multigpu.average_gradients(params, world_size)
    cost = (time.perf_counter() - start) / repeats
    if rank == 0:
        size = sum(p.numel() for p in params) * 4
        Path(folder, "cost.txt").write_text(
            f"Gradient averaging (gloo, 2 processes on this machine): {size / 2**20:.1f} MiB per all-reduce, "
            f"{cost * 1000:.1f} ms each; 16 per iteration of 1,024 steps: {16 * cost:.2f} s per iteration."
        )
    dist.barrier()
    dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", action="store_true", help="also sweep ppo_atari.py's thread split")
    parser.add_argument("--torchrun", action="store_true", help="also ppo_atari_multigpu.py on 2 processes")
    parser.add_argument("--breakdown", action="store_true", help="also where a ppo_atari.py process spends its time")
    parser.add_argument("--breakdown-child", type=float, help=argparse.SUPPRESS)  # launch time; run by --breakdown
    parser.add_argument("--skip-speed", action="store_true", help="leave out the speed table")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the replay memory table")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each speed row (median reported)")
    parser.add_argument("--baseline", type=Path, help="also time the scripts of this checkout (e.g. a git worktree)")
    parser.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=["ppo", "dqn"], help="speed rows")
    parser.add_argument("--bf16", action="store_true", help="also the speed rows of the scripts with --bf16")
    parser.add_argument("--ppo-steps", type=int, default=PPO["total_timesteps"], help="steps of the PPO speed row")
    options = parser.parse_args()
    if options.breakdown_child is not None:
        return breakdown_child(options.breakdown_child)
    load_before = load()
    print(f"Machine: {machine()}; load average (1/5/15 min) before: {load_before}", flush=True)
    python = sb3_python() if not (options.skip_speed and options.skip_memory) else None
    if not options.skip_speed:
        speed(python, options.repeat, options.algos, options.ppo_steps, options.baseline, options.bf16)
    if not options.skip_memory:
        memory(python)
    if options.threads:
        thread_split()
    if options.torchrun:
        torchrun_speed()
    if options.breakdown:
        breakdown()
    print(f"\nload average (1/5/15 min) after: {load()}")


if __name__ == "__main__":
    main()
