"""The data audit: duplicates, leaks, outliers, label issues and imbalance in a data set.

:func:`run_audit` is what ``imgkit audit`` calls; the steps live in one module each
(scan, embed, neighbours, confirm, duplicates, outliers, labels, report, sheets).
"""

from imgkit.evaluate.audit.run import AuditResult, run_audit
from imgkit.evaluate.audit.thresholds import Thresholds

__all__ = ["AuditResult", "Thresholds", "run_audit"]
