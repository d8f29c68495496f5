"""a2c.py: n-step/GAE targets and the loss by hand, SB3-style normalisation, saving and reloading its statistics,
repeatable Panda runs, learning PandaReachDense-v3 and CartPole-v1, and bad input."""

import json
import math
import re
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import (
    assert_discrete_observations_evaluate,
    assert_hub_folder,
    assert_not_options,
    assert_ok,
    assert_refused,
    assert_refused_in_process,
    assert_upload_needs_a_token,
    eval_line,
    only_run_dir,
    read_results,
    read_scalars,
    run_script,
)

import a2c

SCRIPT = "a2c.py"
TRAINING_TAGS = {
    "charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
    "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/explained_variance",
}  # fmt: skip


def t(values):
    return torch.tensor(values, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------- pure pieces


def test_n_step_returns_across_terminated_and_truncated_ends():
    # one env, 4 steps, gamma 0.5, lambda 1 (A2C): the episode terminates at step 1, a time limit cuts the next one
    # at step 2 (final observation worth 100), and the rollout stops in the middle of a third (V(s_4) = 50)
    advantages, returns = a2c.compute_gae(
        rewards=t([[1.0], [2.0], [3.0], [4.0]]),
        values=t([[10.0], [20.0], [30.0], [40.0]]),
        last_values=t([50.0]),
        terminated=t([[0.0], [1.0], [0.0], [0.0]]),
        truncated=t([[0.0], [0.0], [1.0], [0.0]]),
        final_values=t([[0.0], [0.0], [100.0], [0.0]]),
        gamma=0.5,
        gae_lambda=1.0,
    )
    expected_returns = [
        1 + 0.5 * 2,  # r_0 + gamma r_1, then the episode terminated: nothing more
        2,  # the terminal step
        3 + 0.5 * 100,  # truncated: bootstrap from V(final observation), not from V(s_3) of the next episode
        4 + 0.5 * 50,  # the rollout ends mid-episode: bootstrap from V(s_4)
    ]
    assert returns[:, 0].tolist() == pytest.approx(expected_returns)
    assert advantages[:, 0].tolist() == pytest.approx([2 - 10, 2 - 20, 53 - 30, 29 - 40])


def test_gae_with_lambda_below_one_and_several_envs():
    gamma, lam = 0.9, 0.5
    rewards = t([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]])
    values = t([[0.5, 1.0], [1.5, 2.0], [1.0, 0.0]])
    terminated = t([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    truncated = t([[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    final_values = t([[0.0, 3.0], [0.0, 0.0], [0.0, 0.0]])
    advantages, returns = a2c.compute_gae(
        rewards, values, t([2.0, 7.0]), terminated, truncated, final_values, gamma, lam
    )
    # env 0: no episode end; delta_t = r_t + gamma V_{t+1} - V_t, A_t = delta_t + gamma lambda A_{t+1}
    d0 = [1 + 0.9 * 1.5 - 0.5, 0 + 0.9 * 1.0 - 1.5, 2 + 0.9 * 2.0 - 1.0]
    a0_2 = d0[2]
    a0_1 = d0[1] + 0.45 * a0_2
    a0_0 = d0[0] + 0.45 * a0_1
    # env 1: truncated at step 0 (bootstrap 3.0, chain cut), terminated at step 2 (V(s_3) = 7 ignored)
    a1_2 = 1 - 0.0
    a1_1 = (1 + 0.9 * 0.0 - 2.0) + 0.45 * a1_2
    a1_0 = 0 + 0.9 * 3.0 - 1.0
    np.testing.assert_allclose(advantages, [[a0_0, a1_0], [a0_1, a1_1], [a0_2, a1_2]], rtol=1e-6)
    np.testing.assert_allclose(returns, advantages + values)


def test_terminated_wins_over_truncated_in_the_same_step():
    advantages, returns = a2c.compute_gae(
        t([[1.0]]), t([[0.0]]), t([9.0]), t([[1.0]]), t([[1.0]]), t([[100.0]]), gamma=0.99, gae_lambda=1.0
    )
    assert returns.tolist() == [[1.0]]


def test_loss_is_the_course_actor_and_critic_losses():
    args = a2c.Args(ent_coef=0.1, vf_coef=0.5)
    logprob = torch.log(t([0.5, 0.25])).requires_grad_()
    values = t([0.0, 1.0]).requires_grad_()
    entropy = t([0.3, 0.5])
    advantages, returns = t([1.0, -2.0]), t([1.0, 3.0])
    loss, stats = a2c.a2c_loss(args, logprob, entropy, values, advantages, returns)
    policy_loss = -(1 * math.log(0.5) - 2 * math.log(0.25)) / 2
    value_loss = ((1 - 0) ** 2 + (3 - 1) ** 2) / 2  # mean squared error, no 1/2 (SB3)
    assert stats["policy_loss"].item() == pytest.approx(policy_loss)
    assert stats["value_loss"].item() == pytest.approx(value_loss)
    assert stats["entropy"].item() == pytest.approx(0.4)
    assert loss.item() == pytest.approx(policy_loss - 0.1 * 0.4 + 0.5 * value_loss)
    loss.backward()
    assert logprob.grad.tolist() == pytest.approx([-0.5, 1.0])  # -A_t / n
    assert values.grad.tolist() == pytest.approx([0.5 * -(1 - 0), 0.5 * -(3 - 1)])  # c_1 * 2 (V - G) / n


def test_running_mean_std_merges_batches_like_one_pass():
    rng = np.random.default_rng(0)
    data = torch.as_tensor(rng.normal(3.0, 2.0, size=(1000, 3)))
    rms = a2c.RunningMeanStd((3,))
    for batch in torch.split(data, [4, 6, 490, 499, 1]):
        rms.update(batch)
    # the initial pseudo-count of 1e-4 (mean 0, var 1) shifts the result by about 1e-7
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-6)
    np.testing.assert_allclose(rms.var, data.var(0, correction=0), rtol=1e-6)
    assert rms.count.item() == pytest.approx(1000 + 1e-4)


def agent_for(obs_dim):
    return a2c.Agent(gym.spaces.Box(-1, 1, (obs_dim,)), gym.spaces.Discrete(2))


def test_rewards_are_scaled_by_the_std_of_the_discounted_return():
    args = a2c.Args(gamma=0.5, norm_obs=True, norm_reward=True, clip_reward=10.0)
    agent = agent_for(2)
    returns = torch.zeros(2, dtype=torch.float64)
    r1 = a2c.normalize_reward(agent, args, torch.tensor([1.0, 2.0], dtype=torch.float64), returns, t([0, 1]).bool())
    # returns (1, 2): merged with the initial (mean 0, var 1, count 1e-4), their variance is ~0.25
    var = agent.ret_rms.var.item()
    assert var == pytest.approx(0.25, rel=1e-3)
    np.testing.assert_allclose(r1, np.array([1.0, 2.0]) / np.sqrt(var + 1e-8))
    assert returns.tolist() == [1.0, 0.0]  # env 1's episode ended: its return starts again
    a2c.normalize_reward(agent, args, torch.tensor([4.0, 4.0], dtype=torch.float64), returns, t([0, 0]).bool())
    assert returns.tolist() == [0.5 * 1.0 + 4.0, 4.0]  # R_t = gamma R_{t-1} + r_t


def test_observations_are_normalised_and_clipped():
    args = a2c.Args(norm_obs=True, norm_reward=False, clip_obs=2.0)
    agent = agent_for(2)
    batch = t([[0.0, 10.0], [2.0, 10.0], [4.0, 10.0]])
    out = a2c.normalize_obs(agent, args, batch, update=True)
    assert out.dtype == torch.float32
    mean, var = agent.obs_rms.mean, agent.obs_rms.var
    np.testing.assert_allclose(out, np.clip((batch - mean) / np.sqrt(var + 1e-8), -2, 2), rtol=1e-6)
    assert out[:, 1].abs().max() < 0.01  # a constant feature: ~0 (the initial pseudo-count shifts the mean by 1e-5)
    assert a2c.normalize_obs(agent, args, t([100.0, 10.0]))[0] == 2.0  # clipped, and the statistics unchanged
    assert agent.obs_rms.count.item() == pytest.approx(3 + 1e-4)
    rewards = torch.tensor([5.0, 1.0, 1.0])
    assert a2c.normalize_reward(agent, args, rewards, torch.zeros(3), torch.zeros(3, dtype=torch.bool)) is rewards
    plain = a2c.Args(norm_obs=False, norm_reward=False)
    assert a2c.normalize_obs(agent, plain, batch, update=True) is batch


def test_dict_observations_are_flattened_in_the_sorted_key_order():
    a2c.resolve_env_id("PandaReachDense-v3")
    raw = gym.make("PandaReachDense-v3")
    flat = a2c.make_env("PandaReachDense-v3")()
    obs, _ = raw.reset(seed=3)
    flat_obs, _ = flat.reset(seed=3)
    assert list(raw.observation_space.spaces) == ["achieved_goal", "desired_goal", "observation"]
    np.testing.assert_array_equal(
        flat_obs, np.concatenate([obs["achieved_goal"], obs["desired_goal"], obs["observation"]])
    )
    raw.close()
    flat.close()


def test_panda_autoresets_are_repeatable_and_async_steps_like_sync():
    """panda-gym draws a fresh OS seed at every unseeded reset; make_env's wrapper makes runs repeatable."""
    a2c.resolve_env_id("PandaReachDense-v3")
    runs = []
    for vector_env in (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv, gym.vector.SyncVectorEnv):
        envs = vector_env([a2c.make_env("PandaReachDense-v3")] * 2, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        obs, _ = envs.reset(seed=1)
        rng = np.random.default_rng(0)
        trajectory, ends = [obs], 0
        for _ in range(160):  # more than three 50-step episodes
            obs, _, terminated, truncated, _ = envs.step(rng.uniform(-1, 1, (2, 3)).astype(np.float32))
            trajectory.append(obs)
            ends += int((terminated | truncated).sum())
        envs.close()
        runs.append(np.array(trajectory))
    assert ends >= 6
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(runs[0], runs[2])


class TextEnv(gym.Env):
    observation_space = gym.spaces.Text(5)
    action_space = gym.spaces.Discrete(2)


class MultiDiscreteEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.MultiDiscrete([2, 3])


@pytest.mark.parametrize("env_class, needle", [(TextEnv, "observation space"), (MultiDiscreteEnv, "action space")])
def test_unsupported_spaces_are_one_clean_line(env_class, needle, capsys):
    gym.register(f"Test{env_class.__name__}-v0", entry_point=env_class)
    with pytest.raises(SystemExit) as exit_info:
        a2c.check_spaces(f"Test{env_class.__name__}-v0")
    assert needle in str(exit_info.value) and "a2c.py handles" in str(exit_info.value)


# ---------------------------------------------------------------------------------------------------- whole runs


def test_box_actions_train_save_and_reload_with_frozen_statistics(tmp_path):
    """Pendulum (Box actions): normalisation on by default; the statistics go into model.pt and come back."""
    train_dir, load_dir = tmp_path / "train", tmp_path / "load"
    train_dir.mkdir()
    load_dir.mkdir()
    trained = run_script(SCRIPT, "--env-id", "Pendulum-v1", "--total-timesteps", 2000, "--eval-every", 1000,
                         "--eval-episodes", 2, "--save-model", cwd=train_dir)  # fmt: skip
    assert_ok(trained)
    assert len(re.findall(r"^evaluation at step [\d,]+ \([\d,]+ SPS\) over 2 episodes: ", trained.stdout, re.M)) == 2
    run_dir = only_run_dir(train_dir)
    saved_args = read_results(run_dir / "args.json")
    assert (saved_args["norm_obs"], saved_args["norm_reward"], saved_args["async_envs"]) == (True, True, False)
    scalars = read_scalars(run_dir)
    assert TRAINING_TAGS | {"eval/mean_reward", "eval/std_reward", "eval/episodic_return"} <= set(scalars)

    state = torch.load(run_dir / "model.pt", weights_only=True)  # one state_dict: weights and statistics
    assert state["obs_rms.mean"].shape == (3,) and state["obs_rms.count"].item() == pytest.approx(2000 + 1e-4 + 4)
    assert state["ret_rms.count"].item() == pytest.approx(2000 + 1e-4)
    assert 0 < state["ret_rms.var"].item() and (state["obs_rms.var"] > 0).all()

    agent, saved = a2c.load_agent(str(run_dir / "model.pt"), torch.device("cpu"))
    for name, value in agent.state_dict().items():
        torch.testing.assert_close(value, state[name])
    # frozen during evaluation: evaluating changes no statistic, and the returns are the raw ones
    returns = a2c.evaluate(agent, saved, 2, saved.seed + 10_000, torch.device("cpu"), None)
    for name, value in agent.state_dict().items():
        torch.testing.assert_close(value, state[name])
    final = read_results(run_dir / "results.json")
    assert np.mean(returns) == pytest.approx(final["mean_reward"])

    loaded = run_script(SCRIPT, "--load-model", run_dir / "model.pt", "--eval-episodes", 2, cwd=load_dir)
    assert_ok(loaded)
    assert eval_line(loaded.stdout) == eval_line(trained.stdout)


def test_async_and_sync_envs_train_the_same_agent(tmp_path):
    lines = []
    for i, flag in enumerate(("--async-envs", "--no-async-envs")):
        (tmp_path / str(i)).mkdir()
        proc = run_script(SCRIPT, "--env-id", "Pendulum-v1", "--total-timesteps", 1000, "--eval-episodes", 2,
                          "--save-model", flag, cwd=tmp_path / str(i))  # fmt: skip
        assert_ok(proc)
        lines.append(eval_line(proc.stdout))
        async_envs = read_results(only_run_dir(tmp_path / str(i)) / "args.json")["async_envs"]
        assert async_envs == (flag == "--async-envs")
    assert lines[0] == lines[1]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--env-id", "CartPole-v1"], (False, False, False)),  # Discrete actions: no VecNormalize
        (["--env-id", "CartPole-v1", "--norm-obs", "--async-envs"], (True, False, True)),
        (["--env-id", "Pendulum-v1"], (True, True, False)),  # Box actions: VecNormalize, as course unit 6
        (["--env-id", "Pendulum-v1", "--no-norm-reward"], (True, False, False)),
    ],
)
def test_switches_default_to_what_the_env_asks_for_and_a_given_switch_wins(monkeypatch, argv, expected):
    monkeypatch.setattr(sys, "argv", ["a2c.py", *argv])
    args = a2c.parse_args()
    assert (args.norm_obs, args.norm_reward, args.async_envs) == expected


def test_the_command_line_is_checked_once(monkeypatch, capsys):
    """parse_args reads the line twice (the switches' defaults follow the env) but checks it once: one note."""
    monkeypatch.setattr(sys, "argv", ["a2c.py", "--env-id", "LunarLander-v2"])
    args = a2c.parse_args()
    assert args.gym_id == "LunarLander-v3" and capsys.readouterr().out.count("retired LunarLander-v2") == 1


def test_discrete_smoke_with_tracking_video_and_hub_folder(workdir):
    proc = run_script(SCRIPT, "--env-id", "CartPole-v1", "--total-timesteps", 2000, "--eval-episodes", 2,
                      "--track", "--capture-video", "--hub-package", cwd=workdir)  # fmt: skip
    assert_ok(proc)
    run_dir = only_run_dir(workdir)
    saved_args = read_results(run_dir / "args.json")
    assert (saved_args["norm_obs"], saved_args["norm_reward"], saved_args["async_envs"]) == (False, False, False)
    assert TRAINING_TAGS <= set(read_scalars(run_dir))
    assert list((run_dir / "videos").glob("train-episode-0.mp4"))
    assert list(workdir.glob("wandb/offline-run-*"))
    hub = run_dir / "hub"
    assert_hub_folder(hub, "a2c.py", "CartPole-v1", "a2c")


def test_discrete_observation_envs_train_and_evaluate(workdir):
    assert_discrete_observations_evaluate(SCRIPT, "--total-timesteps", 200, cwd=workdir)


def test_evaluation_of_an_env_without_a_time_limit_ends(monkeypatch):
    import tests.fake_envs  # noqa: F401  (registers NeverEnding-v0)

    monkeypatch.setattr(a2c, "MAX_EVAL_STEPS", 50)
    args = a2c.Args(env_id="NeverEnding-v0", gym_id="NeverEnding-v0", norm_obs=True, norm_reward=True)
    agent = agent_for(1)
    assert a2c.evaluate(agent, args, 2, 0, torch.device("cpu"), None) == [50.0, 50.0]
    assert agent.obs_rms.count.item() == pytest.approx(1e-4)  # frozen


# ---------------------------------------------------------------------------------------------------- learning


@pytest.mark.learning
def test_panda_reach_dense_passes_the_course_mark(workdir):
    """Course unit 6: PandaReachDense-v3, default hyperparameters and seed, mean - std >= -3.5 over 10 deterministic
    episodes, after 60k steps: past where benchmarks/bench_a2c.py sees the seeds first reach it."""
    proc = run_script(SCRIPT, "--total-timesteps", 60_000, "--save-model", cwd=workdir)
    assert_ok(proc)
    results = read_results(only_run_dir(workdir) / "results.json")
    assert results["n_evaluation_episodes"] == 10
    assert results["mean_reward"] - results["std_reward"] >= -3.5


@pytest.mark.learning
def test_cartpole_is_solved(workdir):
    """RL Zoo's A2C CartPole-v1 settings (8 envs, no normalisation), the budget cut to what seed 1 needs."""
    proc = run_script(SCRIPT, "--env-id", "CartPole-v1", "--num-envs", 8, "--total-timesteps", 100_000, cwd=workdir)
    assert_ok(proc)
    results = read_results(only_run_dir(workdir) / "results.json")
    assert results["mean_reward"] - results["std_reward"] >= 475


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--env-id", "tests.fake_envs:TextObservation-v0"], "observation space"),
        (["--total-timesteps", "0"], "--total-timesteps"),
        (["--num-envs", "0"], "--num-envs"),
        (["--num-steps", "-1"], "--num-steps"),
        (["--learning-rate", "0"], "--learning-rate"),
        (["--clip-obs", "0"], "--clip-obs"),
        (["--max-grad-norm", "0"], "--max-grad-norm"),
        (["--vf-coef", "-0.5"], "--vf-coef"),
        (["--rms-prop-alpha", "1"], "--rms-prop-alpha"),
        (["--eval-episodes", "-1"], "--eval-episodes"),
        (["--eval-every", "-5"], "--eval-every"),
        (["--eval-every", "1000", "--eval-episodes", "0"], "--eval-every"),
        (["--total-timesteps", "10"], "less than one rollout"),
        (["--hf-repo-id", "no-slash"], "--hf-repo-id"),
    ],
)
def test_bad_arguments_fail_before_any_work(tmp_path, monkeypatch, args, needle):
    assert_refused_in_process(a2c, args, needle, tmp_path, monkeypatch)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--env-id", "NoSuchEnv-v0"], "unknown env id"),
        (["--gamma", "1.5"], "--gamma"),
        (["--load-model", "nowhere/model.pt"], "does not exist"),
    ],
)
def test_bad_input_is_one_clean_line(workdir, args, needle):
    assert_refused(SCRIPT, *args, needles=(needle,), cwd=workdir)


