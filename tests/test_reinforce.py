"""reinforce.py: returns and their standardisation by hand, the loss against the course's per-step computation,
whole episodes per env, saving and reloading, the Hub folder, learning CartPole to the course mark, and bad input."""

import json
import re

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
from torch.distributions import Categorical, Normal

import reinforce

SCRIPT = "reinforce.py"
TRAINING_TAGS = {"charts/episodic_return", "charts/episodic_length", "charts/SPS", "losses/policy_loss"}
CPU = torch.device("cpu")


# ---------------------------------------------------------------------------------------------------- pure pieces


def test_returns_by_hand():
    rewards = np.array([[1.0], [2.0], [3.0]])
    assert reinforce.discounted_returns(rewards, 0.5)[:, 0].tolist() == [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3]
    assert reinforce.discounted_returns(rewards, 1.0)[:, 0].tolist() == [6, 5, 3]
    assert reinforce.discounted_returns(rewards, 0.0)[:, 0].tolist() == [1, 2, 3]


def test_returns_of_episodes_of_different_lengths_side_by_side():
    # episode 0: 3 steps; episode 1: 1 step, then zeros (the padding after its end) keep its returns at 0
    rewards = np.array([[1.0, 4.0], [1.0, 0.0], [1.0, 0.0]])
    returns = reinforce.discounted_returns(rewards, 0.9)
    assert returns[:, 0].tolist() == pytest.approx([1 + 0.9 + 0.81, 1.9, 1.0])
    assert returns[:, 1].tolist() == [4.0, 0.0, 0.0]


def test_standardisation_matches_the_course_per_episode():
    returns = np.array([[6.0, 4.0], [5.0, 0.0], [3.0, 0.0]])
    out = reinforce.standardize(returns, np.array([3, 1]))
    course = torch.tensor([6.0, 5.0, 3.0])
    course = (course - course.mean()) / (course.std() + np.finfo(np.float32).eps.item())
    assert out[:, 0].tolist() == pytest.approx(course.tolist(), rel=1e-6)
    assert out[:, 1].tolist() == [0.0, 0.0, 0.0]  # one step: no spread; padding stays 0


def test_loss_and_gradient_equal_the_course_per_step_computation():
    """The course computes log_prob step by step with Categorical(probs) during the episode; reinforce.py scores the
    whole episode in one batched pass afterwards. Same loss, same gradient."""
    torch.manual_seed(0)
    env = gym.make("CartPole-v1")
    agent = reinforce.Agent(env.observation_space, env.action_space, 16)
    obs, actions, rewards, lengths = reinforce.play_episodes(agent, [env], 1000, CPU, [0])
    n = int(lengths[0])
    assert n < 500 and len(obs) == len(rewards) == n and rewards[:, 0].sum() == n  # terminated: the pole fell
    returns = reinforce.standardize(reinforce.discounted_returns(rewards, 1.0), lengths)

    logprobs = agent.log_prob(obs, actions)
    ours = reinforce.reinforce_loss(logprobs, torch.as_tensor(returns, dtype=torch.float32))
    ours.backward()
    our_grads = [p.grad.clone() for p in agent.parameters()]
    agent.zero_grad()

    policy_loss = []
    for t in range(n):
        probs = torch.softmax(agent.actor(obs[t, 0].unsqueeze(0)), dim=1)  # the course's forward
        log_prob = Categorical(probs).log_prob(actions[t, 0].unsqueeze(0))
        policy_loss.append(-log_prob * float(returns[t, 0]))
    course = torch.cat(policy_loss).sum()
    course.backward()
    assert ours.item() == pytest.approx(course.item(), rel=1e-5, abs=1e-6)
    for ours_grad, p in zip(our_grads, agent.parameters()):
        torch.testing.assert_close(ours_grad, p.grad, rtol=1e-4, atol=1e-6)


def test_loss_averages_episodes():
    logprobs = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]])
    returns = torch.tensor([[1.0, 2.0], [-1.0, 0.0]])
    assert reinforce.reinforce_loss(logprobs, returns).item() == pytest.approx(((1 - 0.5) + 4) / 2)


