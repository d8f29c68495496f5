"""Stable-Baselines3 PPO and DQN on Atari with the hyperparameters of ppo_atari.py and dqn_atari.py: the peers run by
bench_atari.py, inside their own venv.

    python sb3_atari.py ppo|dqn JSON_CONFIG

PPO: `make_atari_env` (AtariWrapper: no-op starts, frame skip 4 with max-pool, life loss as episode end, FIRE on reset,
84x84 grayscale, clipped rewards) with 8 envs and `VecFrameStack(4)`, CnnPolicy, CleanRL's ppo_atari.py settings.
DQN: the RL Zoo configuration of course unit 3 (buffer, lr 1e-4, batch 32, target every 1,000 steps, train every 4
steps, epsilon to 0.01 over 10% of the steps, optimize_memory_usage False), learning_starts as the config says.
Trains only (no evaluation): the benchmark times the whole process.
"""

import json
import sys

import ale_py
import gymnasium as gym
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

gym.register_envs(ale_py)
algo, config = sys.argv[1], json.loads(sys.argv[2])
envs = VecFrameStack(make_atari_env(config["env_id"], n_envs=config["num_envs"], seed=config["seed"]), n_stack=4)
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
model.learn(total_timesteps=config["total_timesteps"])
