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
    assert lines[0].startswith("calibration statistics (80/80) done in ")
    assert lines[1].startswith("render report done in ") and len(lines) == 2


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
