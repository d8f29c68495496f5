"""Stable-Baselines3's A2C as course unit 6 trains it, evaluated every N steps; run by bench_a2c.py in its own venv.

    benchmarks/.venv-sb3/bin/python benchmarks/sb3_a2c.py '{"env_id": "PandaReachDense-v3", "seed": 1,
        "eval_every": 10000, "eval_episodes": 10, "total_timesteps": 300000, "torch_threads": 1}'

The course's code: `make_vec_env(env_id, n_envs=4)`, `VecNormalize(env, norm_obs=True, norm_reward=True,
clip_obs=10.)`, `A2C(policy="MultiInputPolicy", env=env)`, `model.learn(...)`; evaluation with a VecNormalize copy in
eval mode (training=False, norm_reward=False) and `evaluate_policy(model, eval_env, deterministic=True)`. A callback
evaluates every `eval_every` steps, the way an EvalCallback would, and prints the line a2c.py prints for its own
periodic evaluations, so that bench_a2c.py reads both sides alike.
"""

import json
import sys
import time

import numpy as np
import panda_gym  # noqa: F401  (registers the Panda environments)
import torch
from stable_baselines3 import A2C
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization


class PeriodicEvaluation(BaseCallback):
    def __init__(self, eval_env, eval_every: int, episodes: int):
        super().__init__()
        self.eval_env, self.eval_every, self.episodes = eval_env, eval_every, episodes

    def _on_training_start(self):
        self.start, self.eval_time, self.next_eval = time.time(), 0.0, self.eval_every

    def _on_step(self) -> bool:
        if self.num_timesteps < self.next_eval:
            return True
        self.next_eval += self.eval_every
        sps = int(self.num_timesteps / (time.time() - self.start - self.eval_time))  # evaluations excluded
        eval_start = time.time()
        sync_envs_normalization(self.training_env, self.eval_env)  # frozen copy of the training statistics
        returns, _ = evaluate_policy(
            self.model, self.eval_env, n_eval_episodes=self.episodes, deterministic=True, return_episode_rewards=True
        )
        self.eval_time += time.time() - eval_start
        mean, std = float(np.mean(returns)), float(np.std(returns))
        print(
            f"evaluation at step {self.num_timesteps:,} ({time.time() - self.start:.1f} s, {sps:,} SPS) over "
            f"{len(returns)} episodes: mean_reward={mean:.2f} std_reward={std:.2f} result={mean - std:.2f}",
            flush=True,
        )
        return True


def main(config: dict):
    torch.set_num_threads(config["torch_threads"])
    env = make_vec_env(config["env_id"], n_envs=4, seed=config["seed"])
    env = VecNormalize(env, norm_obs=True, norm_reward=True, clip_obs=10.0)
    eval_env = make_vec_env(config["env_id"], n_envs=1, seed=config["seed"] + 10_000)
    eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
    model = A2C(policy="MultiInputPolicy", env=env, seed=config["seed"], device="cpu", verbose=0)
    callback = PeriodicEvaluation(eval_env, config["eval_every"], config["eval_episodes"])
    model.learn(config["total_timesteps"], callback=callback)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
