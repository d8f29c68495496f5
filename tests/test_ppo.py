"""ppo.py: the pure pieces against hand-computed numbers, the script end to end, bad input, and real learning."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import (
    PPO_TAGS,
    ROOT,
    assert_clean_error,
    assert_discrete_observations_evaluate,
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

import ppo

TINY = ("--total-timesteps", 1024, "--num-envs", 2, "--num-steps", 128, "--eval-episodes", 2)
FAKE_ENVS = {"PYTHONPATH": str(ROOT)}  # makes `tests.fake_envs:...` ids importable from the temporary directory


# ======================================================================================================================
# GAE: a terminated, a truncated and a terminated-and-truncated episode inside one rollout
# ======================================================================================================================
def test_gae_against_hand_computed_values():
    gamma, lam = 0.9, 0.8  # gamma * lambda = 0.72
    # columns: env 0 terminates at t=1; env 1 is cut by a time limit at t=2 (V(final obs) = 5); env 2 ends at t=0
    # with both flags set, which is a termination: no bootstrap.
    rewards = torch.tensor([[1.0, 1.0, 1.0], [2.0, 1.0, 1.0], [3.0, 1.0, 1.0], [4.0, 1.0, 1.0]])
    values = torch.tensor([[0.5, 2.0, 1.0], [1.0, 2.0, 1.0], [1.5, 2.0, 1.0], [2.0, 2.0, 1.0]])
    last_values = torch.tensor([3.0, 2.5, 0.0])
    terminated = torch.tensor([[0.0, 0, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]])
    truncated = torch.tensor([[0.0, 0, 1], [0, 0, 0], [0, 1, 0], [0, 0, 0]])
    final_values = torch.zeros(4, 3)
    final_values[2, 1] = 5.0
    final_values[0, 2] = 7.0  # terminated as well: must be ignored
    final_values[1, 0] = 99.0  # terminated, not truncated: must be ignored

    advantages, returns = ppo.compute_gae(rewards, values, last_values, terminated, truncated, final_values, gamma, lam)

    # env 0: deltas 1+0.9*1-0.5=1.4, 2+0-1=1.0, 3+0.9*2-1.5=3.3, 4+0.9*3-2=4.7
    #        A3=4.7, A2=3.3+0.72*4.7=6.684, A1=1.0 (episode ends), A0=1.4+0.72*1.0=2.12
    # env 1: deltas 1+0.9*2-2=0.8, 0.8, 1+0.9*5-2=3.5 (bootstrap from the final obs), 1+0.9*2.5-2=1.25
    #        A3=1.25, A2=3.5 (episode ends), A1=0.8+0.72*3.5=3.32, A0=0.8+0.72*3.32=3.1904
    # env 2: deltas 1-1=0 (no bootstrap), 0.9, 0.9, 1+0-1=0; A3=0, A2=0.9, A1=0.9+0.72*0.9=1.548, A0=0
    expected = torch.tensor([[2.12, 3.1904, 0.0], [1.0, 3.32, 1.548], [6.684, 3.5, 0.9], [4.7, 1.25, 0.0]])
    torch.testing.assert_close(advantages, expected)
    torch.testing.assert_close(returns, expected + values)


def test_gae_with_lambda_one_is_the_discounted_return_minus_value():
    rewards = torch.tensor([[1.0], [1.0], [1.0]])
    values = torch.zeros(3, 1)
    zeros = torch.zeros(3, 1)
    advantages, returns = ppo.compute_gae(rewards, values, torch.tensor([10.0]), zeros, zeros, zeros, 0.5, 1.0)
    # G_2 = 1 + 0.5*10 = 6, G_1 = 1 + 0.5*6 = 4, G_0 = 1 + 0.5*4 = 3
    torch.testing.assert_close(returns, torch.tensor([[3.0], [4.0], [6.0]]))


# ======================================================================================================================
# The policy: the rollout's Gumbel-max samples follow the categorical distribution the update scores
# ======================================================================================================================
def test_categorical_scores_match_torch_and_samples_follow_the_policy():
    torch.manual_seed(0)
    agent = ppo.Agent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4))
    with torch.no_grad():  # a policy far from uniform
        agent.actor[-1].weight.mul_(300)
    x = torch.randn(5, 3)
    actions = torch.tensor([0, 1, 2, 3, 1])
    _, logprob, entropy, value = agent.get_action_and_value(x, actions)
    reference = torch.distributions.Categorical(logits=agent.actor(x))
    torch.testing.assert_close(logprob, reference.log_prob(actions))
    torch.testing.assert_close(entropy, reference.entropy())
    assert value.shape == (5,)

    one_state = x[:1].expand(200_000, 3)
    samples = agent.get_action(one_state)
    frequencies = torch.bincount(samples, minlength=4) / len(samples)
    torch.testing.assert_close(frequencies, reference.probs[0].detach(), atol=5e-3, rtol=0)


def test_deterministic_actions_are_the_modes():
    categorical = ppo.Agent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4))
    gaussian = ppo.Agent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (2,)))
    x = torch.randn(6, 3)
    torch.testing.assert_close(categorical.get_action(x, deterministic=True), categorical.actor(x).argmax(-1))
    torch.testing.assert_close(gaussian.get_action(x, deterministic=True), gaussian.actor(x))


@pytest.mark.parametrize("env_id, deterministic", [("LunarLander-v3", True), ("CartPole-v1", False)])
def test_evaluation_acts_as_the_course_unit_scores_the_env(env_id, deterministic):
    """Course unit 1 scores LunarLander with deterministic actions (SB3's evaluate_policy); unit 8 samples them."""

    class Spy:
        def get_action(self, x, deterministic=False):
            seen.add(deterministic)
            return torch.zeros(len(x), dtype=torch.long)

    seen = set()
    args = ppo.Args(env_id=env_id, gym_id=env_id)
    returns = ppo.evaluate(Spy(), args, 1, 0, torch.device("cpu"), None)
    assert len(returns) == 1 and seen == {deterministic}


def test_gaussian_policy_log_prob_and_action_clipping():
    agent = ppo.Agent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (2,)))
    x = torch.randn(4, 3)
    action = torch.randn(4, 2) * 5
    _, logprob, entropy, _ = agent.get_action_and_value(x, action)
    reference = torch.distributions.Normal(agent.actor(x), agent.actor_logstd.exp())
    torch.testing.assert_close(logprob, reference.log_prob(action).sum(-1))
    torch.testing.assert_close(entropy, reference.entropy().sum(-1))
    # actions are clipped to the bounds on the way to the env only
    clipped = ppo.env_action(action, gym.spaces.Box(-2, 2, (2,)))
    assert clipped.min() >= -2 and clipped.max() <= 2
    assert action.abs().max() > 2


