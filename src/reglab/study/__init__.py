"""Studies: a study file (TOML) compares regularization techniques over seeds.

``parse_study`` reads and checks a file without importing torch.
"""

from reglab.study.spec import StudySpec, StudySpecError, VariantSpec, parse_study
from reglab.study.sweeps import SweepSpec

__all__ = ["StudySpec", "StudySpecError", "SweepSpec", "VariantSpec", "parse_study"]
