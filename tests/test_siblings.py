"""The plumbing the scripts share is the same text in each script that does the same job, so that a fix in one is a
copy in the others: every definition named below must read alike (up to the name of the network class) in the
scripts of each group."""

import ast

import pytest
from conftest import ROOT

GYM = ("ppo.py", "a2c.py", "reinforce.py")  # gymnasium environments, one process
ATARI = ("ppo_atari.py", "ppo_atari_multigpu.py", "dqn_atari.py")  # AtariVectorEnv, checkpoints
TORCH = GYM + ATARI
ALL = TORCH + ("q_learning.py",)
SHARED = {
    "fail": [ALL],
    "describe": [ALL],
    "check_accounts": [ALL],
    "check_render": [GYM + ("q_learning.py",)],
    "StopSignal": [ALL],
    "Progress": [ALL],
    "read_saved_args": [ALL],
    "local_model": [ALL],
    "push_to_hub": [ALL],
    "report": [ALL],
    "start_run": [GYM + ("q_learning.py",), ATARI],  # a resumed Atari run writes on in its own folder
    "package_for_hub": [TORCH],
    "finish": [TORCH],
    "evaluate_saved_model": [TORCH],
    "seed_everything": [GYM + ("ppo_atari.py", "dqn_atari.py")],  # ppo_atari_multigpu.py: one GPU per process
    "layer_init": [("ppo.py", "a2c.py", "ppo_atari.py", "ppo_atari_multigpu.py")],
    "resolve_env_id": [GYM, ATARI],
    "supported_observation": [GYM],
    "check_spaces": [GYM],
    "SeededResets": [GYM],
    "quiet_stdio": [GYM],
    "make": [GYM],
    "make_env": [GYM],
    "env_action": [GYM],
    "compute_gae": [("ppo.py", "ppo_atari.py", "ppo_atari_multigpu.py", "a2c.py")],
    "ppo_loss": [("ppo.py", "ppo_atari.py", "ppo_atari_multigpu.py")],
    "VideoWriter": [ATARI],
    "AtariGames": [ATARI],
    "read_checkpoint": [ATARI],
    "resumed_args": [ATARI],
    "Checkpoints": [("ppo_atari.py", "dqn_atari.py")],  # ppo_atari_multigpu.py: all processes stop together
    "load_agent": [("ppo.py", "a2c.py"), ("ppo_atari.py", "ppo_atari_multigpu.py", "dqn_atari.py")],
}


def definitions(script: str) -> dict[str, str]:
    source = (ROOT / script).read_text()
    return {
        node.name: ast.get_source_segment(source, node).replace("QNetwork", "Agent").replace("q_network", "agent")
        for node in ast.parse(source).body
        if isinstance(node, (ast.FunctionDef, ast.ClassDef))
    }


@pytest.mark.parametrize("name", sorted(SHARED))
def test_shared_plumbing_is_one_text(name):
    for group in SHARED[name]:
        texts = {script: definitions(script).get(name) for script in group}
        missing = [script for script, text in texts.items() if text is None]
        assert not missing, f"{name} is missing from {missing}"
        versions = {}
        for script, text in texts.items():
            versions.setdefault(text, []).append(script)
        assert len(versions) == 1, f"{name} has drifted apart: {list(versions.values())}"
