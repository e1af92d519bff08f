"""The population engine: many models of one structure, trained together."""

from reglab.engine.data import PerMember
from reglab.engine.early_stopping import EarlyStoppingRule, EarlyStoppingState, is_improvement
from reglab.engine.member import Member
from reglab.engine.population import MemberResult, Population, PopulationResult

__all__ = ["EarlyStoppingRule", "EarlyStoppingState", "Member", "MemberResult", "PerMember",
           "Population", "PopulationResult", "is_improvement"]
