"""Stable-Baselines3 PPO and DQN on Atari with the hyperparameters of ppo_atari.py and dqn_atari.py: the peers run by
bench_atari.py (speed) and results.py (returns at equal steps), inside their own venv.

    python sb3_atari.py ppo|dqn JSON_CONFIG              # trains only: bench_atari.py times the whole process
    python sb3_atari.py ppo|dqn JSON_CONFIG OUT_FOLDER   # also the training curve and an evaluation, as JSON

PPO: `make_atari_env` (AtariWrapper: no-op starts, frame skip 4 with max-pool, life loss as episode end, FIRE on reset,
84x84 grayscale, clipped rewards) with 8 envs and `VecFrameStack(4)`, CnnPolicy, CleanRL's ppo_atari.py settings.
DQN: the RL Zoo configuration of course unit 3 (buffer, lr 1e-4, batch 32, target every 1,000 steps, train every 4
steps, epsilon to 0.01 over 10% of the steps, optimize_memory_usage False), learning_starts as the config says.

With OUT_FOLDER, OUT_FOLDER/curve.json gets the raw score of every whole game played in training ([step, return]
pairs: `make_atari_env` puts its Monitor under the AtariWrapper, so a game is all its lives), and
OUT_FOLDER/results.json the evaluation after training as our scripts make it: 10 whole games, raw score, seeded with
seed + 10,000, non-deterministic actions (PPO: sampled from the policy; DQN: epsilon-greedy with the final epsilon).
"""

import json
import sys
from pathlib import Path

import ale_py
import gymnasium as gym
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecFrameStack


class Curve(BaseCallback):
    """The raw scores of the whole games that end in training, with the step count at their end."""

    def __init__(self):
        super().__init__()
        self.points = []

    def _on_step(self) -> bool:
        ended = [info["episode"]["r"] for info in self.locals["infos"] if "episode" in info]
        self.points += [[self.num_timesteps, score] for score in ended]
        return True


def atari_envs(config: dict, n_envs: int, seed: int):
    return VecFrameStack(make_atari_env(config["env_id"], n_envs=n_envs, seed=seed), n_stack=4)


gym.register_envs(ale_py)
algo, config = sys.argv[1], json.loads(sys.argv[2])
out = Path(sys.argv[3]) if len(sys.argv) > 3 else None
envs = atari_envs(config, config["num_envs"], config["seed"])
if algo == "ppo":
    lr = config["learning_rate"]
    model = PPO(
        "CnnPolicy",
        envs,
        learning_rate=lambda progress_remaining: progress_remaining * lr,
        n_steps=config["num_steps"],
        batch_size=config["num_envs"] * config["num_steps"] // config["num_minibatches"],
        n_epochs=config["update_epochs"],
        gamma=config["gamma"],
        gae_lambda=config["gae_lambda"],
        clip_range=config["clip_coef"],
        clip_range_vf=config["clip_coef"],
        ent_coef=config["ent_coef"],
        vf_coef=config["vf_coef"],
        max_grad_norm=config["max_grad_norm"],
        seed=config["seed"],
        device="cpu",
    )
else:
    model = DQN(
        "CnnPolicy",
        envs,
        learning_rate=config["learning_rate"],
        buffer_size=config["buffer_size"],
        learning_starts=config["learning_starts"],
        batch_size=config["batch_size"],
        gamma=config["gamma"],
        target_update_interval=config["target_network_frequency"],
        train_freq=config["train_frequency"],
        gradient_steps=config["gradient_steps"],
        exploration_fraction=config["exploration_fraction"],
        exploration_final_eps=config["end_e"],
        optimize_memory_usage=False,
        seed=config["seed"],
        device="cpu",
    )
curve = Curve()
model.learn(total_timesteps=config["total_timesteps"], callback=curve if out else None)
if out is not None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "curve.json").write_text(json.dumps(curve.points))
    eval_envs = atari_envs(config, 1, config["seed"] + 10_000)
    returns, _ = evaluate_policy(model, eval_envs, n_eval_episodes=10, deterministic=False, return_episode_rewards=True)
    results = dict(mean_reward=float(sum(returns) / len(returns)), returns=[float(r) for r in returns])
    results["std_reward"] = float((sum((r - results["mean_reward"]) ** 2 for r in returns) / len(returns)) ** 0.5)
    results["n_evaluation_episodes"] = len(returns)
    (out / "results.json").write_text(json.dumps(results, indent=2))
