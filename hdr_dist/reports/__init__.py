"""The report: terminal and HTML tables, the figures, report.html."""
