"""The trainer registry: built-ins under their own names, each loaded only when asked for."""

from __future__ import annotations

import subprocess
import sys

from gentune.trainers.registry import BUILTIN_TRAINERS, get_trainer, trainer_classes


def test_each_builtin_is_registered_under_its_own_name() -> None:
    classes = trainer_classes()
    for name in BUILTIN_TRAINERS:
        assert classes[name].name == name
        trainer = get_trainer(name)
        assert trainer is not None and trainer.name == name
    assert get_trainer("no-such-trainer") is None


def test_asking_for_one_trainer_imports_no_other() -> None:
    """A Ray worker running a gan2d trial must not pay for the image trainers' imports."""
    probe = (
        "import sys\n"
        "from gentune.trainers.registry import get_trainer\n"
        "assert get_trainer('gan2d') is not None\n"
        "print(sorted(m for m in ('gentune.trainers.dcgan', 'gentune.trainers.vae',"
        " 'gentune.trainers.ddpm', 'torchmetrics') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