# ======================================================================================================================
# The script end to end
# ======================================================================================================================


def test_smoke_run_logs_the_expected_tags(tmp_path):
    proc = run_script("ppo.py", *TINY, cwd=tmp_path)
    assert_ok(proc)
    run_dir = only_run_dir(tmp_path)
    scalars = read_scalars(run_dir)
    assert PPO_TAGS <= set(scalars)
    assert len(scalars["losses/value_loss"]) == 1024 // 256  # one point per iteration
    results = read_results(run_dir / "results.json")
    assert results["env_id"] == "CartPole-v1" and results["n_evaluation_episodes"] == 2
    assert "mean_reward=" in proc.stdout


def test_every_episode_of_every_env_is_logged(tmp_path):
    # episodes of exactly 10 steps: 4 envs x 256 steps finish 4 x 25 episodes, each of return 10 and length 10
    proc = run_script(
        "ppo.py", "--env-id", "tests.fake_envs:FixedLength-v0", *TINY, "--num-envs", 4, cwd=tmp_path, env=FAKE_ENVS
    )
    assert_ok(proc)
    scalars = read_scalars(only_run_dir(tmp_path))
    returns = [value for _, value in scalars["charts/episodic_return"]]
    lengths = [value for _, value in scalars["charts/episodic_length"]]
    assert len(returns) == 100
    assert set(returns) == {10.0} and set(lengths) == {10.0}
    steps = [step for step, _ in scalars["charts/episodic_return"]]
    assert steps.count(40) == 4  # all four envs end an episode in their 10th step


