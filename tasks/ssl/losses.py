"""The SSL objectives and the frozen-feature evaluations, in plain torch (tested against their definitions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2N embeddings must pick its other view among the 2N - 1 others
    by cosine similarity / temperature (cross-entropy, averaged over all 2N anchors)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, positives)


def byol_loss(online_prediction: torch.Tensor, target_projection: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss ``2 - 2 cos(p, z')`` per pair, averaged; the target gets no gradient."""
    p = F.normalize(online_prediction, dim=1)
    z = F.normalize(target_projection.detach(), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()


def moco_v3_loss(query: torch.Tensor, key: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo v3's InfoNCE: each query must pick the momentum key of its other view among the batch's keys
    (cosine similarity / temperature), scaled by ``2 * temperature`` as in the paper; keys get no gradient."""
    q = F.normalize(query, dim=1)
    k = F.normalize(key.detach(), dim=1)
    logits = q @ k.T / temperature
    return 2 * temperature * F.cross_entropy(logits, torch.arange(len(q), device=q.device))


@torch.no_grad()
def knn_predict(bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, k: int,
                temperature: float, num_classes: int, chunk: int = 1024) -> torch.Tensor:
    """Weighted k-NN (Wu et al. 2018): the k most cosine-similar bank features vote for their labels
    with weight ``exp(similarity / temperature)``; returns the predicted label of each query."""
    bank = F.normalize(bank, dim=1)
    k = min(k, bank.shape[0])
    predictions = []
    for start in range(0, queries.shape[0], chunk):
        q = F.normalize(queries[start:start + chunk], dim=1)
        similarity, index = (q @ bank.T).topk(k, dim=1)
        votes = torch.zeros(q.shape[0], num_classes, dtype=q.dtype, device=q.device)
        votes.scatter_add_(1, bank_labels[index], (similarity / temperature).exp())
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)
