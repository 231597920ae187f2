"""Stage progress: bars only on a terminal, one line per stage elsewhere, no overshoot."""

from __future__ import annotations

import io

from workbench.experiment.progress import Stages


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
    assert "80/80" in text and "81/80" not in text and "81it" not in text


def test_disabled_is_silent():
    out = io.StringIO()
    with Stages(False, stream=out).stage("x") as bar:
        bar.n = 3
    assert out.getvalue() == ""
