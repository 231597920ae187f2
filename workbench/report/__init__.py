"""Self-contained HTML report of a run, rendered only from its result records.

Example::

    from workbench.report import render_report

    render_report("reports/20250101-120000-rotten_tomatoes")  # -> .../report.html
"""

from workbench.report.render import render_report

__all__ = ["render_report"]
