"""dqn_atari.py: the replay buffer against a naive reference, the TD targets and exploration by hand, the logged scores,
the script end to end on a real ROM, bad input, the Hub upload (without network), checkpoints and resume."""

import os
import signal
import subprocess
import sys
import time
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import (
    ROOT,
    assert_bad_models_refused,
    assert_clean_error,
    assert_hub_folder,
    assert_not_options,
    assert_ok,
    assert_refused,
    assert_upload_needs_a_token,
    only_run_dir,
    read_results,
    read_scalars,
    run_script,
)

import dqn_atari
from tests.fake_envs import ScriptedAtariGames

TINY = (
    "--total-timesteps", 1200, "--learning-starts", 1000, "--buffer-size", 1000, "--target-network-frequency", 100,
    "--eval-episodes", 2,
)  # fmt: skip
FRAME = (2, 3)  # tiny frames for the buffer tests: a frame's bytes encode its id


# ======================================================================================================================
# The replay buffer against a naive reference that stores the stacks of s and s' whole
# ======================================================================================================================
class FrameStream:
    """Observations as AtariVectorEnv makes them (SAME_STEP autoreset): a stack of the last 4 frames, zeros before
    the first frame of a game, a lost life does not break the stack. Every frame is unique (its bytes are its id)."""

    def __init__(self, num_envs: int, seed: int):
        self.num_envs, self.rng, self.next_id = num_envs, np.random.default_rng(seed), 1
        self.stacks = [self.new_game() for _ in range(num_envs)]

    def frame(self) -> np.ndarray:
        frame = np.frombuffer(self.next_id.to_bytes(6, "little"), np.uint8).reshape(FRAME).copy()
        self.next_id += 1
        return frame

    def new_game(self) -> deque:
        return deque([np.zeros(FRAME, np.uint8)] * 3 + [self.frame()], maxlen=4)

    def obs(self) -> np.ndarray:
        return np.stack([np.stack(stack) for stack in self.stacks])

    def step(self, p_end: float):
        """One step: (next obs, final obs, game over, terminated) with random ends of games (some of them cut by the
        frame cap: game over, not terminated) and of lives (terminated, the game goes on)."""
        final = np.zeros((self.num_envs, 4) + FRAME, np.uint8)
        game_over = self.rng.random(self.num_envs) < p_end
        truncated = game_over & (self.rng.random(self.num_envs) < 0.3)
        terminated = game_over & ~truncated
        life_lost = ~game_over & (self.rng.random(self.num_envs) < p_end)  # terminal for learning, the game goes on
        for i in range(self.num_envs):
            self.stacks[i].append(self.frame())
            if game_over[i]:
                final[i] = np.stack(self.stacks[i])
                self.stacks[i] = self.new_game()
        return self.obs(), final, game_over, terminated | life_lost


def fill(buffer_size: int, num_envs: int, steps: int, p_end: float, seed: int = 0):
    """Feed a buffer and a naive reference (every transition's s and s' whole, keyed by a unique reward)."""
    rb = dqn_atari.ReplayBuffer(buffer_size, num_envs, FRAME, torch.device("cpu"), seed=0)
    stream = FrameStream(num_envs, seed)
    rng = np.random.default_rng(seed + 1)
    reference = {}
    obs = stream.obs()
    rb.start(obs[:, -1])
    key = 0
    for t in range(steps):
        actions = rng.integers(0, 6, num_envs)
        rewards = np.arange(key, key + num_envs, dtype=np.float32)  # unique: identifies the transition
        key += num_envs
        next_obs, final, game_over, terminated = stream.step(p_end)
        rb.add(actions, rewards, terminated, next_obs[:, -1], game_over, final)
        for i in range(num_envs):
            s_next = final[i] if game_over[i] else next_obs[i]
            reference[int(rewards[i])] = (t, obs[i], actions[i], terminated[i], game_over[i], s_next)
        obs = next_obs
    return rb, reference, steps


