"""The gateway image has no torch (nor transformers, peft, vllm): the app and the CLI must import without them.

A training-side module imported at the top of a gateway module once pulled torch in and the image's gateway
would not start; the container test found it after a 20-minute build, this test finds it in seconds."""

from __future__ import annotations

import subprocess
import sys

BLOCK = """
import importlib.abc, sys

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "peft", "vllm", "bitsandbytes", "trl"}:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the gateway image)")
        return None

sys.meta_path.insert(0, Missing())
import gateway.app, gateway.cli, gateway.loop.controller, gateway.adapters.merging
from gateway.app import create_app
from gateway.config import Settings
create_app(Settings())
print("ok")
"""


def test_the_gateway_starts_without_the_trainer_dependencies() -> None:
    found = subprocess.run([sys.executable, "-c", BLOCK], capture_output=True, text=True, timeout=120)
    assert found.returncode == 0 and found.stdout.strip().endswith("ok"), found.stderr[-3000:]
