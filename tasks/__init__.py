"""The built-in task adapters, one package each. Their ``__init__`` stays light; components load in build."""
