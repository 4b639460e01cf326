from robopolicy.benchmarks import write_section


def test_write_section_replaces_only_its_own_section(tmp_path):
    doc = tmp_path / "b.md"
    write_section("A", "table a1", doc)
    write_section("B", "table b1", doc)
    write_section("A", "table a2", doc)
    text = doc.read_text()
    assert "table a2" in text and "table a1" not in text and "table b1" in text
    assert text.index("## A") < text.index("## B")
