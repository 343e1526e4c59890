"""Studies built on the library (docs/architecture.md §analysis): the entropy toolkit
(``entropy``), the multigoal experiment's episodes and goal metrics (``experiments``,
``goal_metrics``). The library never imports this package."""
