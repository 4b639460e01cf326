"""Where the lerobot-written reference datasets live, and the skip reason when they are absent.

They are not in this repository: the project keeps them in its shared folder beside the checkout
(``../shared/fixtures/lerobot``, written offline by the real lerobot 0.3.2 / 0.4.4 / 0.6.1, see
its README.md). A clone without that folder skips the tests that read them."""

from __future__ import annotations

from pathlib import Path

LEROBOT_FIXTURES = (Path(__file__).parents[2] / ".." / "shared" / "fixtures" / "lerobot").resolve()


def missing_reason(path: Path) -> str:
    return (f"{path} not found: these tests read datasets written by lerobot itself, provided by the "
            f"project's shared folder ../shared/fixtures/lerobot beside the checkout (not part of the repository)")
