"""The few numbers of each notebook a reader looks for first, named, beside the paper's.

The site's index (`course_utils.harness.site`) shows them as a table built from a run's results files:
each row names a quantity, gives ours as the run recorded it (a percent, a paired difference
with its interval, a ratio, a count) and the paper's where the paper reports one. The paper's
numbers are facts from `shared/papers/` (quoted in the notebooks' paper tables), never ours.
"""

from __future__ import annotations

import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Highlight:
    """One row: `key` names the recorded value (for a paired difference, the stem of its
    `_mean_points`, `_low_points` and `_high_points` keys); `kind` says how to show it."""

    label: str
    key: str
    kind: str  # "accuracy", "share" (fractions shown as percent), "percent", "points" (a paired difference), "ratio", "count", "text"
    paper: str = ""  # the paper's number as the paper gives it, or "" where it has none


HIGHLIGHTS = {
    "00_foundations": [
        Highlight("VGG-16 on CIFAR-10, test accuracy", "vgg16_cifar_accuracy", "accuracy"),
        Highlight("ResNet-18 on CIFAR-10, test accuracy", "resnet18_cifar_accuracy", "accuracy"),
        Highlight("half a VGG-16 conv cut by L1, minus at random", "vgg16_half_middle_conv_l1_minus_random", "points"),
    ],
    "01_divide_and_delete_filters": [
        Highlight("benchmark AlexNet, test accuracy", "benchmark_accuracy", "accuracy", "87.53%"),
        Highlight("hierarchy after retraining, test accuracy", "hierarchy_after_retraining_accuracy", "accuracy", "88.97%"),
        Highlight("hierarchy minus benchmark", "hierarchy_minus_benchmark", "points", "+1.44 points"),
    ],
    "02_norm_pruning_and_weight_sharing": [
        Highlight("first layer pruned by L1 and retrained, test accuracy", "first_layer_retrained_accuracy", "accuracy"),
        Highlight("weights removed by magnitude pruning", "magnitude_pruned_fraction", "share"),
        Highlight("the paper's MLP threshold minus the manual one", "paper_mlp_minus_manual", "points"),
    ],
    "03_similar_function_kl_pruning": [
        Highlight("Algorithm 1 (KL), half the filters, test accuracy", "kl_pruned_accuracy", "accuracy"),
        Highlight("FLOPs cut by Algorithm 1", "kl_flops_reduction", "ratio", "3.18x (ImageNet)"),
        Highlight("KL beats ThiNet, levels without fine-tuning", "kl_beats_thinet_no_finetuning", "count",
                  "KL best (Figure 2)"),
    ],
    "04_thinet_vs_gradient_pruning": [
        Highlight("gradient votes at r = 0.4, test accuracy", "gradient_accuracy_r0.4", "accuracy", "62.75%"),
        Highlight("ThiNet (report's rule) at r = 0.4, test accuracy", "thinet_accuracy_r0.4", "accuracy", "60.97%"),
        Highlight("rates where the gradient votes clearly beat ThiNet", "gradient_clear_wins", "count", "4 of 4"),
    ],
    "05_taylor_pruning_deep_networks": [
        Highlight("VGG-16, FLOPs after 30% of the reducible filters", "vgg16_flops_diff_percent", "percent", "-39.05%"),
        Highlight("ResNet-18, FLOPs after 30% of the reducible filters", "resnet18_flops_diff_percent", "percent", "-23.50%"),
        Highlight("VGG-16, Taylor minus no cut", "vgg16_taylor_minus_no_cut", "points"),
    ],
    "06_criteria_shootout": [
        Highlight("VGG-16, criteria in tiers", "vgg16_ranking", "text"),
        Highlight("ResNet-18, criteria in tiers", "resnet18_ranking", "text"),
    ],
    "07_from_flops_to_latency": [
        Highlight("VGG-16 at -70% of the filters: FLOPs speed-up", "vgg16_cut70_flops_speedup", "ratio"),
        Highlight("VGG-16 at -70% of the filters: latency speed-up, batch 1", "vgg16_cut70_b1_latency_speedup", "ratio"),
    ],
}


def shown(headline: dict, highlight: Highlight) -> str:
    """Our value of `highlight` as a reader reads it, or "not in this run"."""
    if highlight.kind == "points":
        ends = [headline.get(f"{highlight.key}_{end}_points") for end in ("mean", "low", "high")]
        if None in ends:
            return "not in this run"
        return f"{ends[0]:+.2f} ({ends[1]:+.2f} to {ends[2]:+.2f}) points, paired, 95%"
    value = headline.get(highlight.key)
    if value is None:
        return "not in this run"
    if highlight.kind in ("accuracy", "share"):
        return f"{100 * value:.2f}%"
    if highlight.kind == "percent":
        return f"{value:+.2f}%"
    if highlight.kind == "ratio":
        return f"{value:.2f}x"
    if highlight.kind == "count":
        done, out_of = str(value).split("/")
        return f"{done} of {out_of}"
    return str(value)


def highlights_table(results: dict[str, dict]) -> str:
    """An HTML table of every notebook's highlights: `results` is {notebook: its headline}."""
    rows = [f"<tr><td>{html.escape(notebook) if index == 0 else ''}</td><td>{html.escape(h.label)}</td>"
            f"<td>{html.escape(shown(headline, h))}</td><td>{html.escape(h.paper or '')}</td></tr>"
            for notebook, headline in results.items() for index, h in enumerate(HIGHLIGHTS.get(notebook, []))]
    return ("<table><tr><th>notebook</th><th>quantity</th><th>ours (this run)</th><th>the paper's</th></tr>\n"
            + "\n".join(rows) + "\n</table>")
