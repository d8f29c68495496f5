"""ppo_atari.py: the Atari id rules, the learning signals derived from whole games (against a scripted vector env and
against the real ROM), the logged scores, the script end to end on a real ROM, and bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from ale_py.vector_env import AtariVectorEnv
from conftest import (
    PPO_TAGS,
    ROOT,
    assert_bad_models_refused,
    assert_clean_error,
    assert_hub_folder,
    assert_not_options,
    assert_ok,
    assert_refused,
    assert_upload_needs_a_token,
    eval_line,
    only_run_dir,
    read_results,
    read_scalars,
    run_script,
)

import ppo_atari
from tests.fake_envs import ScriptedAtariGames, ScriptedFireGames

TINY = ("--total-timesteps", 128, "--num-envs", 2, "--num-steps", 32, "--num-minibatches", 2, "--eval-episodes", 2)


def scripted_args(**overrides):
    args = ppo_atari.Args(env_id="BreakoutNoFrameskip-v4", game="breakout", torch_threads=1)
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


# ======================================================================================================================
# Atari ids
# ======================================================================================================================
@pytest.mark.parametrize(
    "env_id, game, sticky",
    [
        ("BreakoutNoFrameskip-v4", "breakout", 0.0),
        ("ALE/Breakout-v5", "breakout", 0.25),
        ("SpaceInvadersNoFrameskip-v4", "space_invaders", 0.0),
        ("ALE/MsPacman-v5", "ms_pacman", 0.25),
    ],
)
def test_both_id_styles_keep_their_meaning(env_id, game, sticky):
    assert ppo_atari.resolve_env_id(env_id) == (game, sticky)


# ======================================================================================================================
# Learning signals from whole games
# ======================================================================================================================
def test_learning_signals_of_scripted_games(monkeypatch):
    monkeypatch.setattr(ppo_atari, "AtariVectorEnv", ScriptedAtariGames)
    monkeypatch.setattr(ppo_atari, "MAX_FRAMES", 4 * 14)  # env 1 (lives of 5 steps) is cut at step 14, 1 life left
    envs = ppo_atari.AtariGames(scripted_args(), 2)
    envs.reset(seed=0)
    rows = [envs.step(np.zeros(2, dtype=np.int64)) for _ in range(15)]
    rewards = np.array([r[1] for r in rows])
    terminated = np.array([r[2] for r in rows])
    truncated = np.array([r[3] for r in rows])
    game_over = np.array([r[4]["game_over"] for r in rows])
    raw = np.array([r[4]["raw_reward"] for r in rows])
    assert (rewards == 1.0).all()  # learning sees sign(r)
    # after a lost life the game plays a no-op the agent does not see: its 10 points are in the step's raw score
    assert (raw == np.where(terminated & ~game_over, 20.0, 10.0)).all()
    # env 0, lives of 4 game steps: lost after agent steps 4 and 7 (the game goes on), game over after step 10; the
    # next game loses its first life after step 14
    assert list(np.flatnonzero(terminated[:, 0]) + 1) == [4, 7, 10, 14]
    assert list(np.flatnonzero(game_over[:, 0]) + 1) == [10]
    # env 1, lives of 5: lost after steps 5 and 9; the cap truncates the game after its 14th step: not a termination
    assert list(np.flatnonzero(terminated[:, 1]) + 1) == [5, 9]
    assert list(np.flatnonzero(truncated[:, 1]) + 1) == [12]
    assert list(np.flatnonzero(game_over[:, 1]) + 1) == [12]
    assert not truncated[:, 0].any()


def test_learning_signals_on_the_real_rom_against_the_references_protocol():
    """SpaceInvaders, a game with FIRE: the wrapper's signals, scores and newest frames agree with games that report
    raw data only and play the references' reset steps as written here (after a lost life NOOP, FIRE, action 2; at the
    start of a game FIRE, action 2); the stack restarts (zeros before the newest frame) wherever an episode ended."""
    args = scripted_args(env_id="SpaceInvadersNoFrameskip-v4", game="space_invaders")
    envs = ppo_atari.AtariGames(args, 2)
    rules = dict(stack_num=1, use_fire_reset=False, reward_clipping=False, autoreset_mode="SameStep")
    games = [AtariVectorEnv("space_invaders", 1, num_threads=1, **rules) for _ in range(2)]

    def play(i, action):  # newest frame, raw reward, game over, lives
        frame, reward, terminated, truncated, info = games[i].step(np.array([action]))
        return frame[0, 0], float(reward[0]), bool(terminated[0] or truncated[0]), int(info["lives"][0])

    obs, _ = envs.reset(seed=3)
    lives, head_start = [0, 0], [0.0, 0.0]  # what the serve of a new game scored: it counts in the game's first step
    for i, game in enumerate(games):
        game.reset(seed=3 + i)
        for action in (1, 2):
            frame, extra, _, lives[i] = play(i, action)
            head_start[i] += extra
        np.testing.assert_array_equal(obs[i, -1], frame)
    assert not obs[:, :-1].any()
    rng = np.random.default_rng(0)
    game_ends = life_ends = 0
    for _ in range(1500):
        actions = rng.integers(0, 6, 2)
        obs, reward, terminated, truncated, infos = envs.step(actions)
        for i in range(2):
            frame, raw, game_over, now = play(i, actions[i])
            raw, head_start[i] = raw + head_start[i], 0.0
            life_lost, lives[i] = now < lives[i] and not game_over, now
            assert reward[i] == np.sign(raw) and terminated[i] == (life_lost or game_over and not truncated[i])
            assert infos["game_over"][i] == game_over
            for action in [0, 1, 2] if life_lost else [1, 2] if game_over else []:
                frame, extra, _, lives[i] = play(i, action)
                if game_over:
                    head_start[i] += extra
                else:
                    raw += extra
            assert infos["raw_reward"][i] == raw
            np.testing.assert_array_equal(obs[i, -1], frame)
            if life_lost or game_over:
                assert not obs[i, :-1].any()
            game_ends, life_ends = game_ends + game_over, life_ends + life_lost
    envs.close()
    assert game_ends >= 2 and life_ends >= 2 * game_ends


def test_every_game_scores_its_own_reset_steps(monkeypatch):
    """In a game with FIRE, the serve at a game's start scores in that game (its first step), never in the game before:
    scripted games of 3 lives x 4 game steps, 10 points each, score 120 each, the first one included."""
    monkeypatch.setattr(ppo_atari, "AtariVectorEnv", ScriptedFireGames)
    envs = ppo_atari.AtariGames(scripted_args(), 1)
    envs.reset(seed=0)
    rows = [envs.step(np.zeros(1, dtype=np.int64))[4] for _ in range(20)]
    raw, game_over = np.array([row["raw_reward"][0] for row in rows]), np.array([row["game_over"][0] for row in rows])
    ends = np.flatnonzero(game_over)
    assert len(ends) >= 4  # 4 agent steps a game: 2 serve steps, 2 x 3 reset steps after a lost life
    assert [raw[start + 1 : end + 1].sum() for start, end in zip([-1, *ends[:-1]], ends)] == [120.0] * len(ends)
    assert (raw[ends] == 10.0).all() and (raw[ends[:-1] + 1] == 30.0).all()  # the serve: in the next game's step


def test_a_lost_life_is_served_so_that_a_game_that_never_fires_ends():
    """Breakout waits for FIRE after a lost life: an agent that only ever plays NOOP still loses all 5 lives, as the
    game serves after each (the references' FireResetEnv)."""
    envs = ppo_atari.AtariGames(scripted_args(), 1)
    envs.reset(seed=1)
    ends = [envs.step(np.zeros(1, dtype=np.int64)) for _ in range(2000)]
    terminated = np.array([row[2][0] for row in ends])
    game_over = np.array([row[4]["game_over"][0] for row in ends])
    envs.close()
    first_game = np.flatnonzero(game_over)[0]
    assert terminated[: first_game + 1].sum() == 5  # 4 lost lives and the game over


def test_logged_returns_are_raw_scores_of_whole_games(tmp_path, monkeypatch):
    """The training loop logs whole games: clipped (1 per step) or per-life returns would log other numbers."""
    monkeypatch.setattr(ppo_atari, "AtariVectorEnv", ScriptedAtariGames)
    monkeypatch.setattr(ppo_atari, "MAX_FRAMES", 4 * 14)
    monkeypatch.chdir(tmp_path)
    args = scripted_args(total_timesteps=128, num_envs=2, num_steps=32, num_minibatches=2, eval_episodes=2)
    ppo_atari.main(ppo_atari.check_args(args))
    run_dir = only_run_dir(tmp_path)
    scalars = read_scalars(run_dir)
    games = sorted(
        zip((v for _, v in scalars["charts/episodic_return"]), (v for _, v in scalars["charts/episodic_length"]))
    )
    # games of 3 lives x 4 game steps (a no-op after each lost life), 10 points a step: 12 game steps, 10 agent
    # steps; games of lives of 5 steps, cut by the frame cap after 14 game steps (12 agent steps)
    assert set(games) == {(120.0, 10.0), (140.0, 12.0)}
    assert len(games) == 64 // 10 + 64 // 12
    # each evaluation env plays one whole game
    assert sorted(v for _, v in scalars["eval/episodic_return"]) == [120.0, 140.0]


# ======================================================================================================================
# The network: what a rollout step stores is what the update scores
# ======================================================================================================================
def test_rollout_scores_match_the_update_scores():
    torch.manual_seed(0)
    agent = ppo_atari.Agent(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(6))
    with torch.no_grad():
        agent.actor.weight.mul_(100)  # a policy far from uniform
    x = torch.randint(0, 256, (64, 4, 84, 84), dtype=torch.uint8)
    with torch.no_grad():
        action, logprob, _, value = agent.get_action_and_value(x)
    _, new_logprob, entropy, new_value = agent.get_action_and_value(x, action)
    torch.testing.assert_close(new_logprob, logprob)
    torch.testing.assert_close(new_value, value)
    reference = torch.distributions.Categorical(logits=agent.actor(agent.hidden(x)))
    torch.testing.assert_close(new_logprob, reference.log_prob(action))
    torch.testing.assert_close(entropy, reference.entropy())
    assert agent.network[0].weight.is_contiguous(memory_format=torch.channels_last)
    # CleanRL's parameter names: its ppo_atari.py state_dicts load here
    assert {"network.0.weight", "network.7.weight", "actor.weight", "critic.weight"} <= set(agent.state_dict())


# ======================================================================================================================
# The script end to end on a real ROM
# ======================================================================================================================


def test_smoke_save_evaluate_video_and_hub_round_trip(tmp_path):
    proc = run_script("ppo_atari.py", *TINY, "--capture-video", "--hub-package", cwd=tmp_path)
    assert_ok(proc)
    run_dir = only_run_dir(tmp_path)
    scalars = read_scalars(run_dir)
    assert PPO_TAGS - {"charts/episodic_return", "charts/episodic_length"} <= set(scalars)  # no game ends
    assert len(scalars["losses/value_loss"]) == 2  # one point per iteration
    args = json.loads((run_dir / "args.json").read_text())
    assert (args["env_id"], args["game"], args["repeat_action_probability"]) == (
        "BreakoutNoFrameskip-v4",
        "breakout",
        0,
    )
    assert (run_dir / "videos" / "train-episode-0.mp4").stat().st_size > 1000
    assert (run_dir / "videos" / "eval" / "eval-episode-0.mp4").stat().st_size > 1000
    trained = read_results(run_dir / "results.json")
    assert trained["env_id"] == "BreakoutNoFrameskip-v4" and trained["n_evaluation_episodes"] == 2

    assert_hub_folder(run_dir / "hub", "ppo_atari.py", "BreakoutNoFrameskip-v4", "ppo")

    # the saved model evaluates to the same numbers in a new process, with a video of one whole game
    load_dir = tmp_path / "load"
    load_dir.mkdir()
    proc = run_script(
        "ppo_atari.py", "--load-model", run_dir / "model.pt", "--eval-episodes", 2, "--capture-video", cwd=load_dir
    )
    assert_ok(proc)
    reloaded_dir = only_run_dir(load_dir)
    reloaded = read_results(reloaded_dir / "results.json")
    assert (reloaded["mean_reward"], reloaded["std_reward"]) == (trained["mean_reward"], trained["std_reward"])
    assert (reloaded_dir / "videos" / "eval" / "eval-episode-0.mp4").stat().st_size > 1000
    state_dict = torch.load(run_dir / "model.pt", weights_only=True)
    agent, _ = ppo_atari.load_agent(str(run_dir / "model.pt"), torch.device("cpu"))
    for name, tensor in agent.state_dict().items():
        torch.testing.assert_close(tensor, state_dict[name])


def test_v5_id_runs_with_sticky_actions(tmp_path):
    proc = run_script(
        "ppo_atari.py", "--env-id", "ALE/Pong-v5", *TINY, "--eval-episodes", 0, "--save-model", cwd=tmp_path
    )
    assert_ok(proc)
    args = json.loads((only_run_dir(tmp_path) / "args.json").read_text())
    assert (args["env_id"], args["game"], args["repeat_action_probability"]) == ("ALE/Pong-v5", "pong", 0.25)


# ======================================================================================================================
# Bad input: one line on stderr, non-zero exit, no traceback
# ======================================================================================================================
@pytest.mark.parametrize(
    "args, needles",
    [
        (("--env-id", "CartPole-v1"), ("not an Atari game",)),
        (("--env-id", "ALE/NoSuchGame-v5"), ("unknown env id", "NoSuchGame")),
        (("--env-id", "Breakout-v4"), ("BreakoutNoFrameskip-v4", "ALE/Breakout-v5")),
        (("--env-id", "BreakoutNoFrameskip-v0"), ("BreakoutNoFrameskip-v4",)),
        (("--num-minibatches", 3), ("not divisible", "--num-minibatches")),
        (("--total-timesteps", 0), ("--total-timesteps", "positive")),
        (("--total-timesteps", 100), ("less than one rollout",)),
        (("--max-grad-norm", -1), ("--max-grad-norm", "positive")),
        (("--vf-coef", -1), ("--vf-coef", ">= 0")),
        (("--load-model", "missing/model.pt"), ("does not exist",)),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, needles):
    assert_refused("ppo_atari.py", *args, needles=needles, cwd=tmp_path)


def test_upload_without_a_token_stops_before_training(tmp_path):
    assert_upload_needs_a_token("ppo_atari.py", "someone/ppo-BreakoutNoFrameskip-v4", tmp_path)


def test_computed_fields_are_not_options(tmp_path):
    options = ["--game", "--repeat-action-probability", "--batch-size", "--num-iterations", "--world-size"]
    assert_not_options("ppo_atari.py", options, tmp_path)


def test_corrupt_or_mismatched_model_is_refused(tmp_path):
    agent = ppo_atari.Agent(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4))
    # Breakout has 4 actions, Pong 6
    assert_bad_models_refused(
        "ppo_atari.py", agent.state_dict(), vars(ppo_atari.Args()), "PongNoFrameskip-v4", tmp_path
    )


# ======================================================================================================================
# Checkpoints and resume
# ======================================================================================================================
SMALL = ("--num-envs", 4, "--num-steps", 32, "--num-minibatches", 2, "--update-epochs", 2, "--torch-threads", 1)


def start_training(tmp_path, *args):
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "offline"}
    command = [sys.executable, ROOT / "ppo_atari.py", *SMALL, "--eval-episodes", 0, *args]
    return subprocess.Popen(
        list(map(str, command)), cwd=tmp_path, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def read_checkpoint(path):
    return torch.load(path, weights_only=True)


def adam_steps(checkpoint) -> int:
    return int(next(iter(checkpoint["optimizer"]["state"].values()))["step"])


def test_sigterm_writes_a_checkpoint_and_resume_continues_the_run(tmp_path):
    total = 128 * 30
    proc = start_training(tmp_path, "--total-timesteps", total, "--checkpoint-every", 128, "--save-model")
    checkpoint_path = None
    deadline = time.time() + 120
    while checkpoint_path is None and time.time() < deadline:  # the first checkpoint: training is under way
        found = list((tmp_path / "runs").glob("*/checkpoint.pt")) if (tmp_path / "runs").exists() else []
        checkpoint_path = found[0] if found else time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr and f"--resume {checkpoint_path.relative_to(tmp_path)}" in stdout, stdout
    assert "stopped by SIGTERM; evaluate it with" in stdout and (checkpoint_path.parent / "model.pt").is_file()
    stopped = read_checkpoint(checkpoint_path)
    stop_step = stopped["global_step"]
    assert 128 <= stop_step < total and stop_step % 128 == 0
    assert adam_steps(stopped) == stop_step // 128 * 2 * 2  # iterations x epochs x minibatches
    shutil.copy(checkpoint_path, tmp_path / "stopped.pt")

    # resumed: the same run dir, the step count goes on to the total, the optimizer continues (its step count and
    # moments carry over), and TensorBoard has one point per iteration
    resumed = start_training(tmp_path, "--resume", checkpoint_path, "--checkpoint-every", 128)
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    assert f"resuming {checkpoint_path.parent.name} at step {stop_step:,}" in stdout
    final = read_checkpoint(checkpoint_path)
    assert (final["global_step"], final["run_name"]) == (total, stopped["run_name"])
    assert adam_steps(final) == 30 * 2 * 2
    run_dir = only_run_dir(tmp_path)
    assert [step for step, _ in read_scalars(run_dir)["charts/SPS"]] == list(range(128, total + 1, 128))
    lrs = dict(read_scalars(run_dir)["charts/learning_rate"])
    assert lrs[stop_step + 128] == pytest.approx(2.5e-4 * (1 - stop_step / total), rel=1e-5)  # the schedule goes on

    # what is reproduced: the learner's state (weights, optimizer, schedule, counters, RNG), so two resumes from one
    # checkpoint train alike; what is not: the games in progress (AtariVectorEnv cannot save its emulators), so a
    # resumed run plays new games and differs from an uninterrupted one from there on
    again = tmp_path / "again"
    again.mkdir()
    shutil.copytree(run_dir, again / "runs" / run_dir.name)
    shutil.copy(tmp_path / "stopped.pt", again / "runs" / run_dir.name / "checkpoint.pt")
    twin = start_training(again, "--resume", again / "runs" / run_dir.name / "checkpoint.pt", "--checkpoint-every", 128)
    assert twin.wait(timeout=300) == 0
    twin_final = read_checkpoint(again / "runs" / run_dir.name / "checkpoint.pt")
    for name, tensor in final["model"].items():
        torch.testing.assert_close(twin_final["model"][name], tensor, rtol=0, atol=0)


def test_bad_checkpoints_are_refused(tmp_path):
    saved = tmp_path / "runs" / "saved"
    saved.mkdir(parents=True)
    path = saved / "checkpoint.pt"
    agent = ppo_atari.Agent(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4))
    optimizer = torch.optim.Adam(agent.parameters())
    args = ppo_atari.check_args(ppo_atari.Args(total_timesteps=1024, num_envs=4, num_steps=32, num_minibatches=2))
    ppo_atari.Checkpoints(args, "saved", saved, model=agent, optimizer=optimizer).save(128)

    def refused(*argv, needles):
        assert_clean_error(run_script("ppo_atari.py", *argv, cwd=tmp_path), *needles)

    refused("--resume", tmp_path / "missing.pt", needles=("does not exist",))
    refused("--resume", path, "--env-id", "PongNoFrameskip-v4", needles=("--env-id", "contradicts"))
    refused("--resume", path, "--load-model", path, needles=("--load-model",))
    torch.save(agent.state_dict(), tmp_path / "model.pt")
    refused("--resume", tmp_path / "model.pt", needles=("not a checkpoint of ppo_atari.py",))
    torch.save({"script": "ppo_atari.py", "model": agent.state_dict()}, tmp_path / "partial.pt")
    refused("--resume", tmp_path / "partial.pt", needles=("not a complete checkpoint", "args"))
    torch.save(dict(read_checkpoint(path), script="dqn_atari.py"), tmp_path / "dqn.pt")
    refused("--resume", tmp_path / "dqn.pt", needles=("written by dqn_atari.py",))
    pong = dict(read_checkpoint(path), args={**vars(args), "env_id": "PongNoFrameskip-v4"})  # 6 actions, not 4
    torch.save(pong, tmp_path / "pong.pt")
    refused("--resume", tmp_path / "pong.pt", needles=("does not fit",))
    longer = ppo_atari.check_args(ppo_atari.Args(resume=str(path), total_timesteps=4096))
    assert (longer.total_timesteps, longer.num_iterations, longer.num_envs) == (4096, 32, 4)  # the run, for longer
    refused("--resume", path, "--total-timesteps", 512, needles=("--total-timesteps 512 contradicts",))
    path.write_bytes(path.read_bytes()[:1000])  # truncated
    refused("--resume", path, needles=("cannot read checkpoint", "truncated"))


