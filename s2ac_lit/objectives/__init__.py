"""Loss modules (TorchRL ``LossModule`` subclasses): S2AC and the SQL baseline."""

from s2ac_lit.objectives.s2ac import S2ACLoss, S2ACPolicy
from s2ac_lit.objectives.sac import make_sac_loss
from s2ac_lit.objectives.sql import SQLLoss, SQLPolicy

__all__ = ["S2ACLoss", "S2ACPolicy", "SQLLoss", "SQLPolicy", "make_sac_loss"]
