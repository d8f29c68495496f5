"""q_learning.py: the update rule by hand, the fast env against gymnasium's, learning on the course's defaults,
saving and reloading, the Hub folder, and bad input."""

import json
import os
import pickle
import random
import re
from collections import Counter

import gymnasium as gym
import numpy as np
import pytest
from conftest import (
    assert_clean_error,
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

import q_learning

SCRIPT = "q_learning.py"
TRAINING_TAGS = {"charts/episodic_return", "charts/episodic_length", "charts/epsilon", "charts/SPS"}


# ---------------------------------------------------------------------------------------------------- pure pieces


def test_epsilon_decays_exponentially_from_max_to_min():
    assert q_learning.epsilon(0, 0.05, 1.0, 0.005) == 1.0
    assert q_learning.epsilon(100, 0.05, 1.0, 0.005) == pytest.approx(0.05 + 0.95 * 0.6065306597)
    assert q_learning.epsilon(10_000, 0.05, 1.0, 0.005) == pytest.approx(0.05)


def test_greedy_action_breaks_ties_towards_the_lowest_action():
    assert q_learning.greedy_action([0.0, 2.0, 2.0, 1.0]) == 1
    assert [q_learning.greedy_action([0.0] * 4) for _ in range(5)] == [0] * 5
    assert q_learning.greedy_action([-1.0, -3.0, -1.0]) == 0


def test_q_update_bootstraps_from_a_non_terminal_next_state():
    q = [[0.5, 0.0], [0.2, 0.8]]
    q_learning.q_update(q, 0, 0, 1.0, 1, False, learning_rate=0.7, gamma=0.95)
    # 0.5 + 0.7 * (1 + 0.95 * 0.8 - 0.5)
    assert q == [[pytest.approx(1.382), 0.0], [0.2, 0.8]]


def test_q_update_does_not_bootstrap_from_a_terminal_state():
    q = [[0.5, 0.0], [0.2, 0.8]]
    q_learning.q_update(q, 0, 0, 1.0, 1, True, learning_rate=0.7, gamma=0.95)
    assert q == [[pytest.approx(0.85), 0.0], [0.2, 0.8]]  # 0.5 + 0.7 * (1 - 0.5)


class Chain:
    """0 -> 1 -> 2 (terminal), reward 1 a step, whatever the action; optionally a time limit of its own."""

    def __init__(self, truncate_after=None):
        self.truncate_after = truncate_after

    def reset(self):
        self.s = self.t = 0
        return 0, {}

    def step(self, action):
        self.s, self.t = self.s + 1, self.t + 1
        return self.s, 1.0, self.s == 2, self.t == self.truncate_after, {}


def chain_q():
    # Q(1, .) and Q(2, .) preset so that bootstrapping shows; greedy from 0 and 1 is action 0
    return [[0.0, 0.0], [2.0, 0.0], [5.0, 5.0]]


def test_run_episode_terminated_is_not_bootstrapped():
    q = chain_q()
    assert q_learning.run_episode(q, Chain(), 0.0, 10, 0.5, 0.9, random.Random(0)) == (2.0, 2)
    assert q[0][0] == pytest.approx(1.4)  # 0 + 0.5 * (1 + 0.9 * 2.0 - 0)
    assert q[1][0] == pytest.approx(1.5)  # 2.0 + 0.5 * (1 - 2.0): Q(2, .) = 5 is ignored


@pytest.mark.parametrize("max_steps, env", [(1, Chain()), (10, Chain(truncate_after=1))], ids=["own", "env's"])
def test_run_episode_truncated_is_bootstrapped(max_steps, env):
    q = chain_q()
    assert q_learning.run_episode(q, env, 0.0, max_steps, 0.5, 0.9, random.Random(0)) == (1.0, 1)
    assert q[0][0] == pytest.approx(1.4)  # 0 + 0.5 * (1 + 0.9 * max Q(1, .) - 0)
    assert q[1] == [2.0, 0.0]


def test_evaluate_is_greedy_capped_and_uses_the_seeds_in_order():
    # FrozenLake 4x4: down, down, right, down, right, right reaches the goal
    q = [[0.0] * 4 for _ in range(16)]
    for s, a in ((0, 1), (4, 1), (8, 2), (9, 1), (13, 2), (14, 2)):
        q[s][a] = 1.0
    env = gym.make("FrozenLake-v1", is_slippery=False, max_episode_steps=10_000)
    assert q_learning.evaluate(env, q, 3, 99, []) == [1.0, 1.0, 1.0]
    assert q_learning.evaluate(env, [[0.0] * 4] * 16, 1, 99, []) == [0.0]  # LEFT forever: stops at max_steps

    seeds_seen = []
    env.reset = lambda seed=None: (seeds_seen.append(seed), (0, {}))[1]
    q_learning.evaluate(env, q, 3, 99, [16, 54])
    assert seeds_seen == [16, 54, None]


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("Taxi-v4", {}),
        ("FrozenLake-v1", dict(is_slippery=False)),
        ("FrozenLake-v1", dict(map_name="8x8", is_slippery=False)),
        ("CliffWalking-v1", {}),
    ],
)
def test_table_env_steps_like_gymnasium(env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    s, _ = env.reset(seed=0)
    table = q_learning.TableEnv(env)
    table.s = s
    actions = random.Random(0)
    for _ in range(2000):
        a = actions.randrange(env.action_space.n)
        expected = env.step(a)[:3]
        assert table.step(a)[:4] == (*expected, False)
        if expected[2]:
            table.s, _ = env.reset()


def test_table_env_samples_slippery_moves_and_start_states_from_the_env_tables():
    env = gym.make("FrozenLake-v1", is_slippery=True)
    env.reset(seed=0)
    table = q_learning.TableEnv(env)
    counts = Counter()
    for _ in range(3000):
        table.s = 6  # state 6, action RIGHT: 2, 7 or 10 with probability 1/3 each
        counts[table.step(2)[0]] += 1
    assert set(counts) == {2, 7, 10} and all(900 < n < 1100 for n in counts.values())

    taxi = gym.make("Taxi-v4")
    taxi.reset(seed=0)
    table = q_learning.TableEnv(taxi)
    starts = Counter(table.reset()[0] for _ in range(3000))
    assert all(taxi.unwrapped.initial_state_distrib[s] > 0 for s in starts) and len(starts) > 250


class Corridor(gym.Env):
    """Walk right (action 1) from 0 to 4: any gymnasium env with Discrete spaces, stepped through gymnasium."""

    observation_space = gym.spaces.Discrete(5)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.s = 0
        return 0, {}

    def step(self, action):
        self.s = max(0, self.s + (1 if action == 1 else -1))
        return self.s, float(self.s == 4), self.s == 4, False, {}


def test_any_discrete_env_trains_through_gymnasium(tmp_path, monkeypatch):
    gym.register("TestCorridor-v0", entry_point=Corridor, max_episode_steps=50)
    monkeypatch.chdir(tmp_path)
    args = q_learning.Args(env_id="TestCorridor-v0", total_episodes=300, eval_episodes=5, save_model=True)
    q_learning.main(q_learning.check_args(args))
    run_dir = only_run_dir(tmp_path)
    assert read_results(run_dir / "results.json")["mean_reward"] == 1.0
    assert np.load(run_dir / "qtable.npy").shape == (5, 2)


# ---------------------------------------------------------------------------------------------------- whole runs


def read_card(hub_dir):
    card = (hub_dir / "README.md").read_text()
    front_matter = card.split("---")[1]
    return card, front_matter


@pytest.mark.learning
def test_frozenlake_defaults_solve_it_and_the_saved_table_evaluates_the_same(tmp_path):
    train_dir, load_dir = tmp_path / "train", tmp_path / "load"
    train_dir.mkdir()
    load_dir.mkdir()
    trained = run_script(SCRIPT, "--save-model", cwd=train_dir)
    assert_ok(trained)
    run_dir = only_run_dir(train_dir)
    results = read_results(run_dir / "results.json")
    assert (results["mean_reward"], results["std_reward"], results["n_evaluation_episodes"]) == (1.0, 0.0, 100)
    saved_args = read_results(run_dir / "args.json")
    assert saved_args | dict(total_episodes=10_000, decay_rate=0.0005, learning_rate=0.7, map_name="4x4") == saved_args
    assert saved_args["is_slippery"] is False
    scalars = read_scalars(run_dir)
    assert TRAINING_TAGS <= set(scalars)
    assert len(scalars["eval/episodic_return"]) == 100
    assert len(scalars["charts/episodic_return"]) == 250
    assert re.search(r"^episode 10,000/10,000 \(100%\) \| ", trained.stdout, re.M), trained.stdout

    loaded = run_script(SCRIPT, "--load-model", run_dir / "qtable.npy", "--hub-package", cwd=load_dir)
    assert_ok(loaded)
    assert "trained" not in loaded.stdout
    assert eval_line(loaded.stdout) == eval_line(trained.stdout)
    hub_dir = only_run_dir(load_dir) / "hub"
    _, front_matter = read_card(hub_dir)
    assert "- FrozenLake-v1-4x4-no_slippery" in front_matter and "value: 1.00 +/- 0.00" in front_matter
    with open(hub_dir / "q-learning.pkl", "rb") as f:
        model = pickle.load(f)  # the course's loader; q_learning.py itself never unpickles
    assert (model["env_id"], model["map_name"], model["slippery"]) == ("FrozenLake-v1", "4x4", False)
    assert model["eval_seed"] == []
    np.testing.assert_array_equal(model["qtable"], np.load(run_dir / "qtable.npy"))
    course = run_script(SCRIPT, "--load-model", hub_dir / "q-learning.pkl", cwd=tmp_path)  # as a classmate's model
    assert_ok(course)
    assert eval_line(course.stdout) == eval_line(trained.stdout)


@pytest.mark.parametrize("slippery, expected", [({}, True), ({"slippery": False}, False)])
def test_a_course_pickle_names_its_ice_as_the_course_writes_it(tmp_path, slippery, expected):
    """The course's push_to_hub writes "slippery" only for ice that is not slippery (FrozenLake's default is)."""
    model = dict(env_id="FrozenLake-v1", map_name="4x4", max_steps=99, n_training_episodes=10000, n_eval_episodes=100,
                 learning_rate=0.7, gamma=0.95, max_epsilon=1.0, min_epsilon=0.05, decay_rate=0.0005, eval_seed=[],
                 qtable=np.zeros((16, 4)), **slippery)  # fmt: skip
    path = tmp_path / "q-learning.pkl"
    path.write_bytes(pickle.dumps(model))
    _, args = q_learning.read_course_model(str(path))
    assert (args.map_name, args.is_slippery) == ("4x4", expected)


def test_a_course_pickle_that_would_run_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'ran'}",)

    path = tmp_path / "q-learning.pkl"
    path.write_bytes(pickle.dumps({"env_id": "Taxi-v3", "max_steps": 99, "qtable": Exploit()}))
    assert_clean_error(run_script(SCRIPT, "--load-model", path, cwd=tmp_path), "system", "not a plain type")
    assert not (tmp_path / "ran").exists()


