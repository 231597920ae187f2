"""Stage progress: bars only on a terminal, one line per stage elsewhere, no overshoot."""

from __future__ import annotations

import io
import re

from workbench.experiment.progress import Stages

# A bar's count ("80/80", or "81it" with no total), not its rate ("2222147.81it/s").
COUNTS = re.compile(r"(?<![\d.])(\d+)(?:/80|it(?!/s))")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_stream_gets_one_line_per_stage_and_no_carriage_returns():
    out = io.StringIO()
    st = Stages(True, stream=out)
    with st.stage("calibration statistics") as bar:
        cb = st.callback(bar)
        for i in range(1, 81):
            cb(i, 80)
    with st.stage("render report"):
        pass
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines[0] == "calibration statistics ..."  # a start line: a long stage is not silence
    assert lines[1].startswith("calibration statistics (80/80) done in ")
    assert lines[2] == "render report ..."
    assert lines[3].startswith("render report done in ") and len(lines) == 4


def test_plain_stream_says_a_long_stage_is_still_running():
    import time

    out = io.StringIO()
    st = Stages(True, stream=out, heartbeat_s=0.01)
    with st.stage("prepare model"):
        for _ in range(3000):  # the stage works until the heartbeat has spoken (30 s at most)
            if "still running" in out.getvalue():
                break
            time.sleep(0.01)
    lines = out.getvalue().splitlines()
    assert lines[0] == "prepare model ..." and lines[-1].startswith("prepare model done in ")
    assert any(ln.startswith("prepare model: still running, ") for ln in lines[1:-1])


def test_terminal_bar_ends_at_its_total():
    out = _Tty()
    st = Stages(True, stream=out)
    with st.stage("evaluate") as bar:
        st.callback(bar)(80, 80)
    text = out.getvalue()
    # The counts the bar drew ("80/80", or "81it" with no total), never its rate ("2222147.81it/s"
    # on a fast or a loaded machine): behaviour, not speed.
    counts = [int(n) for n in COUNTS.findall(text)]
    assert counts and max(counts) == 80 and "80/80" in text


def test_count_parser_ignores_the_rate():
    """The regex above reads counts, not rates (a rate ending in .81it/s once failed it)."""
    text = "evaluate 100%|##| 80/80 [00:00<00:00, 2222147.81it/s]"
    assert [int(n) for n in COUNTS.findall(text)] == [80]
    assert COUNTS.findall("81it [00:00, 5.00it/s]") == ["81"]


def test_disabled_is_silent():
    out = io.StringIO()
    with Stages(False, stream=out).stage("x") as bar:
        bar.n = 3
    assert out.getvalue() == ""
