"""s2ac-lit: Stein Soft Actor-Critic (S2AC, ICLR 2024) on TorchRL and Lightning.

The package is layered (docs/architecture.md): the maths (``kernels``, ``svgd``, ``networks``,
``actor``) imports torch only; ``objectives`` holds the TorchRL loss modules, ``update`` the
training step, ``algorithms`` the registry, ``envs`` the environments (importing it registers
the multigoal ids with gymnasium), ``trainer`` the Lightning trainer and its run folders,
``analysis`` the studies, ``benchmark`` the many-run harness. Importing the package itself
loads nothing.
"""

__version__ = "0.1.0"
