"""Registers, spills and instruction mix of the fused loss kernels for sm_90, without a GPU.

    python benchmarks/fused_resources.py [--precision tf32x3,tf32] [--extra BN,BM,WARPS,STAGES ...]

Compiles every autotuning configuration of ``spml_train/loss_triton.py`` (both relation layouts:
packed int64 rows and gathered int8 rows) ahead of time for an H100/H200 (``GPUTarget("cuda", 90,
32)``), runs Triton's bundled ``ptxas -v`` and ``cuobjdump --dump-sass``, and prints per kernel
and configuration the registers, spill bytes, shared memory and counts of tensor-core (HGMMA /
HMMA), exp2 (MUFU.EX2), global-load and local-memory (LDL / STL: spills) instructions. Needs only
Triton (``pip install triton`` in a side environment; no CUDA driver). The last line is a JSON list
of the rows. Spills and missing tensor-core instructions are what it is for: the second version of
the kernels (64 x 64 tiles, 4 warps) spilled 240-820 bytes per thread (stack frames of 232-568
bytes) in every kernel.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from spml_train import loss_triton as lt  # noqa: E402

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
OPS = ("HGMMA", "HMMA", "MUFU.EX2", "LDG.E", "LDL", "STL")


def inspect(fn, signature: dict, constexprs: dict, num_warps: int, num_stages: int, tmp: Path) -> dict:
    k = triton.compile(ASTSource(fn=fn, signature=signature, constexprs=constexprs),
                       target=GPUTarget("cuda", 90, 32), options={"num_warps": num_warps, "num_stages": num_stages})
    (tmp / "k.ptx").write_text(k.asm["ptx"])
    (tmp / "k.cubin").write_bytes(k.asm["cubin"])
    info = subprocess.run([str(BIN / "ptxas"), "-arch=sm_90a", "-v", str(tmp / "k.ptx"), "-o", os.devnull],
                          capture_output=True, text=True, check=True).stderr
    sass = subprocess.run([str(BIN / "cuobjdump"), "--dump-sass", str(tmp / "k.cubin")],
                          capture_output=True, text=True, check=True).stdout
    return {"registers": int(re.search(r"Used (\d+) registers", info).group(1)),
            "spill_bytes": int(re.search(r"(\d+) bytes spill stores", info).group(1)),
            "shared_bytes": k.metadata.shared,
            **{op: len(re.findall(r"\b" + re.escape(op) + r"\b", sass)) for op in OPS}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--precision", default="tf32x3,tf32")
    ap.add_argument("--extra", nargs="*", default=[], help="more configurations: BN,BM,WARPS,STAGES")
    args = ap.parse_args()
    ptrs = {"x_ptr": "*fp32", "p_ptr": "*fp32", "b_ptr": "*fp32", "own_ptr": "*i64", "inv_ptr": "*i32",
            "r_ptr": "*i8", "bits_ptr": "*i64"}
    sizes = {"n": "i32", "m": "i32", "kappa": "fp32"}
    keys = {"n_key": "i32", "m_key": "i32"}
    sigs = {"forward": dict(ptrs, spos_ptr="*fp32", sall_ptr="*fp32", **sizes, **keys),
            "grad_x": dict(ptrs, a_ptr="*fp32", c_ptr="*fp32", gx_ptr="*fp32", **sizes, **keys),
            "grad_p": dict(ptrs, a_ptr="*fp32", c_ptr="*fp32", gp_ptr="*fp32", **sizes, rows_per_split="i32", **keys)}
    extra = [tuple(map(int, c.split(","))) for c in args.extra]
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, sig in sigs.items():
            configs = [(c.kwargs["BN"], c.kwargs["BM"], c.num_warps, c.num_stages) for c in lt._TUNED[name].configs]
            for prec in args.precision.split(","):
                for packed in (True, False):
                    for bn, bm, w, s in configs + extra:
                        const = {"D": 64, "BN": bn, "BM": bm, "PREC": prec, "PACKED": packed}
                        signature = dict(sig, **{k: "constexpr" for k in const})
                        if not packed:
                            signature["bits_ptr"] = "*i8"
                        row = {"kernel": name, "precision": prec, "packed": packed, "BN": bn, "BM": bm,
                               "warps": w, "stages": s, **inspect(lt._PLAIN[name], signature, const, w, s, Path(d))}
                        rows.append(row)
                        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
