"""Tiny environments for the tests, registered on import: `gym.make("tests.fake_envs:FixedLength-v0")`; and
ScriptedAtariGames, a stand-in for AtariVectorEnv whose scores are known."""

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
from ale_py import Action


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


class NeverEndingEnv(FixedLengthEnv):
    """An episode that neither terminates nor has a time limit."""

    def __init__(self):
        super().__init__(length=np.iinfo(np.int64).max)


gym.register("FixedLength-v0", entry_point=FixedLengthEnv)
gym.register("NeverEnding-v0", entry_point=NeverEndingEnv)
gym.register("MultiDiscreteAction-v0", entry_point=MultiDiscreteActionEnv)
gym.register("TextObservation-v0", entry_point=TextObservationEnv)


class ScriptedAtariGames:
    """A stand-in for AtariVectorEnv (same interface, SAME_STEP autoreset, no FIRE) with known scores. A game has 3
    lives; a game seeded s loses a life every 4 + s % 2 of its steps; every step scores 10 raw points (1 once clipped).
    The frame cap truncates a game after max_num_frames_per_episode / 4 steps."""

    def __init__(self, game, num_envs, *, max_num_frames_per_episode=108_000, stack_num=4, **kwargs):
        self.num_envs, self.max_steps = num_envs, max_num_frames_per_episode // 4
        self.single_observation_space = gym.spaces.Box(0, 255, (stack_num, 84, 84), np.uint8)
        self.single_action_space = gym.spaces.Discrete(4)
        self.ale = SimpleNamespace(get_action_set=lambda: [Action.NOOP, Action.UP, Action.RIGHT, Action.LEFT])
        self.rng = np.random.default_rng(0)

    def frames(self):
        return self.rng.integers(0, 256, (self.num_envs,) + self.single_observation_space.shape, dtype=np.uint8)

    def lives(self):
        return (3 - self.t // self.life_steps).astype(np.int32)

    def reset(self, seed=0, options=None):
        self.t = np.zeros(self.num_envs, dtype=np.int64)
        self.life_steps = 4 + (seed + np.arange(self.num_envs)) % 2
        return self.frames(), {"lives": self.lives()}

    def step(self, actions):
        assert actions.shape == (self.num_envs,)
        self.t += 1
        terminated, truncated = self.lives() == 0, self.t >= self.max_steps
        reward = np.full(self.num_envs, 10, dtype=np.int32)
        infos = {}
        if (terminated | truncated).any():
            infos["final_obs"] = self.frames()
            self.t[terminated | truncated] = 0
        infos["lives"] = self.lives()
        return self.frames(), reward, terminated, truncated, infos

    def send(self, actions):
        self.sent = actions

    def recv(self):
        return self.step(self.sent)

    def close(self):
        pass


class ScriptedFireGames(ScriptedAtariGames):
    """ScriptedAtariGames in a game whose action set has FIRE (action 1), as Breakout's: AtariGames then serves (FIRE,
    then action 2) at the start of every game and after every lost life; those steps are game steps like any other."""

    def __init__(self, game, num_envs, **kwargs):
        super().__init__(game, num_envs, **kwargs)
        self.ale = SimpleNamespace(get_action_set=lambda: [Action.NOOP, Action.FIRE, Action.RIGHT, Action.LEFT])
