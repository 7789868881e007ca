from pathlib import Path

import pytest

from gateway.config import ConfigError, decode_settings, encode_settings, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "driftgate.yaml"
    path.write_text(text)
    return path


def test_yaml_file_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 9001\nmodels:\n  - name: m\n    backends: [http://a:1, http://b:2]\n")
    settings = load_settings(path, environ={})
    assert settings.port == 9001
    assert settings.models[0].backends == ["http://a:1", "http://b:2"]
    assert settings.models[0].upstream_model == "m"


def test_env_overrides_scalars_nested_values_and_lists(tmp_path: Path) -> None:
    path = write(tmp_path, "port: 9001\ntimeouts:\n  connect_s: 1\n")
    settings = load_settings(
        path,
        environ={
            "DRIFTGATE_PORT": "9100",
            "DRIFTGATE_TIMEOUTS__READ_S": "7.5",
            "DRIFTGATE_EMBEDDED__PORT": "8123",
            "DRIFTGATE_MODELS": "[{name: x, backends: ['http://h:1'], upstream_name: y}]",
            "UNRELATED": "1",
        },
    )
    assert settings.port == 9100
    assert settings.timeouts.connect_s == 1
    assert settings.timeouts.read_s == 7.5
    assert settings.embedded.port == 8123
    assert settings.models[0].upstream_model == "y"


def test_defaults_without_file() -> None:
    settings = load_settings(None, environ={})
    assert settings.host == "127.0.0.1"
    assert settings.models == []


@pytest.mark.parametrize(
    ("text", "environ", "fragment"),
    [
        ("port: nope\n", {}, "port"),
        ("bogus_key: 1\n", {}, "bogus_key"),
        ("- a\n- b\n", {}, "mapping"),
        ("port: [1\n", {}, "cannot read"),
        ("", {"DRIFTGATE_TIMEOUTS__READ_S": "abc"}, "read_s"),
    ],
)
def test_invalid_config_is_a_clear_error(tmp_path: Path, text: str, environ: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings(write(tmp_path, text), environ=environ)


def test_settings_survive_the_hand_over_to_workers(tmp_path: Path) -> None:
    path = write(tmp_path, "models:\n  - name: m\n    backends: [http://a:1]\n    embeddings: true\n")
    settings = load_settings(path, environ={})
    assert decode_settings(encode_settings(settings)) == settings


def test_every_yaml_example_in_the_readme_is_a_valid_config(tmp_path: Path) -> None:
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    examples = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    assert len(examples) >= 2
    for example in examples:
        load_settings(write(tmp_path, example), environ={})