def check_against_reference(rb, reference):
    flat = np.flatnonzero(rb.valid.reshape(-1))
    obs, actions, rewards, terminated, next_obs = rb.get(flat)
    for j, key in enumerate(rewards.numpy().astype(int)):
        _, ref_obs, ref_action, ref_terminated, _, ref_next = reference[key]
        np.testing.assert_array_equal(obs[j].numpy(), ref_obs)
        np.testing.assert_array_equal(next_obs[j].numpy(), ref_next)
        assert (actions[j], terminated[j]) == (ref_action, ref_terminated)
    return rewards.numpy().astype(int)


@pytest.mark.parametrize("num_envs, p_end", [(1, 0.1), (3, 0.2), (2, 0.6)])
def test_buffer_rebuilds_every_stored_transition_exactly(num_envs, p_end):
    # 10 slots per env, 200 steps: the ring wraps around many times; games end often, some within 1-3 steps
    rb, reference, steps = fill(10 * num_envs, num_envs, 200, p_end)
    keys = check_against_reference(rb, reference)
    # each env keeps its most recent transitions: all of them but the newest frame's slot, the 3 oldest slots (their
    # stacks reach into overwritten frames) and one slot per final frame of a game
    for env in range(num_envs):
        stored = sorted(k // num_envs for k in keys if k % num_envs == env)  # the steps they were taken at
        assert stored == list(range(steps - len(stored), steps))
        ends = sum(reference[t * num_envs + env][3] or reference[t * num_envs + env][4] for t in stored)
        assert len(stored) >= 10 - 1 - 3 - ends - 1


def test_buffer_before_wrapping_holds_every_transition():
    rb, reference, steps = fill(1000, 2, 150, 0.1)
    keys = check_against_reference(rb, reference)
    assert sorted(keys) == sorted(reference)  # nothing lost before the ring is full


def test_stacks_at_the_start_of_a_game_by_hand():
    rb = dqn_atari.ReplayBuffer(16, 1, (1,), torch.device("cpu"), seed=0)
    f = lambda value: np.array([[value]], np.uint8)  # noqa: E731 the newest frame of one env
    rb.start(f(1))  # game A: frames 1, 2, 3 (final, cut by the frame cap); game B: 11, 12
    no, yes = np.zeros(1, bool), np.ones(1, bool)
    rb.add(np.array([0]), np.array([0.0]), no, f(2), no, None)
    final = np.array([[[0], [1], [2], [3]]], np.uint8)  # the final observation of game A
    rb.add(np.array([1]), np.array([1.0]), no, f(11), yes, final)  # truncated: game over, not terminated
    rb.add(np.array([2]), np.array([2.0]), yes, f(12), no, None)  # a lost life: terminated, the game goes on
    obs, actions, rewards, terminated, next_obs = rb.get(np.flatnonzero(rb.valid.reshape(-1)))
    assert rewards.tolist() == [0.0, 1.0, 2.0]
    assert obs[:, :, 0].tolist() == [[0, 0, 0, 1], [0, 0, 1, 2], [0, 0, 0, 11]]  # zeros before each game's start
    assert next_obs[:, :, 0].tolist() == [[0, 0, 1, 2], [0, 1, 2, 3], [0, 0, 11, 12]]  # the truncated game's s'
    assert terminated.tolist() == [0.0, 0.0, 1.0] and actions.tolist() == [0, 1, 2]
    # the truncated transition bootstraps from the final observation of its game, the terminated one does not
    next_q = torch.tensor([[5.0, 0.0]]).repeat(3, 1)
    assert dqn_atari.td_target(rewards, next_q, terminated, 0.5).tolist() == [2.5, 3.5, 2.0]


def test_sampling_is_uniform_over_stored_transitions_only():
    rb, reference, _ = fill(40, 2, 100, 0.3)
    valid = set(np.flatnonzero(rb.valid.reshape(-1)))
    rewards = np.concatenate([rb.sample(32)[2].numpy() for _ in range(300)]).astype(int)
    stored = set(check_against_reference(rb, reference))
    assert set(rewards) == stored  # every stored transition, nothing else
    counts = np.bincount([sorted(stored).index(r) for r in rewards])
    assert counts.min() > 0.5 * counts.mean() and len(valid) == len(stored)


def test_buffer_rebuilds_the_observations_of_real_games():
    """On a real ROM, every stored transition's s and s' are the observations AtariVectorEnv returned: zero-padded
    stacks at the start of an episode (a game or a life), the final observation where an episode ends."""
    args = dqn_atari.Args(env_id="BreakoutNoFrameskip-v4", game="breakout", num_envs=2)
    envs = dqn_atari.AtariGames(args, 2)
    rb = dqn_atari.ReplayBuffer(4000, 2, (84, 84), torch.device("cpu"), seed=0)  # no wrap-around: all are kept
    obs, _ = envs.reset(seed=3)
    rb.start(obs[:, -1])
    rng, reference, game_ends, life_ends = np.random.default_rng(0), {}, 0, 0
    for t in range(1500):
        actions = rng.integers(0, 4, 2)
        next_obs, _, terminated, truncated, infos = envs.step(actions)
        keys = np.array([2 * t, 2 * t + 1], np.float32)  # stored as rewards: they name the transitions
        ended = terminated | truncated
        rb.add(actions, keys, terminated, next_obs[:, -1], ended, infos["final_obs"])
        for i in range(2):
            reference[2 * t + i] = (obs[i], infos["final_obs"][i] if ended[i] else next_obs[i])
        game_ends += int(infos["game_over"].sum())
        life_ends += int((ended & ~infos["game_over"]).sum())
        obs = next_obs
    envs.close()
    assert game_ends >= 4 and life_ends >= 4 * game_ends  # random play loses a game of Breakout in a few hundred steps
    stored_obs, _, keys, _, stored_next = rb.get(np.flatnonzero(rb.valid.reshape(-1)))
    assert sorted(keys.int().tolist()) == list(range(3000))
    for j, key in enumerate(keys.int().tolist()):
        np.testing.assert_array_equal(stored_obs[j].numpy(), reference[key][0])
        np.testing.assert_array_equal(stored_next[j].numpy(), reference[key][1])


def test_buffer_round_trips_through_a_checkpoint_and_keeps_its_newest_transition(tmp_path):
    rb, reference, _ = fill(60, 2, 100, 0.2)
    torch.save(rb.state_dict(), tmp_path / "buffer.pt")
    restored = dqn_atari.ReplayBuffer(60, 2, FRAME, torch.device("cpu"), seed=5)
    restored.load_state_dict(torch.load(tmp_path / "buffer.pt", weights_only=True))
    assert sorted(check_against_reference(restored, reference)) == sorted(check_against_reference(rb, reference))
    assert restored.sample(8)[2].tolist() == rb.sample(8)[2].tolist()  # the sampling stream goes on too
    # a resumed run starts new games: their first frames go after the newest slot, the games cut short keep their
    # last transitions (only the oldest ones, whose stacks reached into the slots now written, are dropped)
    newest = {(int(p) - 1) % restored.slots * 2 + env for env, p in enumerate(restored.pos)}
    restored.start(np.full((2,) + FRAME, 255, dtype=np.uint8))
    kept = set(check_against_reference(restored, reference))
    assert {int(restored.rewards.reshape(-1)[flat]) for flat in newest} <= kept
    assert len(kept) >= len(check_against_reference(rb, reference)) - 2 * 3
    wrong = dqn_atari.ReplayBuffer(40, 2, FRAME, torch.device("cpu"), seed=0)
    with pytest.raises(ValueError, match="buffer of"):
        wrong.load_state_dict(rb.state_dict())


def test_a_checkpoint_holds_the_filled_part_of_the_buffer_only(tmp_path):
    rb, reference, _ = fill(1000, 2, 100, 0.2)  # 100 steps of 2 envs in 500 slots of each
    state = rb.state_dict()
    assert rb.filled < 150 and all(len(state[name]) == rb.filled for name in dqn_atari.ReplayBuffer.STORED)
    restored = dqn_atari.ReplayBuffer(1000, 2, FRAME, torch.device("cpu"), seed=5)
    restored.load_state_dict(state)
    assert sorted(check_against_reference(restored, reference)) == sorted(check_against_reference(rb, reference))
    full, _, _ = fill(60, 2, 100, 0.2)  # 100 steps in 30 slots: the ring went round, every slot is held
    assert full.filled == 30 and len(full.state_dict()["frames"]) == 30


def test_the_buffer_holds_what_the_loss_reads_and_its_bookkeeping_only():
    """A frame, a, r, terminated, and the age and validity of the slot: no `truncated`, which no target reads (a
    truncated transition is told apart by its s', the final observation, and by not being terminated)."""
    rb, _, _ = fill(40, 2, 50, 0.3)
    assert set(rb.state_dict()) == {"frames", "actions", "rewards", "terminated", "age", "valid", "slots", "pos", "rng"}
    assert len(rb.sample(4)) == 5  # s, a, r, terminated, s'
    assert dqn_atari.ReplayBuffer.bytes_per_slot((84, 84)) == 84 * 84 + 8
    rb = dqn_atari.ReplayBuffer(1000, 1, (84, 84), torch.device("cpu"), seed=0)
    stored = sum(getattr(rb, name).nbytes for name in ("frames", "actions", "rewards", "terminated", "age", "valid"))
    assert stored == 1000 * dqn_atari.ReplayBuffer.bytes_per_slot((84, 84))


# ======================================================================================================================
# TD targets and exploration by hand
# ======================================================================================================================
def test_td_targets_dqn_and_double_dqn():
    rewards = torch.tensor([1.0, 1.0, -1.0])
    terminated = torch.tensor([0.0, 1.0, 0.0])  # the truncated transition (the third) is not terminated: bootstrap
    next_q_target = torch.tensor([[1.0, 3.0], [5.0, 2.0], [2.0, 4.0]])
    next_q_online = torch.tensor([[9.0, 0.0], [0.0, 9.0], [9.0, 0.0]])
    torch.testing.assert_close(
        dqn_atari.td_target(rewards, next_q_target, terminated, 0.5), torch.tensor([1 + 0.5 * 3, 1.0, -1 + 0.5 * 4])
    )
    # Double DQN: a' = argmax Q_online(s'), valued by Q_target
    torch.testing.assert_close(
        dqn_atari.td_target(rewards, next_q_target, terminated, 0.5, next_q_online),
        torch.tensor([1 + 0.5 * 1, 1.0, -1 + 0.5 * 2]),
    )


def test_epsilon_schedule():
    assert dqn_atari.linear_schedule(1.0, 0.01, 1000, 0) == 1.0
    assert dqn_atari.linear_schedule(1.0, 0.01, 1000, 500) == pytest.approx(0.505)
    assert dqn_atari.linear_schedule(1.0, 0.01, 1000, 5000) == 0.01


def test_epsilon_greedy_draws_from_torchs_generator():
    q_network = lambda obs: torch.tensor([0.0, 1.0, 0.0]).repeat(len(obs), 1)  # noqa: E731 greedy action: 1
    obs = torch.zeros(4000, 1)
    assert (dqn_atari.epsilon_greedy(q_network, obs, 0.0, 3) == 1).all()
    torch.manual_seed(0)
    actions = dqn_atari.epsilon_greedy(q_network, obs, 0.3, 3)
    assert np.mean(actions != 1) == pytest.approx(0.3 * 2 / 3, abs=0.03)  # a random action is greedy 1 time in 3
    torch.manual_seed(0)  # the state a checkpoint saves and restores
    np.testing.assert_array_equal(dqn_atari.epsilon_greedy(q_network, obs, 0.3, 3), actions)


# ======================================================================================================================
# Logged scores: whole games, raw
# ======================================================================================================================
def test_logged_returns_are_raw_scores_of_whole_games(tmp_path, monkeypatch):
    """Clipped (1 per step) or per-life returns would log other numbers."""
    monkeypatch.setattr(dqn_atari, "AtariVectorEnv", ScriptedAtariGames)
    monkeypatch.setattr(dqn_atari, "MAX_FRAMES", 4 * 14)  # env 1 (lives of 5 steps) is cut at step 14
    monkeypatch.chdir(tmp_path)
    args = dqn_atari.Args(
        env_id="BreakoutNoFrameskip-v4", game="breakout", torch_threads=1, num_envs=2, total_timesteps=400,
        buffer_size=100, learning_starts=100, eval_episodes=2, double_dqn=True,
    )  # fmt: skip
    dqn_atari.main(dqn_atari.check_args(args))
    scalars = read_scalars(only_run_dir(tmp_path))
    games = sorted(zip(*([v for _, v in scalars[f"charts/episodic_{k}"]] for k in ("return", "length"))))
    # 12 and 14 game steps, of which a no-op after each of 2 lost lives is not the agent's
    assert set(games) == {(120.0, 10.0), (140.0, 12.0)}
    assert len(games) == 200 // 10 + 200 // 12
    assert sorted(v for _, v in scalars["eval/episodic_return"]) == [120.0, 140.0]
    assert {"losses/td_loss", "losses/q_values"} <= set(scalars)


# ======================================================================================================================
# The script end to end on a real ROM
# ======================================================================================================================
DQN_TAGS = {
    "charts/episodic_return",
    "charts/episodic_length",
    "charts/SPS",
    "charts/learning_rate",
    "charts/epsilon",
    "losses/td_loss",
    "losses/q_values",
    "eval/episodic_return",
}


def test_smoke_save_evaluate_video_and_hub_round_trip(tmp_path):
    proc = run_script("dqn_atari.py", *TINY, "--capture-video", "--hub-package", cwd=tmp_path)
    assert_ok(proc)
    run_dir = only_run_dir(tmp_path)
    scalars = read_scalars(run_dir)
    assert DQN_TAGS <= set(scalars)
    # SpaceInvaders: every invader scores 5 to 30 raw points, so raw scores are multiples of 5 (clipped ones count
    # the rewarded steps); the scripted games above check whole games and raw scores exactly
    returns = [v for _, v in scalars["charts/episodic_return"]]
    assert returns and all(r % 5 == 0 for r in returns) and sum(returns) > 0
    assert (run_dir / "videos" / "train-episode-0.mp4").stat().st_size > 1000
    trained = read_results(run_dir / "results.json")
    assert trained["env_id"] == "SpaceInvadersNoFrameskip-v4" and trained["n_evaluation_episodes"] == 2

    assert_hub_folder(run_dir / "hub", "dqn_atari.py", "SpaceInvadersNoFrameskip-v4", "dqn")

    load_dir = tmp_path / "load"
    load_dir.mkdir()
    model = run_dir / "model.pt"
    proc = run_script("dqn_atari.py", "--load-model", model, "--eval-episodes", 2, "--capture-video", cwd=load_dir)
    assert_ok(proc)
    reloaded_dir = only_run_dir(load_dir)
    reloaded = read_results(reloaded_dir / "results.json")
    assert (reloaded["mean_reward"], reloaded["std_reward"]) == (trained["mean_reward"], trained["std_reward"])
    assert (reloaded_dir / "videos" / "eval" / "eval-episode-0.mp4").stat().st_size > 1000
    state_dict = torch.load(model, weights_only=True)
    q_network, _ = dqn_atari.load_agent(str(model), torch.device("cpu"))
    for name, tensor in q_network.state_dict().items():
        torch.testing.assert_close(tensor, state_dict[name])


# ======================================================================================================================
# Bad input: one line on stderr, non-zero exit, no traceback
# ======================================================================================================================
@pytest.mark.parametrize(
    "args, needles",
    [
        (("--env-id", "CartPole-v1"), ("not an Atari game",)),
        (("--env-id", "ALE/NoSuchGame-v5"), ("unknown env id", "NoSuchGame")),
        (("--buffer-size", 16), ("--buffer-size", "--batch-size")),
        (("--total-timesteps", 0), ("--total-timesteps", "positive")),
        (("--learning-rate", -1e-4), ("--learning-rate",)),
        (("--end-e", 0.5, "--start-e", 0.1), ("--end-e",)),
        (("--buffer-size", 10_000_000_000), ("--buffer-size", "GiB")),
        (("--load-model", "missing/model.pt"), ("does not exist",)),
        (("--hf-repo-id", "no-slash"), ("--hf-repo-id",)),
        (("--total-timesteps", 50_000), ("--learning-starts 100000", "no update", "--total-timesteps 50000")),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, needles):
    assert_refused("dqn_atari.py", *args, needles=needles, cwd=tmp_path)


def test_an_upload_without_a_token_is_refused_before_training(tmp_path):
    assert_upload_needs_a_token("dqn_atari.py", "user/dqn-SpaceInvadersNoFrameskip-v4", tmp_path)


def test_computed_fields_are_not_options(tmp_path):
    assert_not_options("dqn_atari.py", ["--game", "--repeat-action-probability", "--num-iterations"], tmp_path)


def test_the_upload_names_the_script_that_trained_the_agent(tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeHfApi:
        def create_repo(self, repo_id, **kwargs):
            calls.append(("create_repo", repo_id))

        def upload_folder(self, **kwargs):
            calls.append(("upload_folder", kwargs))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    dqn_atari.push_to_hub(tmp_path, "user/dqn-SpaceInvadersNoFrameskip-v4")
    assert calls[0] == ("create_repo", "user/dqn-SpaceInvadersNoFrameskip-v4")
    upload = calls[1][1]
    assert upload["repo_id"] == "user/dqn-SpaceInvadersNoFrameskip-v4" and upload["folder_path"] == tmp_path
    assert "dqn_atari.py" in upload["commit_message"] and "PPO" not in upload["commit_message"]


def test_corrupt_or_mismatched_model_is_refused(tmp_path):
    q_network = dqn_atari.QNetwork(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6))
    # SpaceInvaders has 6 actions, Breakout 4
    assert_bad_models_refused(
        "dqn_atari.py", q_network.state_dict(), vars(dqn_atari.Args()), "BreakoutNoFrameskip-v4", tmp_path
    )


# ======================================================================================================================
# Checkpoints and resume
# ======================================================================================================================
RESUMABLE = (
    "--total-timesteps", 1600, "--learning-starts", 200, "--buffer-size", 1000, "--target-network-frequency", 100,
    "--eval-episodes", 0, "--checkpoint-every", 100, "--torch-threads", 1,
)  # fmt: skip


def start_training(cwd, *args):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}
    command = [sys.executable, ROOT / "dqn_atari.py", *args]
    return subprocess.Popen(
        list(map(str, command)), cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def updates_until(step: int) -> int:
    """The gradient steps of RESUMABLE's run by `step`: every 4th step after the 200 of warm-up."""
    return sum(1 for s in range(201, step + 1) if s % 4 == 0)


def test_sigterm_writes_a_checkpoint_and_resume_continues_the_run(tmp_path):
    proc = start_training(tmp_path, *RESUMABLE)
    checkpoint_path, deadline = None, time.time() + 120
    while time.time() < deadline:  # once learning is under way
        found = list((tmp_path / "runs").glob("*/checkpoint.pt")) if (tmp_path / "runs").exists() else []
        if found and torch.load(found[0], weights_only=True, mmap=True)["global_step"] >= 300:
            checkpoint_path = found[0]
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and f"--resume {checkpoint_path.relative_to(tmp_path)}" in stdout, stdout
    stopped = torch.load(checkpoint_path, weights_only=True)
    stop_step = stopped["global_step"]
    assert 300 <= stop_step < 1600
    adam_steps = lambda checkpoint: int(next(iter(checkpoint["optimizer"]["state"].values()))["step"])  # noqa: E731
    assert adam_steps(stopped) == updates_until(stop_step)
    assert int(stopped["replay_buffer"]["valid"].sum()) >= stop_step - 10  # the memory is in the checkpoint

    resumed = start_training(tmp_path, "--resume", checkpoint_path, "--checkpoint-every", 100)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"resuming {checkpoint_path.parent.name} at step {stop_step:,}" in stdout
    final = torch.load(checkpoint_path, weights_only=True)
    assert final["global_step"] == 1600 and final["run_name"] == stopped["run_name"]
    assert adam_steps(final) == updates_until(1600)  # learning went on at once: the buffer came back with the run
    assert int(final["replay_buffer"]["valid"].sum()) >= 990 - 2 * 50  # full again (a slot per game end is spent)
    epsilons = dict(read_scalars(only_run_dir(tmp_path))["charts/epsilon"])
    assert sorted(epsilons) == list(range(100, 1601, 100))  # one point per 100 steps, none twice
    assert epsilons[100] == epsilons[200] == 1.0  # uniformly random while the memory warms up (200 steps)
    assert epsilons[300] == epsilons[1600] == pytest.approx(0.01)  # the schedule (160 steps) has run out


def test_bad_checkpoints_are_refused(tmp_path):
    proc = run_script("dqn_atari.py", *TINY, "--eval-episodes", 0, "--checkpoint-every", 1200, cwd=tmp_path)
    assert_ok(proc)
    path = next((tmp_path / "runs").glob("*/checkpoint.pt"))

    def refused(*argv, needles):
        assert_clean_error(run_script("dqn_atari.py", *argv, cwd=tmp_path), *needles)

    refused("--resume", tmp_path / "missing.pt", needles=("does not exist",))
    refused("--resume", path, "--buffer-size", 5000, needles=("--buffer-size", "contradicts"))
    checkpoint = torch.load(path, weights_only=True)
    torch.save(dict(checkpoint, script="ppo_atari.py"), tmp_path / "ppo.pt")
    refused("--resume", tmp_path / "ppo.pt", needles=("written by ppo_atari.py",))
    breakout = dict(checkpoint, args={**checkpoint["args"], "env_id": "BreakoutNoFrameskip-v4"})  # 4 actions, not 6
    torch.save(breakout, tmp_path / "breakout.pt")
    refused("--resume", tmp_path / "breakout.pt", needles=("does not fit",))
    path.write_bytes(path.read_bytes()[:5000])  # truncated
    refused("--resume", path, needles=("cannot read checkpoint", "truncated"))


# ======================================================================================================================
# --bf16: the CNN under bfloat16 autocast, the Q-values and TD targets in fp32
# ======================================================================================================================
def test_bf16_runs_the_cnn_in_bf16_and_keeps_q_values_and_td_targets_in_fp32():
    q_network = dqn_atari.QNetwork(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6), bf16=True)
    conv_outputs = []
    q_network.network[0].register_forward_hook(lambda module, inputs, output: conv_outputs.append(output.dtype))
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    rewards, terminated = torch.randn(8), torch.zeros(8)
    q_values = q_network(obs)
    assert conv_outputs == [torch.bfloat16] and q_values.dtype == torch.float32
    assert dqn_atari.td_target(rewards, q_network(obs), terminated, 0.99).dtype == torch.float32
    actions = torch.randint(0, 6, (8,))
    loss, mean_q = dqn_atari.dqn_loss(q_network, q_network, dqn_atari.Args(), obs, actions, rewards, terminated, obs)
    assert loss.dtype == mean_q.dtype == torch.float32
    loss.backward()
    assert {p.grad.dtype for p in q_network.parameters()} == {torch.float32}


def test_bf16_smoke_run(tmp_path):
    proc = run_script("dqn_atari.py", *TINY, "--bf16", "--save-model", cwd=tmp_path)
    assert_ok(proc)
    assert read_results(only_run_dir(tmp_path) / "results.json")["n_evaluation_episodes"] == 2
