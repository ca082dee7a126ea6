import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# test helpers (backend_grad.py, backend_smoke.py) importable from every test folder
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from backend_smoke import use_fast_compiles  # noqa: E402

use_fast_compiles()  # under KERAS_BACKEND=jax only, before JAX starts