# ======================================================================================================================
# --bf16: the CNN under bfloat16 autocast, what decides learning in fp32
# ======================================================================================================================
def test_bf16_runs_the_cnn_in_bf16_and_keeps_the_ratio_values_and_gradients_in_fp32():
    spaces = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4)
    agent = ppo_atari.Agent(*spaces, bf16=True)
    conv_outputs = []
    agent.network[0].register_forward_hook(lambda module, inputs, output: conv_outputs.append(output.dtype))
    obs = torch.randint(0, 256, (8, 4, 84, 84), dtype=torch.uint8)
    action, logprob, entropy, value = agent.get_action_and_value(obs)
    assert conv_outputs == [torch.bfloat16]
    assert logprob.dtype == entropy.dtype == value.dtype == torch.float32
    old = logprob.detach() + 0.1 * torch.randn(8)
    loss, stats = ppo_atari.ppo_loss(agent, ppo_atari.Args(), obs, action, old, torch.randn(8), torch.randn(8), value)
    assert loss.dtype == torch.float32 and {v.dtype for v in stats.values()} == {torch.float32}  # ratio, KL, clipfrac
    loss.backward()
    assert {p.grad.dtype for p in agent.parameters()} == {torch.float32}  # Adam's moments follow the fp32 parameters
    fp32 = ppo_atari.Agent(*spaces)
    fp32.load_state_dict(agent.state_dict())
    _, logprob32, _, value32 = fp32.get_action_and_value(obs, action)
    torch.testing.assert_close(logprob.detach(), logprob32.detach(), atol=0.02, rtol=0.0)  # the same policy, rounded
    torch.testing.assert_close(value.detach(), value32.detach(), atol=0.05, rtol=0.0)


def test_bf16_smoke_run_is_repeatable(tmp_path):
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        proc = run_script("ppo_atari.py", *TINY, "--bf16", "--save-model", cwd=tmp_path / name)
        assert_ok(proc)
        runs.append((eval_line(proc.stdout), torch.load(only_run_dir(tmp_path / name) / "model.pt", weights_only=True)))
    assert runs[0][0] == runs[1][0]
    for name, tensor in runs[0][1].items():
        torch.testing.assert_close(runs[1][1][name], tensor, rtol=0, atol=0)
