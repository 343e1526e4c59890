"""Loss modules (TorchRL ``LossModule`` subclasses): S2AC and the SQL baseline, on a critic base.

``CriticLoss`` holds the soft critics any actor can use; ``S2ACLoss`` and ``SQLLoss`` add their
SVGD actors and take SACLoss's keywords and networks (docs/torchrl.md).
"""

from s2ac_lit.objectives.critic import CriticLoss
from s2ac_lit.objectives.s2ac import S2ACLoss, S2ACPolicy
from s2ac_lit.objectives.sac import make_sac_loss, make_sac_networks, sac_loss
from s2ac_lit.objectives.sql import SQLLoss, SQLPolicy

__all__ = [
    "CriticLoss",
    "S2ACLoss",
    "S2ACPolicy",
    "SQLLoss",
    "SQLPolicy",
    "make_sac_loss",
    "make_sac_networks",
    "sac_loss",
]