def test_panda_runs_repeat_with_the_same_seed(tmp_path):
    """panda-gym draws a fresh goal seed from the OS at every unseeded reset (each autoreset): make_env seeds them."""
    curves = []
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        proc = run_script("ppo.py", "--env-id", "PandaReachDense-v3", *TINY, "--eval-episodes", 0, cwd=tmp_path / name)
        assert_ok(proc)
        curves.append(read_scalars(only_run_dir(tmp_path / name))["charts/episodic_return"])
    assert len(curves[0]) >= 2 * 10  # 50-step episodes: every env went through several autoresets
    assert curves[0] == curves[1]


def test_save_load_evaluate_round_trip(tmp_path):
    assert_ok(run_script("ppo.py", *TINY, "--save-model", cwd=tmp_path))
    run_dir = only_run_dir(tmp_path)
    trained = read_results(run_dir / "results.json")
    model = run_dir / "model.pt"
    state_dict = torch.load(model, weights_only=True)
    assert json.loads((run_dir / "args.json").read_text())["env_id"] == "CartPole-v1"

    load_dir = tmp_path / "load"
    load_dir.mkdir()
    proc = run_script("ppo.py", "--load-model", model, "--eval-episodes", 2, cwd=load_dir)
    assert_ok(proc)
    reloaded = read_results(only_run_dir(load_dir) / "results.json")
    assert (reloaded["mean_reward"], reloaded["std_reward"]) == (trained["mean_reward"], trained["std_reward"])
    agent, _ = ppo.load_agent(str(model), torch.device("cpu"))
    for name, tensor in agent.state_dict().items():
        torch.testing.assert_close(tensor, state_dict[name])


def test_video_and_hub_package_for_a_retired_course_id(tmp_path):
    proc = run_script(
        "ppo.py", "--env-id", "LunarLander-v2", *TINY, "--capture-video", "--hub-package", "--eval-episodes", 1,
        cwd=tmp_path,
    )  # fmt: skip
    assert_ok(proc)
    assert "running LunarLander-v3" in proc.stdout
    run_dir = only_run_dir(tmp_path)
    assert list((run_dir / "videos").glob("train-episode-0.mp4"))
    assert (run_dir / "videos" / "eval" / "eval-episode-0.mp4").stat().st_size > 1000
    args = json.loads((run_dir / "args.json").read_text())
    assert (args["env_id"], args["gym_id"]) == ("LunarLander-v2", "LunarLander-v3")

    hub = run_dir / "hub"
    assert_hub_folder(hub, "ppo.py", "LunarLander-v2", "ppo")  # the course's id, not the one that ran
    torch.load(hub / "model.pt", weights_only=True)


def test_track_offline_leaves_a_wandb_run(tmp_path):
    assert_ok(run_script("ppo.py", *TINY, "--track", cwd=tmp_path, env={"WANDB_MODE": "offline"}))
    assert list((tmp_path / "wandb").glob("offline-run-*"))


