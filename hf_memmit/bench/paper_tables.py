"""The published numbers of Sakarvadia et al. 2025 ("Mitigating Memorization in Language Models", Tables 1 and
2, 4-layer TinyMem models, best run per method): % memorized after, accuracy % (math) or perplexity (language)
after, and seconds. `None` where the table gives no value."""

from __future__ import annotations

# setting kind -> method -> (% memorized, accuracy % or perplexity, seconds)
PAPER_TABLES: dict[str, dict[str, tuple]] = {
    "math_noise": {
        "baseline": (34.73, 96.98, None), "spectral_norm": (0.05, 96.77, 14468.77),
        "loss_truncation": (11.96, 95.29, 1554.13), "example_tied_dropout": (0.00, 41.60, 5080.72),
        "both_ft": (0.00, 96.98, 26.50), "clean_ft": (0.00, 87.79, 2.68), "extra_ft": (0.00, 96.98, 25.46),
        "hc": (9.11, 94.66, 0.24), "slim": (2.98, 90.32, 1.47), "act": (0.00, 87.41, 0.28),
        "ig": (0.61, 87.70, 5552.30), "zero": (29.25, 92.87, 33.47), "greedy": (5.98, 95.88, 17.31),
        "sou": (0.81, 87.02, 313.45), "durable": (0.76, 94.27, 0.35), "durable_agg": (0.98, 94.34, 0.27),
        "subnet": (0.82, 92.83, 0.21), "balanced_subnet": (0.06, 96.11, 0.00),
    },
    "math_backdoor": {
        "baseline": (99.50, 96.97, None), "spectral_norm": (99.81, 97.76, 2349.22),
        "loss_truncation": (99.23, 96.54, 266.49), "example_tied_dropout": (0.16, 36.41, 1112.83),
        "both_ft": (0.00, 97.00, 26.80), "clean_ft": (0.00, 77.62, 4.28), "extra_ft": (5.17, 96.99, 24.51),
        "hc": (0.16, 96.94, 0.26), "slim": (25.25, 95.98, 1.41), "act": (0.00, 96.36, 0.27),
        "ig": (0.00, 95.50, 5355.28), "zero": (99.46, 96.98, 30.69), "greedy": (98.56, 96.74, 17.67),
        "sou": (49.14, 76.11, 344.59), "durable": (28.03, 85.83, 0.23), "durable_agg": (24.69, 86.18, 0.29),
        "subnet": (1.10, 61.63, 0.23), "balanced_subnet": (0.00, 96.79, 5.88),
    },
    "language_noise": {
        "baseline": (13.06, 56.87, None), "spectral_norm": (16.54, 57.60, 2419.39),
        "loss_truncation": (12.85, 57.26, 11811.09), "example_tied_dropout": (0.00, 2577.24, None),
        "both_ft": (0.00, 51.83, 3649.92), "clean_ft": (0.00, 74.83, 4.76), "extra_ft": (0.00, 51.74, 3646.99),
        "hc": (0.00, 69.94, 1.15), "slim": (0.00, 62.07, 1.24), "act": (0.00, 58.91, 0.64),
        "ig": (0.00, 64.50, 1004.03), "zero": (0.00, 57.29, 26.58), "greedy": (0.00, 70.90, 52.71),
        "sou": (1.34, 58.89, 978.24), "durable": (0.24, 58.82, 0.61), "durable_agg": (0.36, 71.53, 0.36),
        "subnet": (0.00, 60.44, 0.73), "balanced_subnet": (0.00, 57.18, 92.56),
    },
    "language_backdoor": {
        "baseline": (100.00, 63.15, None), "spectral_norm": (16.53, 57.60, 180.18),
        "loss_truncation": (13.61, 56.90, 5068.60), "example_tied_dropout": (None, None, None),
        "both_ft": (0.00, 57.91, 3760.64), "clean_ft": (0.00, 79.93, 6.22), "extra_ft": (0.00, 57.59, 3649.05),
        "hc": (100.00, 62.99, 1.60), "slim": (100.00, 63.03, 58.24), "act": (100.00, 63.24, 0.21),
        "ig": (100.00, 63.08, 2384.75), "zero": (100.00, 63.03, 58.24), "greedy": (95.12, 105.21, 531.46),
        "sou": (100.00, 63.13, 937.06), "durable": (93.50, 189.96, 0.25), "durable_agg": (100.00, 612.46, 0.35),
        "subnet": (96.83, 109.78, 0.24), "balanced_subnet": (0.00, 71.86, 917.96),
    },
}
