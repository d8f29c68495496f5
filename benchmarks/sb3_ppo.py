"""Stable-Baselines3 PPO with ppo.py's hyperparameters: the peer run by bench_ppo.py, inside its own venv.

    python sb3_ppo.py OUT_DIR JSON_CONFIG

Writes SB3's Monitor files (one CSV per env: return, length and time of every episode) to OUT_DIR and, after
training, OUT_DIR/results.json with a 10-episode evaluation as ppo.py evaluates (sampled actions; deterministic for
LunarLander, as course unit 1 scores it).
"""

import json
import sys
import time

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

out_dir, config = sys.argv[1], json.loads(sys.argv[2])
torch.set_num_threads(config["torch_threads"])  # as ppo.py: with 2 cores, a second torch thread only contends
envs = make_vec_env(config["env_id"], n_envs=config["num_envs"], seed=config["seed"], monitor_dir=out_dir)
lr = config["learning_rate"]
model = PPO(
    "MlpPolicy",
    envs,
    learning_rate=(lambda progress_remaining: progress_remaining * lr) if config["anneal_lr"] else lr,
    n_steps=config["num_steps"],
    batch_size=config["num_envs"] * config["num_steps"] // config["num_minibatches"],
    n_epochs=config["update_epochs"],
    gamma=config["gamma"],
    gae_lambda=config["gae_lambda"],
    clip_range=config["clip_coef"],
    clip_range_vf=config["clip_coef"] if config["clip_vloss"] else None,
    ent_coef=config["ent_coef"],
    vf_coef=config["vf_coef"],
    max_grad_norm=config["max_grad_norm"],
    seed=config["seed"],
    device="cpu",
)
start = time.time()
model.learn(total_timesteps=config["total_timesteps"])
train_time = time.time() - start
eval_env = make_vec_env(config["env_id"], n_envs=1, seed=config["seed"] + 10_000)
deterministic = config["env_id"].startswith("LunarLander")
returns, _ = evaluate_policy(model, eval_env, 10, deterministic=deterministic, return_episode_rewards=True)
results = dict(mean_reward=float(np.mean(returns)), std_reward=float(np.std(returns)), train_time=train_time)
with open(f"{out_dir}/results.json", "w") as f:
    json.dump(results, f)