def course_evaluate_agent(env, max_steps, n_eval_episodes, Q, seed):
    """The course notebook's evaluate_agent, as its push_to_hub and the course's readers run it."""
    episode_rewards = []
    for episode in range(n_eval_episodes):
        state, info = env.reset(seed=seed[episode]) if seed else env.reset()
        total_rewards_ep = 0
        for step in range(max_steps):
            state, reward, terminated, truncated, info = env.step(np.argmax(Q[state][:]))
            total_rewards_ep += reward
            if terminated or truncated:
                break
        episode_rewards.append(total_rewards_ep)
    return np.mean(episode_rewards), np.std(episode_rewards)


@pytest.mark.learning
def test_taxi_v3_defaults_pass_the_course_mark_and_package_for_the_hub(workdir):
    proc = run_script(SCRIPT, "--env-id", "Taxi-v3", "--hub-package", cwd=workdir)
    assert_ok(proc)
    assert len([line for line in proc.stdout.splitlines() if "Taxi-v4" in line]) == 1
    run_dir = only_run_dir(workdir)
    assert run_dir.name.startswith("Taxi-v3__q_learning__1__")
    results = read_results(run_dir / "results.json")
    assert results["env_id"] == "Taxi-v3"
    assert results["mean_reward"] - results["std_reward"] >= 4.5
    assert eval_line(proc.stdout).endswith("(passes the pass mark 4.5)")
    saved_args = read_results(run_dir / "hub" / "args.json")
    assert (saved_args["env_id"], saved_args["total_episodes"], saved_args["decay_rate"]) == ("Taxi-v3", 25_000, 0.005)

    hub_dir = run_dir / "hub"
    assert {p.name for p in hub_dir.iterdir()} == {
        "README.md", "results.json", "replay.mp4", "qtable.npy", "args.json", "q_learning.py", "q-learning.pkl"
    }  # fmt: skip
    assert (hub_dir / "replay.mp4").stat().st_size > 1000
    card, front_matter = read_card(hub_dir)
    for line in ("- Taxi-v3", "name: Taxi-v3", "type: Taxi-v3", "- q-learning", "- deep-rl-course"):
        assert line in front_matter
    assert f"value: {results['mean_reward']:.2f} +/- {results['std_reward']:.2f}" in front_matter

    with open(hub_dir / "q-learning.pkl", "rb") as f:
        model = pickle.load(f)  # the course's loader; q_learning.py itself never unpickles
    expected_keys = {"env_id", "max_steps", "n_training_episodes", "n_eval_episodes", "eval_seed", "learning_rate",
                     "gamma", "max_epsilon", "min_epsilon", "decay_rate", "qtable"}  # fmt: skip
    assert set(model) == expected_keys
    assert (model["env_id"], model["n_training_episodes"], len(model["eval_seed"])) == ("Taxi-v3", 25_000, 100)
    env = gym.make("Taxi-v4")  # the course would make model["env_id"]; gymnasium 1.4 only has Taxi-v4
    mean, std = course_evaluate_agent(
        env, model["max_steps"], model["n_eval_episodes"], model["qtable"], model["eval_seed"]
    )
    assert (mean, std) == pytest.approx((results["mean_reward"], results["std_reward"]))