def test_gaussian_policy_for_box_actions():
    agent = reinforce.Agent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-2, 2, (2,)), 8)
    x, action = torch.randn(5, 3), torch.randn(5, 2)
    expected = Normal(agent.actor(x), 1.0).log_prob(action).sum(-1)  # log-std starts at 0
    torch.testing.assert_close(agent.log_prob(x, action), expected)
    torch.manual_seed(0)
    samples = agent.get_action(x[:1].expand(100_000, 3))
    assert samples.shape == (100_000, 2)
    torch.testing.assert_close(samples.mean(0), agent.actor(x[:1])[0].detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(samples.std(0), torch.ones(2), atol=0.02, rtol=0)


def test_categorical_samples_follow_the_policy():
    torch.manual_seed(0)
    agent = reinforce.Agent(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(4), 8)
    x = torch.randn(1, 3)
    with torch.no_grad():
        samples = agent.get_action(x.expand(200_000, 3))
        frequencies = torch.bincount(samples, minlength=4) / len(samples)
        torch.testing.assert_close(frequencies, torch.softmax(agent.actor(x)[0], -1), atol=5e-3, rtol=0)
        # Gumbel-max draws what Categorical(logits).sample() draws from the same generator: the same runs
        torch.manual_seed(1)
        ours = agent.get_action(x.expand(1000, 3))
        torch.manual_seed(1)
        assert torch.equal(ours, Categorical(logits=agent.actor(x.expand(1000, 3))).sample())


class Counter(gym.Env):
    """Ends after `length` steps (terminated) and refuses to be stepped afterwards."""

    observation_space = gym.spaces.Box(-1, 1, (1,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length, truncate=False):
        self.length, self.truncate = length, truncate

    def reset(self, *, seed=None, options=None):
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        assert self.t < self.length, "stepped after the end of its episode"
        self.t += 1
        end = self.t == self.length
        return np.full(1, self.t, np.float32), 1.0, end and not self.truncate, end and self.truncate, {}


def test_each_env_plays_exactly_one_episode():
    agent = reinforce.Agent(gym.spaces.Box(-1, 1, (1,)), gym.spaces.Discrete(2), 4)
    envs = [Counter(3), Counter(1, truncate=True), Counter(10)]
    obs, actions, rewards, lengths = reinforce.play_episodes(agent, envs, 6, CPU, [None] * 3)
    assert lengths.tolist() == [3, 1, 6]  # the third is cut by max_steps
    assert rewards.shape == (6, 3) and rewards.sum(0).tolist() == [3, 1, 6]
    assert obs[:3, 0, 0].tolist() == [0, 1, 2]  # s_t, the observation the action was taken in


# ---------------------------------------------------------------------------------------------------- whole runs


def test_smoke_save_reload_video_tracking_and_hub_folder(tmp_path):
    train_dir, load_dir = tmp_path / "train", tmp_path / "load"
    train_dir.mkdir()
    load_dir.mkdir()
    trained = run_script(SCRIPT, "--total-episodes", 20, "--eval-episodes", 3, "--track", "--capture-video",
                         "--hub-package", cwd=train_dir)  # fmt: skip
    assert_ok(trained)
    run_dir = only_run_dir(train_dir)
    scalars = read_scalars(run_dir)
    assert TRAINING_TAGS <= set(scalars)
    assert len(scalars["charts/episodic_return"]) == 20 and len(scalars["eval/episodic_return"]) == 3
    assert list((run_dir / "videos").glob("train-episode-0.mp4"))
    assert list(train_dir.glob("wandb/offline-run-*"))
    hub = run_dir / "hub"
    assert_hub_folder(hub, "reinforce.py", "CartPole-v1", "reinforce")
    torch.load(run_dir / "model.pt", weights_only=True)

    loaded = run_script(SCRIPT, "--load-model", run_dir / "model.pt", "--eval-episodes", 3, cwd=load_dir)
    assert_ok(loaded)
    assert eval_line(loaded.stdout) == eval_line(trained.stdout)
    assert not (load_dir / "wandb").exists()  # tracking is this command's choice, not the saved run's


def test_batches_of_episodes_and_box_actions(workdir):
    proc = run_script(SCRIPT, "--env-id", "Pendulum-v1", "--total-episodes", 8, "--num-envs", 4, "--gamma", 0.99,
                      "--eval-episodes", 2, "--max-steps", 50, cwd=workdir)  # fmt: skip
    assert_ok(proc)
    scalars = read_scalars(only_run_dir(workdir))
    assert len(scalars["charts/episodic_return"]) == 8 and len(scalars["losses/policy_loss"]) == 2
    assert {value for _, value in scalars["charts/episodic_length"]} == {50}  # max_steps cuts Pendulum's 200


def test_discrete_observation_envs_train_and_evaluate(workdir):
    assert_discrete_observations_evaluate(SCRIPT, "--total-episodes", 4, cwd=workdir)


def test_evaluation_of_an_env_without_a_time_limit_ends(monkeypatch):
    import tests.fake_envs  # noqa: F401  (registers NeverEnding-v0)

    monkeypatch.setattr(reinforce, "MAX_EVAL_STEPS", 50)
    agent = reinforce.Agent(gym.spaces.Box(0.0, np.inf, (1,)), gym.spaces.Discrete(2), 4)
    args = reinforce.Args(env_id="NeverEnding-v0", gym_id="NeverEnding-v0")
    assert reinforce.evaluate(agent, args, 2, 0, CPU, None) == [50.0, 50.0]
    args.max_steps = 20  # the course's max_t cuts it first
    assert reinforce.evaluate(agent, args, 2, 0, CPU, None) == [20.0, 20.0]


# ---------------------------------------------------------------------------------------------------- learning


@pytest.mark.learning
def test_default_run_passes_the_course_mark(workdir):
    """Course unit 4: CartPole-v1 with the course's hyperparameters and seed 1, mean - std >= 350 over 10 episodes;
    training stops once the last 20 episodes average 475 (CartPole-v1's reward threshold)."""
    proc = run_script(SCRIPT, cwd=workdir)
    assert_ok(proc)
    results = read_results(only_run_dir(workdir) / "results.json")
    assert results["n_evaluation_episodes"] == 10
    assert results["mean_reward"] - results["std_reward"] >= 350
    assert re.search(r"^solved: mean return \(last 20\) 4[789]\d\.\d >= 475; training stops$", proc.stdout, re.M)
    trained = re.search(r"^trained ([\d,]+) episodes \([\d,]+ steps\) in [\d.]+ s$", proc.stdout, re.M)
    assert trained and int(trained.group(1).replace(",", "")) < 1000


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--env-id", "Pixelcopter-PLE-v0"], "PLE"),
        (["--env-id", "tests.fake_envs:TextObservation-v0"], "observation space"),
        (["--total-episodes", "0"], "--total-episodes"),
        (["--max-steps", "0"], "--max-steps"),
        (["--hidden-size", "0"], "--hidden-size"),
        (["--learning-rate", "-1"], "--learning-rate"),
        (["--eval-episodes", "-1"], "--eval-episodes"),
        (["--num-envs", "3"], "multiple"),
        (["--hf-repo-id", "no-slash"], "--hf-repo-id"),
    ],
)
def test_bad_arguments_fail_before_any_work(tmp_path, monkeypatch, args, needle):
    assert_refused_in_process(reinforce, args, needle, tmp_path, monkeypatch)


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


class MultiDiscreteEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,))
    action_space = gym.spaces.MultiDiscrete([2, 3])


def test_unsupported_actions_are_one_clean_line():
    gym.register("TestReinforceMultiDiscrete-v0", entry_point=MultiDiscreteEnv)
    with pytest.raises(SystemExit) as exit_info:
        reinforce.check_spaces("TestReinforceMultiDiscrete-v0")
    assert "action space" in str(exit_info.value)


@pytest.fixture
def saved_model(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "args.json").write_text(json.dumps(vars(reinforce.Args())))
    return folder


@pytest.mark.parametrize(
    "write",
    [
        lambda path: path.write_bytes(b"not a torch file"),
        lambda path: torch.save(
            reinforce.Agent(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), 32).state_dict(), path
        ),
        lambda path: torch.save({"policy": gym.spaces.Discrete(2)}, path),
    ],
    ids=["corrupt", "wrong-hidden-size", "pickled-object"],
)
def test_bad_saved_model_is_one_clean_line(saved_model, write):
    write(saved_model / "model.pt")
    with pytest.raises(SystemExit) as exit_info:
        reinforce.load_agent(str(saved_model / "model.pt"), CPU)
    assert "cannot load" in str(exit_info.value) and "\n" not in str(exit_info.value)


def test_missing_args_json_is_one_clean_line(saved_model):
    torch.save(
        reinforce.Agent(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), 16).state_dict(), saved_model / "model.pt"
    )
    reinforce.load_agent(str(saved_model / "model.pt"), CPU)  # loads
    (saved_model / "args.json").unlink()
    with pytest.raises(SystemExit) as exit_info:
        reinforce.load_agent(str(saved_model / "model.pt"), CPU)
    assert "args.json" in str(exit_info.value)


def test_upload_without_a_token_stops_before_training(workdir):
    assert_upload_needs_a_token(SCRIPT, "someone/Reinforce-CartPole-v1", workdir)


def test_computed_fields_are_not_options(workdir):
    assert_not_options(SCRIPT, ["--gym-id", "--num-iterations"], workdir)
