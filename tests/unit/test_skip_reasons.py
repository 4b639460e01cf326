"""Tests that need the lerobot-written fixtures say, when skipped, which path is missing and
what provides it; the README's test section says the same."""

from pathlib import Path

from shared_fixtures import LEROBOT_FIXTURES, missing_reason

ROOT = Path(__file__).resolve().parents[2]


def test_skip_reason_names_the_path_and_its_provider():
    reason = missing_reason(LEROBOT_FIXTURES / "v30_video_lerobot061")
    assert str(LEROBOT_FIXTURES / "v30_video_lerobot061") in reason
    assert "written by lerobot" in reason and "../shared/fixtures/lerobot beside the checkout" in reason
    for name in ("test_lerobot_fixtures.py", "test_data_writer.py"):
        assert "reason=missing_reason(" in (ROOT / "tests" / "unit" / name).read_text(), name


def test_readme_test_section_mentions_the_fixtures():
    readme = (ROOT / "README.md").read_text()
    tests = readme[readme.index("\n## Tests\n"):]
    assert "../shared/fixtures/lerobot" in tests and "skipped" in tests
