"""Statistics a study reports: intervals over seeds, paired tests, Holm, verdicts, the 1-SE rule.

Imports numpy and scipy only, never torch.
"""

from reglab.stats.compare import (
    PairedComparison,
    Summary,
    holm,
    one_standard_error_rule,
    paired_comparison,
    summarize,
)
from reglab.stats.verdicts import MIN_SEEDS, VariantVerdict, compare_variants

__all__ = [
    "MIN_SEEDS",
    "PairedComparison",
    "Summary",
    "VariantVerdict",
    "compare_variants",
    "holm",
    "one_standard_error_rule",
    "paired_comparison",
    "summarize",
]
