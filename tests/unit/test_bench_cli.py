"""``driftgate bench``: lists the benchmarks of bench/ and runs one with its arguments, from a checkout's root."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.host.bench_cli import BENCHES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


def test_lists_every_benchmark_with_what_it_measures(at_root) -> None:
    result = CliRunner().invoke(app, ["bench"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in BENCHES:
        assert name in result.output
    assert "Guards benchmark: PII precision/recall" in result.output


def test_runs_a_benchmark_as_its_own_process_with_the_arguments_given(at_root, capfd) -> None:
    runner = CliRunner()
    # The benchmark's own argument parser answers (in the child process): its usage, and its refusal.
    assert runner.invoke(app, ["bench", "guards", "--", "--help"]).exit_code == 0
    assert "usage: guards.py" in capfd.readouterr().out
    assert runner.invoke(app, ["bench", "guards", "--no-such-option"]).exit_code == 2
    assert "unrecognized arguments: --no-such-option" in capfd.readouterr().err


def test_unknown_names_and_a_missing_checkout_are_refused(at_root, tmp_path: Path, monkeypatch) -> None:
    unknown = CliRunner().invoke(app, ["bench", "nope"])
    assert unknown.exit_code == 2 and "one of: gateway" in unknown.output
    monkeypatch.chdir(tmp_path)
    elsewhere = CliRunner().invoke(app, ["bench"])
    assert elsewhere.exit_code == 2 and "source repository" in elsewhere.output