# ======================================================================================================================
# Bad input: one line on stderr, non-zero exit, no traceback
# ======================================================================================================================
@pytest.mark.parametrize(
    "args, needles",
    [
        (("--env-id", "NoSuchEnv-v0"), ("unknown env id", "NoSuchEnv-v0")),
        (("--env-id", "CartPole-v7"), ("unknown env id",)),
        (("--num-minibatches", 3), ("not divisible", "--num-minibatches")),
        (("--total-timesteps", 0), ("--total-timesteps", "positive")),
        (("--total-timesteps", 100), ("less than one rollout",)),
        (("--learning-rate", -1e-3), ("--learning-rate",)),
        (("--max-grad-norm", -1), ("--max-grad-norm", "positive")),
        (("--clip-coef", 0), ("--clip-coef", "positive")),
        (("--ent-coef", -0.01), ("--ent-coef", ">= 0")),
        (("--env-id", "tests.fake_envs:MultiDiscreteAction-v0"), ("action space", "Discrete and Box")),
        (("--env-id", "tests.fake_envs:TextObservation-v0"), ("observation space",)),
        (("--load-model", "missing/model.pt"), ("does not exist",)),
        (("--hf-repo-id", "no-slash"), ("--hf-repo-id",)),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, needles):
    assert_refused("ppo.py", *args, needles=needles, cwd=tmp_path, env=FAKE_ENVS)


def test_computed_fields_are_not_options(tmp_path):
    assert_not_options("ppo.py", ["--gym-id", "--batch-size", "--minibatch-size", "--num-iterations"], tmp_path)


def test_discrete_observation_envs_train_and_evaluate(tmp_path):
    assert_discrete_observations_evaluate("ppo.py", "--total-timesteps", 1024, "--num-envs", 2, cwd=tmp_path)


def test_evaluation_of_an_env_without_a_time_limit_ends(monkeypatch):
    import tests.fake_envs  # noqa: F401  (registers NeverEnding-v0)

    monkeypatch.setattr(ppo, "MAX_EVAL_STEPS", 50)
    args = ppo.Args(env_id="NeverEnding-v0", gym_id="NeverEnding-v0")
    agent = ppo.Agent(gym.spaces.Box(0.0, np.inf, (1,)), gym.spaces.Discrete(2))
    assert ppo.evaluate(agent, args, 2, 0, torch.device("cpu"), None) == [50.0, 50.0]


def test_upload_without_a_token_stops_before_training(tmp_path):
    assert_upload_needs_a_token("ppo.py", "someone/ppo-CartPole-v1", tmp_path)


def test_corrupt_or_mismatched_model_is_refused(tmp_path):
    assert_ok(run_script("ppo.py", *TINY, "--save-model", "--eval-episodes", 0, cwd=tmp_path))
    run_dir = only_run_dir(tmp_path)
    model = run_dir / "model.pt"
    model.write_bytes(model.read_bytes()[:200])  # truncated file
    assert_clean_error(run_script("ppo.py", "--load-model", model, cwd=tmp_path), "cannot load")

    args = json.loads((run_dir / "args.json").read_text())
    torch.save({"weight": torch.zeros(3)}, model)  # a state_dict of something else
    assert_clean_error(run_script("ppo.py", "--load-model", model, cwd=tmp_path), "cannot load")

    (run_dir / "args.json").write_text(json.dumps({**args, "env_id": "Acrobot-v1"}))  # saved for another env
    torch.save(ppo.Agent(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)).state_dict(), model)
    assert_clean_error(run_script("ppo.py", "--load-model", model, cwd=tmp_path), "cannot load")

    (run_dir / "args.json").unlink()
    assert_clean_error(run_script("ppo.py", "--load-model", model, cwd=tmp_path), "args.json")


# ======================================================================================================================
# Learning: real training, fixed seeds
# ======================================================================================================================
@pytest.mark.learning
def test_cartpole_default_run_is_solved(tmp_path):
    proc = run_script("ppo.py", cwd=tmp_path)
    assert_ok(proc)
    results = read_results(only_run_dir(tmp_path) / "results.json")
    assert results["mean_reward"] >= 475, results


@pytest.mark.learning
def test_pendulum_box_actions_learn_far_past_random(tmp_path):
    # the README's Pendulum-v1 command; a uniformly random policy scores about -1,200 on Pendulum-v1
    proc = run_script("ppo.py", *PENDULUM, cwd=tmp_path)
    assert_ok(proc)
    results = read_results(only_run_dir(tmp_path) / "results.json")
    assert results["mean_reward"] >= -400, results


PENDULUM = (
    "--env-id", "Pendulum-v1", "--total-timesteps", 100_000, "--num-steps", 1024, "--gamma", 0.9,
    "--learning-rate", 1e-3, "--update-epochs", 10, "--num-minibatches", 64, "--ent-coef", 0, "--no-clip-vloss",
)  # fmt: skip


def test_random_pendulum_policy_scores_far_below_the_learning_threshold():
    env = gym.make("Pendulum-v1")
    env.action_space.seed(0)
    returns = []
    for episode in range(10):
        env.reset(seed=episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += reward
            done = terminated or truncated
        returns.append(total)
    assert np.mean(returns) < -900
