"""Hierarchical data distillation (paper Sec. IV, Fig. 7-9) and classification by distilled references.

* :func:`distill_hierarchy`: D0 -> D1 -> ... -> DL along a schedule of k-to-1 mappings (:data:`SCHEDULES`),
  every level one batched Distribution-Matching problem with the loss of Eq. 5 (or ArcFace).
* :class:`EmbeddingNet`: the random embedding net of Fig. 8.
* :func:`eq5_loss`, :func:`arcface_loss`: the losses for all subsets of a level at once.
* :func:`resnet18`, :func:`resnet50`, :func:`train_classifier`, :func:`classify_by_references`: Sec. IV's
  evaluation by cosine similarity to the references.
"""

from .embedding import EmbeddingNet, first_padding, net_pool
from .hierarchy import Level, distill_hierarchy
from .level import DistillConfig, LevelOutput, distill_level, initial_references
from .losses import SubsetStats, arcface_loss, check_lambda, eq5_distances, eq5_loss, padded_index, subset_stats
from .reference import classify_by_references, embed_all, train_classifier
from .resnet import ResNet, resnet18, resnet50
from .schedule import SCHEDULES, Partition, check_class_sizes, check_mappings, groups_per_level, partition

__all__ = [
    "SCHEDULES", "DistillConfig", "EmbeddingNet", "Level", "LevelOutput", "Partition", "ResNet", "SubsetStats",
    "arcface_loss", "check_class_sizes", "check_lambda", "check_mappings", "classify_by_references",
    "distill_hierarchy", "distill_level", "embed_all", "eq5_distances", "eq5_loss", "first_padding",
    "groups_per_level", "initial_references", "net_pool", "padded_index", "partition", "resnet18", "resnet50",
    "subset_stats", "train_classifier",
]
