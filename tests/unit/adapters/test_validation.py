"""Which adapters a route accepts: its model by Hub id, by a local copy, by served name, or as the operator states."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from gateway.config import AdaptersSettings, ModelRoute, state_url
from gateway.security.keys import KeyStore
from tests.conftest import running_gateway, settings_for

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def local_copy(directory: Path, name_or_path: str) -> str:
    """A model directory as transformers saves one: its config.json names where it came from."""
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"_name_or_path": name_or_path, "model_type": "llama"}))
    return str(directory)


async def register_all(tmp_path: Path, upstream_url: str, route: ModelRoute, bases: dict[str, str], adapter_dir):
    """Register an adapter on each base through the real admin API (keys on); the replies by adapter name."""
    config = AdaptersSettings(url=f"sqlite:///{tmp_path / 'registry.db'}", poll_s=0.1, reconcile_s=0.2)
    settings = settings_for(route, home=str(tmp_path), adapters=config)
    keys = KeyStore(state_url(settings))
    _, admin = keys.create("ops", "admin")
    keys.close()
    replies = {}
    async with running_gateway(settings) as client:
        for name, base in bases.items():
            body = {"alias": name, "weights": adapter_dir(name, base_model_name_or_path=base), "base_model": route.name}
            replies[name] = await client.post(
                "/admin/adapters/", json=body, headers={"authorization": f"Bearer {admin}"}
            )
        listing = (await client.get("/admin/adapters/", headers={"authorization": f"Bearer {admin}"})).json()
    return replies, {alias["name"] for alias in listing["aliases"]}


async def test_serve_route_by_hub_id_takes_adapters_on_that_id_or_a_local_copy(
    tmp_path: Path, upstreams, adapter_dir: Callable[..., str]
) -> None:
    fake = await upstreams(HUB_ID)
    route = ModelRoute("smol", [fake.url], upstream_name=HUB_ID, max_lora_rank=16)
    renamed_copy = local_copy(tmp_path / "checkpoints" / "base-v1", HUB_ID)
    replies, registered = await register_all(
        tmp_path,
        fake.url,
        route,
        {
            "hub": HUB_ID,
            "copy": "/srv/models/SmolLM2-135M-Instruct/",  # a local copy under the model's own name
            "renamed": renamed_copy,  # a local copy under another name: its config.json tells
            "served": "smol",
            "other": "Qwen/Qwen2.5-0.5B-Instruct",
        },
        adapter_dir,
    )
    for name in ("hub", "copy", "renamed", "served"):
        assert replies[name].status_code == 201, (name, replies[name].text)
    refused = replies["other"]
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid_adapter" and error["param"] == "weights"
    assert "Qwen/Qwen2.5-0.5B-Instruct" in error["message"] and HUB_ID in error["message"]
    assert "base_model:" in error["message"]  # how to say the route does serve it
    assert registered == {"hub", "copy", "renamed", "served"}  # the refusal changed nothing


async def test_base_model_states_what_a_route_serves_when_the_names_differ(
    tmp_path: Path, upstreams, adapter_dir: Callable[..., str]
) -> None:
    fake = await upstreams("chat-v2")
    # vLLM serves a local directory under a name of the operator's choosing: nothing in the names says Qwen.
    route = ModelRoute("chat", [fake.url], upstream_name="chat-v2", base_model="Qwen/Qwen2.5-0.5B-Instruct")
    replies, registered = await register_all(
        tmp_path,
        fake.url,
        route,
        {"qwen": "Qwen/Qwen2.5-0.5B-Instruct", "llama": "meta-llama/Llama-3.2-1B-Instruct"},
        adapter_dir,
    )
    assert replies["qwen"].status_code == 201, replies["qwen"].text
    assert replies["llama"].status_code == 400 and registered == {"qwen"}
