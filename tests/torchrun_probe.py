"""Runs ppo_atari_multigpu.py under torchrun and checks, after every optimizer step, that all processes hold the same
parameters.

    torchrun --standalone --nproc-per-node 2 tests/torchrun_probe.py REPORT_DIR [ppo_atari_multigpu.py arguments]

Each process writes REPORT_DIR/rank<R>.json: for every optimizer step, whether the parameters of all processes were
equal after it, and the checksum of its own gradient after the averaging (equal across processes when it works).
"""

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import tyro

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import ppo_atari_multigpu  # noqa: E402

report_dir, argv = Path(sys.argv[1]), sys.argv[2:]
checks = []
adam_step = torch.optim.Adam.step


def checked_step(self, *args, **kwargs):
    result = adam_step(self, *args, **kwargs)
    params = [p for group in self.param_groups for p in group["params"]]
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    grad_sum = float(sum(p.grad.double().sum() for p in params))
    checks.append(dict(equal=all(torch.equal(gathered[0], other) for other in gathered), grad_sum=grad_sum))
    return result


torch.optim.Adam.step = checked_step
args = ppo_atari_multigpu.check_args(tyro.cli(ppo_atari_multigpu.Args, args=argv))
ppo_atari_multigpu.main(args)
(report_dir / f"rank{os.environ['RANK']}.json").write_text(json.dumps(checks))