@pytest.fixture
def saved_model(tmp_path):
    """A folder with a valid args.json for CartPole-v1; tests put a model.pt (or nothing) next to it."""
    folder = tmp_path / "model"
    folder.mkdir()
    args = vars(a2c.Args(env_id="CartPole-v1", norm_obs=False, norm_reward=False))
    (folder / "args.json").write_text(json.dumps(args))
    return folder


def without_statistics(state):
    return {name: value for name, value in state.items() if "_rms." not in name}


@pytest.mark.parametrize(
    "write",
    [
        lambda path: path.write_bytes(b"not a torch file"),
        lambda path: torch.save(without_statistics(agent_for(4).state_dict()), path),
        lambda path: torch.save(agent_for(3).state_dict(), path),
        lambda path: torch.save({**agent_for(4).state_dict(), "extra": gym.spaces.Discrete(2)}, path),
    ],
    ids=["corrupt", "no-statistics", "other-observations", "pickled-object"],
)
def test_bad_saved_model_is_one_clean_line(saved_model, write):
    write(saved_model / "model.pt")
    with pytest.raises(SystemExit) as exit_info:
        a2c.load_agent(str(saved_model / "model.pt"), torch.device("cpu"))
    assert "cannot load" in str(exit_info.value) and "\n" not in str(exit_info.value)


def test_valid_saved_model_loads_and_a_missing_args_json_is_one_clean_line(saved_model):
    torch.save(agent_for(4).state_dict(), saved_model / "model.pt")
    agent, saved = a2c.load_agent(str(saved_model / "model.pt"), torch.device("cpu"))
    assert (saved.env_id, saved.norm_obs) == ("CartPole-v1", False)
    (saved_model / "args.json").unlink()
    with pytest.raises(SystemExit) as exit_info:
        a2c.load_agent(str(saved_model / "model.pt"), torch.device("cpu"))
    assert "args.json" in str(exit_info.value)


def test_upload_without_a_token_stops_before_training(workdir):
    assert_upload_needs_a_token(SCRIPT, "someone/a2c-PandaReachDense-v3", workdir)


def test_computed_fields_are_not_options(workdir):
    assert_not_options(SCRIPT, ["--gym-id", "--batch-size", "--num-iterations"], workdir)
