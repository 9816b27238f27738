"""Batches from one source at a time, sources drawn by size, no duplicate text inside a batch.

sentence-transformers already has the pieces for one process: `NoDuplicatesBatchSampler` (no text twice in
a batch, across all columns) and `ProportionalBatchSampler` (datasets drawn in proportion to their size).
What it lacks, and this module adds:

- temperature-smoothed source proportions (p_i ∝ n_i^(1/T); T = 1 is M3E's plain proportional rule);
- several processes: accelerate hands batch i of the sampler to process i mod world_size, so the sampler
  emits `world_size` consecutive batches from the same source. Every process then runs the same loss in a
  step, which gathering negatives across devices needs (a CoSENT step on one GPU and an InfoNCE step on
  another would deadlock in all_gather), and the gathered negatives stay in-domain.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from itertools import accumulate

import torch
from sentence_transformers.base.sampler import (
    DefaultBatchSampler,
    MultiDatasetDefaultBatchSampler,
    NoDuplicatesBatchSampler,
)
from torch.utils.data import BatchSampler, ConcatDataset, RandomSampler

SCORE_COLUMNS = ("score", "label")


def per_source_batch_sampler(
    dataset,
    batch_size: int,
    drop_last: bool,
    valid_label_columns: list[str] | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> DefaultBatchSampler:
    """The trainer's `batch_sampler` callable: no duplicates for in-batch-negative sets, shuffled otherwise.

    A CoSENT set repeats each query once per (query, text) pair by design, and CoSENT wants those pairs
    together; only in-batch-negative losses are hurt by a duplicate (it becomes a false negative).
    """
    if any(c in dataset.column_names for c in SCORE_COLUMNS):
        return DefaultBatchSampler(
            RandomSampler(dataset, generator=generator), batch_size=batch_size, drop_last=drop_last,
            valid_label_columns=valid_label_columns, generator=generator, seed=seed,
        )
    return NoDuplicatesBatchSampler(
        dataset, batch_size=batch_size, drop_last=drop_last, valid_label_columns=valid_label_columns,
        generator=generator, seed=seed,
    )


def source_weights(sizes: list[int], temperature: float) -> list[float]:
    """Sampling probabilities per source: proportional to size at T = 1, flatter as T grows."""
    if temperature <= 0:
        raise ValueError("sampling temperature must be > 0")
    powered = [n ** (1.0 / temperature) if n > 0 else 0.0 for n in sizes]
    total = sum(powered)
    return [p / total for p in powered]


class SourceBatchSampler(MultiDatasetDefaultBatchSampler):
    """Yields whole batches from one dataset of a ConcatDataset, `group` consecutive batches per draw.

    At temperature 1 every batch of every source is used exactly once per epoch, in a random order of
    sources (M3E's rule, as ProportionalBatchSampler). At another temperature sources are drawn with
    replacement by `source_weights`; a source that runs out starts a new shuffled pass, so small sources
    are repeated rather than the epoch cut short. The epoch length is the same either way.
    """

    def __init__(
        self,
        dataset: ConcatDataset,
        batch_samplers: list[BatchSampler],
        generator: torch.Generator | None = None,
        seed: int = 0,
        temperature: float = 1.0,
        group: int = 1,
    ) -> None:
        super().__init__(dataset, batch_samplers, generator=generator, seed=seed)
        self.temperature = temperature
        self.group = max(1, group)

    def _draws(self) -> list[int]:
        per_source = [len(s) // self.group for s in self.batch_samplers]
        if self.temperature == 1.0:
            order = [i for i, n in enumerate(per_source) for _ in range(n)]
            perm = torch.randperm(len(order), generator=self.generator).tolist()
            return [order[p] for p in perm]
        # A source too small for one group of full batches is never drawn: drawing it would cut a group
        # short and shift every later batch to another process's turn (mixed losses in one step).
        sizes = [len(d) if n > 0 else 0 for d, n in zip(self.dataset.datasets, per_source, strict=True)]
        if not any(sizes):
            return []
        weights = torch.tensor(source_weights(sizes, self.temperature))
        return torch.multinomial(weights, sum(per_source), replacement=True, generator=self.generator).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        if self.generator is not None and self.seed is not None:
            self.generator.manual_seed(self.seed + self.epoch)
        offsets = [0, *accumulate(len(d) for d in self.dataset.datasets)]
        iters = [iter(s) for s in self.batch_samplers]
        for source in self._draws():
            for _ in range(self.group):
                try:
                    batch = next(iters[source])
                except StopIteration:
                    iters[source] = iter(self.batch_samplers[source])
                    batch = next(iters[source], None)
                    if batch is None:  # an empty source: nothing to repeat
                        break
                yield [i + offsets[source] for i in batch]

    def __len__(self) -> int:
        return sum(len(s) // self.group for s in self.batch_samplers) * self.group


def multi_source_sampler(temperature: float = 1.0, group: int = 1) -> partial:
    """The trainer's `multi_dataset_batch_sampler` callable, with our settings bound.

    A partial of a module-level class, not a closure: the trainer pickles its arguments into every checkpoint.
    """
    return partial(SourceBatchSampler, temperature=temperature, group=group)
