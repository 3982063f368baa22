"""Notebook 09's lesson, kept beside it: the *Your turn* task (Wanda's mask), its exercises'
answers and its highlights. The notebook binds them to its run's objects."""

from __future__ import annotations

import torch

from course_utils.grading import Case, Check, Task
from course_utils.harness.highlights import Highlight
from course_utils.sparsity import lowest_mask, wanda_mask

# ---------------------------------------------------------------- Your turn: Wanda's mask


def _cases() -> list[Case]:
    generator = torch.Generator().manual_seed(9)
    spread = torch.randn(16, 32, generator=generator)
    spread_norms = torch.rand(32, generator=generator) * 4 + torch.linspace(0.1, 1.0, 32)
    return [
        Case("4 x 8 weights, every input norm equal (Wanda is per-row magnitude there)",
             (torch.randn(4, 8, generator=generator), torch.full((8,), 2.0), 0.5)),
        Case("an outlier input feature (norm 50) among small ones",
             (torch.randn(6, 8, generator=generator), torch.tensor([1.0, 0.5, 50.0, 1.2, 0.8, 1.0, 0.9, 1.1]), 0.5)),
        Case("a row of large weights above a row of small ones (each row loses its own share)",
             (torch.tensor([[9.0, 8.0, 7.5, 9.5], [0.1, 0.4, 0.2, 0.3]]), torch.ones(4), 0.5)),
        Case("weights and norms that order differently with the norm squared",
             (torch.tensor([[1.0, 4.0, 0.5, 3.0], [2.0, 1.0, 5.0, 0.25]]), torch.tensor([3.0, 1.0, 2.0, 1.5]), 0.5)),
        Case("a quarter of 6 inputs (1.5 weights a row: how many go?)",
             (torch.randn(5, 6, generator=generator), torch.rand(6, generator=generator) + 0.5, 0.25)),
        Case("sparsity 0 (nothing goes)", (torch.randn(3, 4, generator=generator), torch.ones(4), 0.0)),
        Case("16 x 32 weights, norms spread from 0.1 to 5, 60% sparsity", (spread, spread_norms, 0.6)),
    ]


def _compare_masks(answer, expected, arguments) -> str | None:
    weight = arguments[0]
    if not torch.is_tensor(answer):
        return f"return a tensor (True, or 1, where a weight stays), not a {type(answer).__name__}"
    if tuple(answer.shape) != tuple(weight.shape):
        return f"the mask has shape {tuple(answer.shape)}; it needs one entry per weight, {tuple(weight.shape)}"
    if not ((answer == 0) | (answer == 1)).all():
        return "the mask holds values other than True/False (or 1/0): return where each weight stays, not its score"
    kept = answer.bool()
    counts, right = kept.sum(1), expected.sum(1)
    for row in range(len(kept)):
        if counts[row] != right[row]:
            return (f"row {row} keeps {int(counts[row])} of its {weight.shape[1]} weights: each row loses "
                    f"int(sparsity x inputs) of them, its own lowest scores")
    wrong = int((kept != expected).any(1).sum())
    if wrong:
        return (f"every row keeps the right number, but {wrong} of {len(kept)} rows keep other weights than "
                f"the largest |W_ij| x ||X_j|| of the row")
    return None


TASK = Task("wanda_mask", _cases, wanda_mask, _compare_masks, fast=(wanda_mask, lowest_mask))

# ---------------------------------------------------------------- the exercises' answers


def weights_zeroed(masks: dict[str, torch.Tensor]) -> Check:
    """How many weights one pruning set to zero (its masks: True where a weight stays)."""
    return Check(sum(int((~mask).sum()) for mask in masks.values()), "weights set to zero", tolerance=0)


def most_outlying_layer(spread) -> Check:
    """The Linear whose largest input norm stands furthest above its median (section 6's table)."""
    return Check(str(spread["largest / median"].idxmax()), "the layer with the most outlying input feature")


def csr_bytes_ratio(weight: torch.Tensor) -> Check:
    """A CSR copy of `weight` (its values, column indices and row pointers) over the dense bytes."""
    csr = weight.to_sparse_csr()
    stored = sum(t.numel() * t.element_size() for t in (csr.values(), csr.col_indices(), csr.crow_indices()))
    return Check(stored / (weight.numel() * weight.element_size()), "CSR bytes over dense bytes", tolerance=0.01)


HIGHLIGHTS = [
    Highlight("Dense small GPT, test perplexity (bytes)", "dense_perplexity", "number",
              paper="5.12 (LLaMA-2-7B, WikiText, tokens)"),
    Highlight("Magnitude, 50% unstructured, test perplexity", "magnitude_50_perplexity", "number", paper="14.89"),
    Highlight("Wanda, 50% unstructured, test perplexity", "wanda_50_perplexity", "number", paper="6.42"),
    Highlight("SparseGPT, 50% unstructured, test perplexity", "sparsegpt_50_perplexity", "number", paper="6.51"),
    Highlight("SparseGPT, 2:4, test perplexity", "sparsegpt_2:4_perplexity", "number", paper="10.17"),
    Highlight("Wanda, 2:4, test perplexity", "wanda_2:4_perplexity", "number", paper="11.02"),
]