def test_other_discrete_env_with_tracking_and_video(workdir):
    proc = run_script(SCRIPT, "--env-id", "CliffWalking-v1", "--total-episodes", "300", "--eval-episodes", "3",
                      "--track", "--capture-video", cwd=workdir)  # fmt: skip
    assert_ok(proc)
    run_dir = only_run_dir(workdir)
    assert TRAINING_TAGS <= set(read_scalars(run_dir))
    assert (run_dir / "videos" / "eval" / "eval-episode-0.mp4").exists()  # the first evaluation episode
    assert list((workdir / "wandb").glob("offline-run-*"))


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.fixture
def saved_model(tmp_path):
    """A folder with a valid args.json for FrozenLake 4x4; tests put a qtable.npy next to it."""
    folder = tmp_path / "model"
    folder.mkdir()
    args = vars(q_learning.check_args(q_learning.Args()))
    (folder / "args.json").write_text(json.dumps(args))
    return folder


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--env-id", "CartPole-v1"], "Discrete"),
        (["--env-id", "NoSuchEnv-v0"], "unknown env id"),
        (["--env-id", "Taxi-v9"], "unknown env id"),
        (["--total-episodes", "0"], "--total-episodes"),
        (["--eval-episodes", "-5"], "--eval-episodes"),
        (["--learning-rate", "0"], "--learning-rate"),
        (["--gamma", "1.5"], "--gamma"),
        (["--min-epsilon", "0.5", "--max-epsilon", "0.1"], "--min-epsilon"),
        (["--env-id", "Taxi-v3", "--is-slippery"], "FrozenLake option"),
        (["--map-name", "5x5"], "cannot make"),
        (["--load-model", "nowhere/qtable.npy"], "does not exist"),
    ],
)
def test_bad_input_is_one_clean_line(workdir, args, needle):
    assert_refused(SCRIPT, *args, needles=(needle,), cwd=workdir)


