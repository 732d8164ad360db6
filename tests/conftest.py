"""Suite-wide settings: sessions keep no optimised plans on disk (runtime/plan_cache.py), so the
suite neither fills the user's cache nor answers a test from a plan an earlier run left;
tests/test_plan_cache.py turns the cache on inside a folder of its own."""

import os

os.environ.setdefault("CNNRT_PLAN_CACHE", "0")
