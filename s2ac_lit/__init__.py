"""s2ac-lit: Stein Soft Actor-Critic (S2AC, ICLR 2024) on TorchRL and Lightning.

Importing the package registers the multigoal environments with gymnasium.
"""

from s2ac_lit import envs as envs  # registers the gymnasium ids

__version__ = "0.1.0"
