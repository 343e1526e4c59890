"""Loss modules (TorchRL ``LossModule`` subclasses): S2AC and the SQL baseline."""

from s2ac_lit.objectives.s2ac import S2ACLoss, S2ACPolicy

__all__ = ["S2ACLoss", "S2ACPolicy"]
