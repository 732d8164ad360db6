"""``cnnrt cache info`` / ``cnnrt cache clear``: what cnnrt keeps on disk, and removing it.

The root is ``$CNNRT_CACHE_DIR`` (default ``~/.cache/cnnrt``): compiled kernels in
``numba-<hash of the kernel sources>`` (only the current hash's folder is used; the others are
deleted automatically once no process used them for a day), the zoo's ONNX exports in
``zoo/``, and ``peak.json``; the optimised plans (runtime/plan_cache.py) in ``plans/`` of the
kernel folder they were built for, pruned with it and, per entry, once unused for a day. ``clear`` without an option removes only what is stale (other
kernel hashes, exports of other zoo sources); ``--kernels``, ``--zoo``, ``--plans`` or ``--all`` remove
everything of that kind (the next start compiles or exports again)."""

from __future__ import annotations

import json

from cnnrt.cli import options

EPILOG = """examples:
  cnnrt cache info
  cnnrt cache info --json cache.json
  cnnrt cache clear            # stale entries only
  cnnrt cache clear --kernels  # every compiled kernel (and the plans built for them)
  cnnrt cache clear --plans    # every cached optimised plan
  cnnrt cache clear --all"""

HELP = "show or clear the on-disk caches (compiled kernels, optimised plans, zoo exports)"


def add_arguments(p) -> None:
    p.add_argument("action", choices=["info", "clear"])
    which = p.add_mutually_exclusive_group()
    for what in ("kernels", "zoo", "plans", "all"):
        which.add_argument(
            f"--{what}", dest="what", action="store_const", const=what, help=f"with clear: remove {what}"
        )
    options.add_json(p, "the cache report")


def run(args) -> int:
    from cnnrt.tools import cache

    if args.action == "clear":
        gone = cache.clear(args.what or "stale")
        for path, size in gone:
            print(f"removed  {path} ({cache.fmt_size(size)})")
        print(f"freed    {cache.fmt_size(sum(s for _, s in gone))} in {len(gone)} entries")
        if args.json:
            with open(args.json, "w") as f:
                json.dump([{"path": p, "bytes": s} for p, s in gone], f, indent=1)
        return 0
    rep = cache.info()
    print(f"root     {rep['root']}  ($CNNRT_CACHE_DIR), {cache.fmt_size(rep['bytes'])} in all")
    print(f"kernels  current source hash {rep['kernel_source_hash']}, in use: {rep['kernel_dir']}")
    for k in rep["kernels"]:
        state = "current" if k["current"] else f"stale, unused for {k['idle_s'] / 3600:.1f} h"
        print(f"  {k['path']}  {cache.fmt_size(k['bytes'])} in {k['files']} files ({state})")
    plan_bytes = sum(e["bytes"] for e in rep["plans"])
    print(f"plans    {rep['plans_dir']}: {len(rep['plans'])} entries, {cache.fmt_size(plan_bytes)}")
    zoo_bytes = sum(z["bytes"] for z in rep["zoo"])
    stale = [z for z in rep["zoo"] if not z["current"]]
    print(
        f"zoo      {rep['zoo_dir']}: {len(rep['zoo'])} exports, {cache.fmt_size(zoo_bytes)} "
        f"({len(stale)} stale, {cache.fmt_size(sum(z['bytes'] for z in stale))})"
    )
    for z in rep["zoo"]:
        print(f"  {z['path']}  {cache.fmt_size(z['bytes'])}{'' if z['current'] else ' (stale)'}")
    for f in rep["files"]:
        print(f"file     {f['path']}  {cache.fmt_size(f['bytes'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rep, f, indent=1)
    return 0
