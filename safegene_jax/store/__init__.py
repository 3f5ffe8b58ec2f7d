"""Storage below the method and training: single pytrees saved and restored with Orbax.

Orbax is imported when a tree is saved or restored, not when this package is imported.
"""

from safegene_jax.store.trees import abstract_like, restore_tree, save_tree

__all__ = ["abstract_like", "restore_tree", "save_tree"]