@pytest.mark.parametrize(
    "write, needle",
    [
        (lambda path: path.write_bytes(b"not a numpy file"), "cannot load"),
        (lambda path: np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True), "cannot load"),
        (lambda path: np.save(path, np.zeros((500, 6))), "shape"),
        (lambda path: None, "does not exist"),
    ],
    ids=["corrupt", "pickled", "wrong-shape", "missing"],
)
def test_bad_saved_model_is_one_clean_line(workdir, saved_model, write, needle):
    write(saved_model / "qtable.npy")
    proc = run_script(SCRIPT, "--load-model", saved_model / "qtable.npy", cwd=workdir)
    assert_clean_error(proc, needle)
    assert not (workdir / "runs").exists()


def test_saved_model_without_its_args_json_is_one_clean_line(workdir, saved_model):
    np.save(saved_model / "qtable.npy", np.zeros((16, 4)))
    (saved_model / "args.json").unlink()
    assert_refused(SCRIPT, "--load-model", saved_model / "qtable.npy", needles=("args.json",), cwd=workdir)


def test_upload_without_a_token_stops_before_training(workdir):
    assert_upload_needs_a_token(SCRIPT, "someone/q-FrozenLake", workdir)


def test_computed_fields_are_not_options(workdir):
    assert_not_options(SCRIPT, ["--gym-id"], workdir)
