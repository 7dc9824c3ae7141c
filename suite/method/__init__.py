"""The method: the weight averager, the none/ema/sema semantics, the mmengine hooks that apply them, and
the weights a checkpoint holds."""
