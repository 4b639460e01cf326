"""robopolicy.progress: a tqdm bar on a terminal; in a log (not a TTY) a plain line at most every
interval or every 10%, with the bar's postfix, instead of one line per refresh."""

import io

from robopolicy.progress import PlainProgress, progress_bar


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_gets_plain_lines_not_a_bar():
    from tqdm.auto import tqdm

    assert isinstance(progress_bar(10, "x", stream=io.StringIO()), PlainProgress)
    bar = progress_bar(10, "x", stream=_Terminal())
    assert isinstance(bar, tqdm)
    bar.close()


def test_lines_at_each_tenth_and_at_the_interval_with_the_postfix():
    out, clock = io.StringIO(), _Clock()
    bar = PlainProgress(1000, "train", stream=out, interval_s=30.0, clock=clock)
    for i in range(1000):
        clock.t += 0.01  # 10 s in all: only the 10% marks print
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}")
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10, lines  # not one per update
    assert lines[0].startswith("train: 100/1000 (10%)") and "it/s" in lines[0]
    assert lines[-1].startswith("train: 1000/1000 (100%)") and "loss=0.0010" in lines[-1]

    out, clock = io.StringIO(), _Clock()
    bar = PlainProgress(10**6, "slow", stream=out, interval_s=30.0, clock=clock, unit="ep")
    for _ in range(100):
        clock.t += 1.0  # 100 s, far from 10%: a line each 30 s, then the final count on close
        bar.update(1)
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["30/1000000", "60/1000000", "90/1000000", "100/1000000"]
    assert "1.0 ep/s" in lines[0]


def test_resumed_count_and_write():
    out, clock = io.StringIO(), _Clock()
    with PlainProgress(10, "rec", initial=5, stream=out, clock=clock) as bar:
        clock.t = 2.0
        bar.update(1)
        bar.write("warning: something")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("rec: 6/10 (60%) 0.5 it/s") and lines[1] == "warning: something"
    assert len(lines) == 2  # close adds nothing: the count was already shown


def test_disabled_prints_nothing():
    out = io.StringIO()
    bar = progress_bar(10, "x", disable=True, stream=out)
    bar.update(10)
    bar.close()
    assert out.getvalue() == ""
