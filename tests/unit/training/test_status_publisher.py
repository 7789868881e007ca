"""What a training run tells its job runner: each change of phase and step, stamped, in order."""

from __future__ import annotations

from pathlib import Path

import msgspec

from training.run import StatusPublisher
from training.status import Progress
from training.trainer import StepReport


def test_each_change_is_published_as_a_stamped_copy_in_order() -> None:
    seen: list[Progress] = []
    publisher = StatusPublisher(12, lambda status: seen.append(msgspec.structs.replace(status)))

    publisher.phase("preparing")
    publisher.phase("training", eval_loss=2.5)
    publisher.step(StepReport(step=1, total_steps=12, loss=2.123456, tokens_per_s=812.345))
    publisher.step(StepReport(4, 12, 1.9, 800.0, eval_loss=1.876543, best_eval_loss=1.876543))
    publisher.phase("evaluating")
    publisher.succeeded(Path("/runs/x/run.json"))

    assert [s.phase for s in seen] == ["preparing", "training", "training", "training", "evaluating", "done"]
    assert all(s.total_steps == 12 for s in seen)
    assert seen[1].eval_loss == 2.5 and seen[1].step == 0
    # A step without an evaluation keeps the last evaluation's numbers.
    assert (seen[2].step, seen[2].loss, seen[2].tokens_per_s, seen[2].eval_loss) == (1, 2.12346, 812.3, 2.5)
    assert (seen[3].eval_loss, seen[3].best_eval_loss) == (1.87654, 1.87654)
    assert [s.state for s in seen] == ["running"] * 5 + ["succeeded"]
    assert seen[-1].run_record == "/runs/x/run.json" and seen[-1].step == 4
    stamps = [s.updated_at for s in seen]
    assert stamps == sorted(stamps) and stamps[0] > 0


def test_without_a_listener_the_status_still_moves() -> None:
    publisher = StatusPublisher(3, None)
    publisher.phase("baseline")
    assert publisher.status.phase == "baseline" and publisher.status.updated_at > 0
