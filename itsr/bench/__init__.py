"""Speed benchmark (`python -m itsr.bench`): our training path against a plain PyTorch loop and the
FLOP lower bound, in fp32 and bf16; the refinement's cost; memory. Modules:

    loop.py    timed epochs: our Lightning path and the plain loop, either precision
    matmul.py  the epoch's FLOPs, the matmul rate (interleaved with the epochs) and its spread
    svm.py     one refinement round and the one-class SVM's scaling
    memory.py  RSS over a short ITSR run
    __main__.py  the command line, the table and the JSON
"""

from itsr.bench.matmul import epoch_flops, linear_macs, spread_warnings
from itsr.bench.svm import planted_codes

__all__ = ["epoch_flops", "linear_macs", "planted_codes", "spread_warnings"]
