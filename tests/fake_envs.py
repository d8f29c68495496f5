"""Tiny environments for the tests, registered on import: `gym.make("tests.fake_envs:FixedLength-v0")`."""

import gymnasium as gym
import numpy as np


class FixedLengthEnv(gym.Env):
    """Reward 1 each step; the episode terminates after `length` steps. Observation: the step count."""

    observation_space = gym.spaces.Box(0.0, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int = 10):
        self.length = length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([self.t], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, self.t >= self.length, False, {}


class MultiDiscreteActionEnv(FixedLengthEnv):
    action_space = gym.spaces.MultiDiscrete([2, 3])


class TextObservationEnv(FixedLengthEnv):
    observation_space = gym.spaces.Text(5)


gym.register("FixedLength-v0", entry_point=FixedLengthEnv)
gym.register("MultiDiscreteAction-v0", entry_point=MultiDiscreteActionEnv)
gym.register("TextObservation-v0", entry_point=TextObservationEnv)
