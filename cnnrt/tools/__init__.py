"""The tools around the engine: compare, inspect, profile, bench, costs, plots.

The inference path never imports them."""
