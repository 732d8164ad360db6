"""The runtime: sessions, the memory planner, the executors (CPU and CUDA) and thread control."""
