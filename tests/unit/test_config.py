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


def test_the_projects_own_variables_are_not_settings_and_unknown_ones_only_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {
        "DRIFTGATE_API_KEY": "dg_abc_def",
        "DRIFTGATE_ADMIN_KEY_FILE": "./admin-key",
        "DRIFTGATE_CONFIG": str(tmp_path / "elsewhere.yaml"),
        "DRIFTGATE_SUPERVISOR_PID": "1",
        "DRIFTGATE_PROT": "9100",  # a typo of PORT
        "DRIFTGATE_TIMEOUTS__READ_SECONDS": "3",  # a field that does not exist in a section that does
        "DRIFTGATE_AUTH__CACHE_TTL_S": "0.5",
        "DRIFTGATE_DRIFT__DETECTION__METHOD__THRESHOLD": "0.02",
        "DRIFTGATE_REQUEST_LOG__URL": "sqlite:///x.db",
    }
    with caplog.at_level("WARNING", logger="gateway.config"):
        settings = load_settings(write(tmp_path, "port: 9001\n"), environ=environ)
    assert settings.port == 9001 and settings.timeouts.read_s == 120.0
    assert settings.auth.cache_ttl_s == 0.5
    assert settings.drift.detection.method.threshold == 0.02
    assert settings.request_log is not None and settings.request_log.url == "sqlite:///x.db"
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "DRIFTGATE_PROT" in warned and "DRIFTGATE_TIMEOUTS__READ_SECONDS" in warned
    for own in ("API_KEY", "ADMIN_KEY_FILE", "CONFIG", "SUPERVISOR_PID"):
        assert f"DRIFTGATE_{own}" not in warned


def test_every_settings_field_has_its_override_name() -> None:
    """Derived from the structs, so a field added to any section is overridable without a list to update."""
    import msgspec

    from gateway.config import NOT_SETTINGS, Settings, setting_env_names

    names = setting_env_names()
    assert names["DRIFTGATE_EMBEDDED__CPU_KVCACHE_GIB"] == ("embedded", "cpu_kvcache_gib")
    assert names["DRIFTGATE_LOOP__DEFAULT__CANARY__SHARE"] == ("loop", "default", "canary", "share")
    for field in msgspec.structs.fields(type(Settings().auth)):
        assert f"DRIFTGATE_AUTH__{field.encode_name.upper()}" in names
    assert not set(names) & set(NOT_SETTINGS)


def test_commands_run_with_the_documented_variables_set(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "DRIFTGATE_HOME": str(tmp_path),
        "DRIFTGATE_API_KEY": "dg_abc_def",
        "DRIFTGATE_ADMIN_KEY_FILE": "./admin-key",
        "DRIFTGATE_NOT_A_THING": "1",
    }
    env.pop("DRIFTGATE_CONFIG", None)
    listed = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "keys", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    assert "API keys" in listed.stderr and "ignoring DRIFTGATE_NOT_A_THING" in listed.stderr
    assert "DRIFTGATE_API_KEY" not in listed.stderr


def test_the_getting_started_config_is_valid(tmp_path: Path) -> None:
    import re

    guide = (Path(__file__).resolve().parents[2] / "docs" / "getting-started.md").read_text()
    (config,) = re.findall(r"cat > driftgate.yaml <<'EOF'\n(.*?)\nEOF", guide, re.S)
    settings = load_settings(write(tmp_path, config), environ={})
    assert settings.loop is not None and "support" in settings.loop.aliases
