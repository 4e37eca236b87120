"""maskedge benchmarks: accuracy, latency, size and memory of every variant, side by side."""
