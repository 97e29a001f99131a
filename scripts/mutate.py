"""Mutation testing of the engine and features: plant one single-line bug at a time, run that
module's tests, and report every bug no test caught.

    scripts/mutation.sh [FILE ...] [--match TEXT] [--list] [--log PATH] [--rerun LOG] [--jobs N]

For each target file (all of TESTS below by default) it makes every mutant of these kinds, each
a change to one line:

    operator     + - * / // % ** @ swapped (+ <-> -, * <-> /, // -> /, % -> /, ** -> *, @ -> *)
    augmented    += -= *= /= swapped, and += -= *= /= made a plain =
    comparison   < <= > >= == != is in flipped (< -> <=, == -> !=, is -> is not, ...)
    boolean      and <-> or, `not` dropped, True <-> False (not copy=False -> copy=True: a copy
                 for a view; the reverse is made), a conditional expression's two values
                 swapped, a unary minus dropped
    constant     an integer n made n + 1 and n - 1 (not reshape's -1 -> -2: NumPy infers any
                 negative size)
    arguments    the first two positional arguments of a call swapped (not for the
                 commutative functions in COMMUTATIVE: that mutant is the same program)
    statement    an expression, assignment, assert, del or raise replaced by `pass`

Nothing inside a docstring, an f-string or the arguments of a `raise` (error messages) is
mutated, nor a line marked `# pragma: no mutate`. Each mutant is written into one temporary
copy of the tree (src/, tests/ and pyproject.toml; never the working tree) and the module's test
files run there with -x, without bytecode caches. A test failure, an error or a timeout kills
the mutant; if every test passes it survives. Mutants listed in EQUIVALENT (each with the reason
it cannot change a result) are not run. Prints each survivor, then the score: killed / (killed
+ survived).
"""

import argparse
import ast
import dataclasses
import io
import os
import shutil
import signal
import sys
import tempfile
import time
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Each module and the tests that cover it, the quickest to fail first (-x stops at the first
# failure, so a killed mutant costs little more than the test that kills it).
OPS_TESTS = ["tests/test_tensor.py", "tests/test_functional.py"]
CONV_TESTS = ["tests/test_conv_pool_branches.py", "tests/test_ops_conv_pool.py",
              "tests/test_threads.py", "tests/test_functional.py"]
NN_TESTS = ["tests/test_nn.py", "tests/test_nn_module.py", "tests/test_functional.py"]
TESTS = {
    "src/cnnlab/shapes.py": ["tests/test_shapes.py", "tests/test_ops_conv_pool.py",
                             "tests/test_functional.py", "tests/test_nn.py"],
    "src/cnnlab/ops/function.py": OPS_TESTS,
    "src/cnnlab/ops/elementwise.py": OPS_TESTS,
    "src/cnnlab/ops/reduce.py": OPS_TESTS,
    "src/cnnlab/ops/movement.py": OPS_TESTS,
    "src/cnnlab/ops/matmul.py": OPS_TESTS + ["tests/test_threads.py"],
    "src/cnnlab/ops/loss.py": ["tests/test_functional.py", "tests/test_nn.py"],
    "src/cnnlab/ops/norm.py": ["tests/test_nn.py", "tests/test_threads.py"],
    "src/cnnlab/ops/conv.py": CONV_TESTS,
    "src/cnnlab/ops/pool.py": CONV_TESTS,
    "src/cnnlab/tensor.py": ["tests/test_tensor.py", "tests/test_functional.py",
                             "tests/test_nn_module.py", "tests/test_nn.py"],
    "src/cnnlab/nn/layers.py": NN_TESTS,
    "src/cnnlab/nn/losses.py": ["tests/test_nn.py", "tests/test_functional.py"],
    "src/cnnlab/optim/optimizer.py": ["tests/test_optim.py"],
    "src/cnnlab/optim/sgd.py": ["tests/test_optim.py"],
    "src/cnnlab/optim/adam.py": ["tests/test_optim.py"],
    "src/cnnlab/optim/rmsprop.py": ["tests/test_optim.py"],
    "src/cnnlab/optim/lr_scheduler.py": ["tests/test_optim.py"],
    "src/cnnlab/features/hog.py": ["tests/test_features_hog.py"],
    "src/cnnlab/features/color.py": ["tests/test_features_color.py"],
}

# Mutants that cannot change any result: (file, line, mutated line or "*" for every mutant of the
# line, why[, scope: the enclosing "Class.function" (or a tuple of them) where lines elsewhere read
# alike]). Not run, not scored. Lines are matched by their text (stripped), so the list
# survives edits elsewhere in the file; a line that changes drops out of it and is run again.
CONV, POOL, HOG = "src/cnnlab/ops/conv.py", "src/cnnlab/ops/pool.py", "src/cnnlab/features/hog.py"
ELEMENTWISE = "src/cnnlab/ops/elementwise.py"
SCHEDULER, TENSOR = "src/cnnlab/optim/lr_scheduler.py", "src/cnnlab/tensor.py"
TENSOR_INDEX = "NumPy reads a Tensor used as an index through __array__, the same as its .data"
PRIORITY = "any __array_priority__ above ndarray's 0 makes NumPy defer to Tensor the same way"
CLOSED_FORM = "closed forms are only evaluated at epoch 0 (SequentialLR's milestones), where " \
              "the exponent is 0 either way"
SPLIT = "speed only: decides whether the work is split over threads, and split or not the " \
        "results agree (test_threads)"
EQUIVALENT = [
    ("src/cnnlab/ops/reduce.py", "def forward(self, a, *, axis=None, keepdims=False):", "*",
     "a default no caller uses: Tensor.sum and Tensor.max always pass keepdims",
     ("Sum.forward", "Max.forward")),
    ("src/cnnlab/ops/movement.py", "return all(item is None or item is Ellipsis or "
     "isinstance(item, int | slice) for item in items)", "*",
     "a basic index taken for an advanced one goes through np.add.at, which handles None, "
     "Ellipsis, ints and slices the same (only slower); the reverse mistakes are killed"),
    ("src/cnnlab/ops/matmul.py", "nbytes = a.nbytes + b.nbytes", "*", SPLIT),
    ("src/cnnlab/ops/matmul.py", "if a.shape[0] >= b.shape[1]:",
     "if a.shape[0] > b.shape[1]:", "when the two sides are equal either split is right"),
    (ELEMENTWISE, "self.out = np.where(a >= 0, 1 / (1 + exp_neg_abs), exp_neg_abs / (1 + "
     "exp_neg_abs))", "self.out = np.where(a > 0, 1 / (1 + exp_neg_abs), exp_neg_abs / (1 + "
     "exp_neg_abs))", "at a = 0 both formulas give 1 / (1 + 1) = 0.5 exactly"),
    (ELEMENTWISE, "self.out = self.out.astype(a.dtype, copy=False)", "*",
     "np.where of two arrays of a's float dtype has that dtype already (float32 stays "
     "float32: the 1 in 1 / (1 + e) is a Python int)"),
    (CONV, "BLOCK_BYTES = 5 << 19  # 2.5 MB", "*",
     "a tuning constant: only the size of the cache blocks changes, and every blocking (one "
     "image, two, a whole share) is tested"),
    (CONV, "per_image = windows[:1].size * windows.itemsize", "*", SPLIT),
    (CONV, "per_image * len(windows))", "*", SPLIT),
    (CONV, "step = max(1, BLOCK_BYTES // max(1, bytes_per_image))",
     "step = max(1, BLOCK_BYTES // max(0, bytes_per_image))",
     "bytes_per_image is never 0 (every array has at least one element of 4 or 8 bytes)"),
    (CONV, "step = max(1, BLOCK_BYTES // max(1, bytes_per_image))",
     "step = max(1, BLOCK_BYTES // max(2, bytes_per_image))",
     "bytes_per_image is never below 4 (one float32)"),
    (CONV, "return dtype if dtype.kind == \"f\" and dtype.itemsize >= 4 else "
     "np.dtype(np.float32)", "return dtype if dtype.kind == \"f\" and dtype.itemsize > 4 else "
     "np.dtype(np.float32)", "a float of 4 bytes is float32, which the other branch returns"),
    (CONV, "return dtype if dtype.kind == \"f\" and dtype.itemsize >= 4 else "
     "np.dtype(np.float32)", "return dtype if dtype.kind == \"f\" and dtype.itemsize >= 5 else "
     "np.dtype(np.float32)", "a float of 4 bytes is float32, which the other branch returns"),
    (CONV, "return dtype if dtype.kind == \"f\" and dtype.itemsize >= 4 else "
     "np.dtype(np.float32)", "return dtype if dtype.kind == \"f\" and dtype.itemsize >= 3 else "
     "np.dtype(np.float32)", "NumPy has no float of 3 bytes; float16 (2) still becomes float32"),
    (CONV, "dtype = x.dtype if dtype is None else dtype", "*",
     "only whether x is copied to the compute dtype here or cast by NumPy in the GEMM: the "
     "GEMM computes in the promoted dtype either way, and the outputs are allocated in it"),
    (CONV, "out = np.empty((n, h + 2 * pad_h, w + 2 * pad_w, c), dtype=dtype)", "*",
     "a larger padded buffer: its extra rows or columns are filled like the border and no "
     "window reaches them (the window view takes its shape from the size formula)"),
    (CONV, "writeable=False,", "*", "a guard: nothing writes to the window view"),
    (CONV, "def forward(self, x, weight, bias=None, *, stride=(1, 1), padding=(0, 0)):", "*",
     "defaults no caller uses: F.conv2d and the tests always pass stride and padding"),
    (CONV, "channels_first = c_out <= width", "channels_first = c_out < width",
     "when C_out equals KH * KW * C_in the two products are the same size and both right"),
    (CONV, "parallel_for(sum_share, len(windows), windows[:1].size * len(windows) * "
     "grad_rows.itemsize)", "*", SPLIT),
    (CONV, "parallel_for(input_grad_share, n, grid.nbytes + grad_padded.nbytes)", "*", SPLIT),
    (CONV, "padded_h, padded_w = h + 2 * pad_h, w + 2 * pad_w", "*",
     "a larger gradient grid: the row shifts use the same padded width throughout, the extra "
     "rows and columns hold zeros, and the crop takes the same pixels"),
    (CONV, "if 0 < shift < len(grid_rows):", "if 0 < shift <= len(grid_rows):",
     "shift <= (KH - 1) * Wp + KW - 1 < Hp * Wp <= len(grid_rows): never equal"),
    (CONV, "per_image = pixels * (c_out + c_in) * grid.itemsize", "*",
     "only the size of the input gradient's cache blocks (at least one image each) changes"),
    (CONV, "if pad_h or pad_w:", "*",
     "speed only: a contiguous copy of the same values (the padding is cropped either way)"),
    (CONV, "grad_x = contiguous(grad_x)  # gapped arrays slow every later ufunc", "pass",
     "speed only: a contiguous copy of the same values"),
    (POOL, "if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:",
     "if padding[0] > kernel[0] / 2 or padding[1] > kernel[1] // 2:",
     "for an integer padding p and kernel k, p > k // 2 exactly when p > k / 2"),
    (POOL, "if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:",
     "if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] / 2:",
     "for an integer padding p and kernel k, p > k // 2 exactly when p > k / 2"),
    (POOL, "stride[a] == kernel[a] and (padded_hw[a] - kernel[a]) % stride[a] == 0 for a in "
     "(0, 1)", "stride[a] == kernel[a] and (padded_hw[a] + kernel[a]) % stride[a] == 0 for a "
     "in (0, 1)", "with stride == kernel, adding or subtracting the kernel leaves the "
     "remainder the same"),
    (POOL, "stride[a] == kernel[a] and (padded_hw[a] - kernel[a]) % stride[a] == 0 for a in "
     "(0, 1)", "stride[a] == kernel[a] and (padded_hw[a] - kernel[a]) / stride[a] == 0 for a "
     "in (0, 1)", "speed only: fewer tilings are taken for exact, and their buffer is zeroed "
     "first, which the copies then overwrite"),
    (POOL, "if pad_h or pad_w:", "*",
     "speed only: a contiguous copy of the same values (the padding is cropped either way)"),
    (POOL, "grad = contiguous(grad)", "pass", "speed only: a contiguous copy of the same values"),
    (POOL, "for tap in taps[1:]:", "for tap in taps[0:]:",
     "the running maximum starts as tap 0; its maximum with itself changes nothing"),
    (POOL, "for k in range(1, kernel_taps):", "for k in range(0, kernel_taps):",
     "tap 0 is never strictly greater than itself: no index changes"),
    (CONV, "grad_rows = grad_rows.astype(self.weight.dtype, copy=False)", "pass",
     "the upstream gradient comes in the output's dtype (Tensor.backward casts it), which is "
     "the compute dtype the weight was cast to: the cast never changes anything"),
    ("src/cnnlab/optim/optimizer.py", "for group, saved in zip(self.param_groups, groups, "
     "strict=True):", "*", "the group sizes were compared just above, so the lengths agree"),
    (SCHEDULER, "return [base * self.gamma ** (self.last_epoch // self.step_size) for base in "
     "self.base_lrs]", "return [base * self.gamma ** (self.last_epoch / self.step_size) for "
     "base in self.base_lrs]", CLOSED_FORM),
    (SCHEDULER, "return [base * self.gamma ** (self.last_epoch // self.step_size) for base in "
     "self.base_lrs]", "return [base / self.gamma ** (self.last_epoch // self.step_size) for "
     "base in self.base_lrs]", CLOSED_FORM),
    (SCHEDULER, "if self._step_count == 1 and epoch > 0:", "*",
     "get_lr sees _step_count 1 only in the initial step, which returns before this line "
     "(torch gets here when built with last_epoch > 0, an argument cnnlab has not); at "
     "_step_count 2 (epoch 1) the closed form and the recursion give the same float, since "
     "halving is exact"),
    (SCHEDULER, "return [low + (base - low) * (1 + math.cos(epoch * math.pi / period)) / 2",
     "*", "unreachable, see the line above"),
    (SCHEDULER, "if (epoch - 1 - period) % (2 * period) == 0:",
     "if (epoch - 1 + period) % (2 * period) == 0:",
     "-period and +period are the same modulo 2 * period"),
    (SCHEDULER, "for base, lr in zip(self.base_lrs, self._current_lrs(), strict=True)]", "*",
     "one base lr per group, as the optimiser's groups"),
    (SCHEDULER, "cosine = 1 + math.cos(math.pi * self.last_epoch / self.T_max)",
     "cosine = 1 + math.cos(math.pi * self.last_epoch * self.T_max)", CLOSED_FORM),
    (SCHEDULER, "progress = min(self.total_iters, self.last_epoch) / self.total_iters",
     "progress = min(self.total_iters, self.last_epoch) * self.total_iters", CLOSED_FORM),
    (SCHEDULER, "factor = self.start_factor + (self.end_factor - self.start_factor) * progress",
     "factor = self.start_factor + (self.end_factor + self.start_factor) * progress",
     CLOSED_FORM + " (progress 0)"),
    (SCHEDULER, "factor = self.start_factor + (self.end_factor - self.start_factor) * progress",
     "factor = self.start_factor - (self.end_factor - self.start_factor) * progress",
     CLOSED_FORM + " (progress 0)"),
    (SCHEDULER, "self.base_lrs = [group[\"initial_lr\"] for group in optimizer.param_groups]",
     "pass", "SequentialLR's own base_lrs is read by nothing: its schedules keep theirs",
     "SequentialLR.__init__"),
    (SCHEDULER, "if index > 0 and self._milestones[index - 1] == self.last_epoch:",
     "if index >= 0 and self._milestones[index - 1] == self.last_epoch:",
     "index 0 means last_epoch < milestones[0] <= milestones[-1]: never equal"),
    (SCHEDULER, "for scheduler, saved in zip(self._schedulers, nested, strict=True):", "*",
     "the lengths were compared just above"),
    (SCHEDULER, "for group, lr in zip(self.optimizer.param_groups, "
     "values, strict=True):", "*", "every schedule returns one lr per group"),
    (TENSOR, "__array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected "
     "operator", "__array_priority__ = 999  # ndarray (op) Tensor defers to Tensor's reflected "
     "operator", PRIORITY),
    (TENSOR, "__array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected "
     "operator", "__array_priority__ = 1001  # ndarray (op) Tensor defers to Tensor's reflected "
     "operator", PRIORITY),
    (TENSOR, "self._retains_grad = False", "*",
     "a leaf's flag, and backward reads the flag of non-leaves only (leaves always keep .grad; "
     "op outputs get theirs in _make)", "Tensor.__init__"),
    (TENSOR, "function = function_class(needs if record else [False] * len(needs))",
     "function = function_class(needs if record else [True] * len(needs))",
     "memory only: the primitive keeps what a backward would need, and no backward follows"),
    (TENSOR, "for parent, parent_grad in zip(node._parents, input_grads, strict=True):", "*",
     "every primitive returns one gradient (or None) per input"),
    (TENSOR, "if parent_grad is None or not parent.requires_grad:",
     "if parent_grad is None and not parent.requires_grad:",
     "a primitive returns a gradient exactly for the inputs that required one when it was "
     "recorded"),
    (TENSOR, "if parent.requires_grad and id(parent) not in visited:",
     "if parent.requires_grad or id(parent) not in visited:",
     "the extra nodes pushed are skipped as visited or receive no gradient"),
    (TENSOR, "return self * -1", "return self / -1",
     "x / -1 equals x * -1 exactly, and so does its gradient"),
    (TENSOR, "extra + i for i, size in enumerate(shape) if size == 1 and grad.shape[extra + i] "
     "!= 1", "extra + i for i, size in enumerate(shape) if size == 1 and grad.shape[extra + i] "
     "!= 0", "it also sums axes where the gradient has size 1 already, which changes nothing"),
    (TENSOR, "grad = grad.sum(axis=axes, keepdims=True) if axes else grad",
     "grad = grad.sum(axis=axes, keepdims=False) if axes else grad",
     "the reshape to the input's shape right after puts the summed axes back"),
    (TENSOR, "index = index.data", "pass", TENSOR_INDEX),
    (TENSOR, "index = tuple(item.data if isinstance(item, Tensor) else item for item in index)",
     "pass", TENSOR_INDEX),
    ("src/cnnlab/ops/norm.py", "count = grad_output.size // grad_output.shape[1]",
     "count = grad_output.size / grad_output.shape[1]",
     "an exact quotient: dividing by the int or by the same float gives the same floats"),
    ("src/cnnlab/nn/layers.py", "x = x if isinstance(x, Tensor) else Tensor(x)", "pass",
     "F.batch_norm makes a tensor of an array itself, and the check before reads only ndim "
     "and shape, which an array has too"),
    ("src/cnnlab/nn/losses.py", "return bool(np.all(array >= 0) and np.allclose(array.sum("
     "axis=1), 1.0, rtol=0, atol=atol))", "return bool(np.all(array >= 0) and np.allclose(1.0, "
     "array.sum(axis=1), rtol=0, atol=atol))", "with rtol=0 np.allclose is symmetric"),
    ("src/cnnlab/nn/layers.py", "_input_ranks = ()", "pass",
     "the private base class's default, which BatchNorm1d and BatchNorm2d both override"),
    (HOG, "tiny = np.float64(2 * np.finfo(np.float32).tiny).view(np.int64)", "*",
     "the margin above float32's normal range: between 1 and 3 times its smallest normal "
     "number the float32 grid is the normal one, where the bit test alone is exact, so "
     "flagging more there only recomputes an equal result (the contract, below the normal "
     "range, is tested)"),
    (HOG, "near |= (bits - 1).view(np.uint64) < np.uint64(tiny - 1)  # 0 < value < tiny",
     "near |= (bits - 1).view(np.uint64) <= np.uint64(tiny - 1)  # 0 < value < tiny",
     "moves the margin's edge (see tiny) by one float64"),
    (HOG, "near |= (bits - 1).view(np.uint64) < np.uint64(tiny - 1)  # 0 < value < tiny",
     "near |= (bits - 1).view(np.uint64) < np.uint64(tiny - 0)  # 0 < value < tiny",
     "moves the margin's edge (see tiny) by one float64"),
    (HOG, "near |= (bits - 1).view(np.uint64) < np.uint64(tiny - 1)  # 0 < value < tiny",
     "near |= (bits - 1).view(np.uint64) < np.uint64(tiny + 1)  # 0 < value < tiny",
     "moves the margin's edge (see tiny) by two float64s"),
    (HOG, "near |= (bits - 1).view(np.uint64) < np.uint64(tiny - 1)  # 0 < value < tiny",
     "near |= (bits - 1).view(np.uint64) < np.uint64(tiny - 2)  # 0 < value < tiny",
     "moves the margin's edge (see tiny) by one float64"),
    (HOG, "CHUNK_SIZE = 256  # images per step: small enough for the cache, large enough for "
     "NumPy", "*", "a tuning constant: chunks of any size give the same features (tested with "
     "chunks of 3)"),
    (HOG, "if images.shape[1] == 1:", "*",
     "a shortcut: for one channel the general path (the channel of largest gradient) picks "
     "that channel"),
    (HOG, "edges = np.append((180.0 / orientations) * np.arange(orientations + 1), np.inf)",
     "*", "one more edge before the infinite one: folded < 180, so neither 180 + 180 / O nor "
     "infinity is ever reached"),
    (HOG, "np.minimum(bins, orientations, out=bins)", "pass",
     "a guard that cannot bite: folded <= 180, so trunc(folded * O / 180) <= O"),
    (HOG, "bins -= folded < edges.take(bins)", "bins -= folded <= edges.take(bins)",
     "on an exact edge the next line's upward correction (folded >= the next edge) undoes it"),
    (HOG, "array = array.reshape(batch, cells_h, cell_h, cells_w, cell_w)", "*",
     "N and cells_h are flattened together in the same order right after, so swapping their "
     "sizes relabels nothing"),
]

COMMUTATIVE = {"max", "min", "np.maximum", "np.minimum", "np.multiply", "np.add", "np.hypot",
               "np.result_type", "np.logical_and", "np.logical_or", "float_dtype"}
BINARY = {ast.Add: ("+", "-"), ast.Sub: ("-", "+"), ast.Mult: ("*", "/"), ast.Div: ("/", "*"),
          ast.FloorDiv: ("//", "/"), ast.Mod: ("%", "/"), ast.Pow: ("**", "*"),
          ast.MatMult: ("@", "*")}
AUGMENTED = {ast.Add: ("+=", "-="), ast.Sub: ("-=", "+="), ast.Mult: ("*=", "/="),
             ast.Div: ("/=", "*=")}
COMPARISON = {ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="),
              ast.GtE: (">=", ">"), ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="),
              ast.Is: ("is", "is not"), ast.IsNot: ("is not", "is"), ast.In: ("in", "not in"),
              ast.NotIn: ("not in", "in")}
DROPPABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Assert, ast.Delete,
             ast.Raise)


@dataclasses.dataclass(frozen=True)
class Mutant:
    path: str  # relative to the root
    line: int  # 1-based
    original: str  # the line as written
    mutated: str  # the line with the bug
    kind: str
    scope: str = ""  # the enclosing class and function, e.g. "SequentialLR.__init__"

    @property
    def key(self):
        return (self.path, self.original.strip(), self.mutated.strip())

    def describe(self):
        return f"{self.path}:{self.line}: [{self.kind}] {self.original.strip()}  ->  " \
               f"{self.mutated.strip()}"


# ----- making mutants -------------------------------------------------------------------------
class Source:
    """A file's lines and tokens, with AST byte offsets turned into character columns."""

    def __init__(self, text):
        self.lines = text.splitlines(keepends=True)
        self.tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))

    def column(self, line, byte_offset):
        return len(self.lines[line - 1].encode()[:byte_offset].decode())

    def start(self, node):
        return node.lineno, self.column(node.lineno, node.col_offset)

    def end(self, node):
        return node.end_lineno, self.column(node.end_lineno, node.end_col_offset)

    def operator_between(self, after, before, symbols):
        """The first operator token among `symbols` that starts at or after `after` and ends at
        or before `before` (positions as (line, column)); None if there is none."""
        for token in self.tokens:
            if token.type == tokenize.OP or token.type == tokenize.NAME:
                if token.start >= after and token.end <= before and token.string in symbols:
                    return token
        return None

    def replace(self, start, end, text):
        """The line with [start, end) (on that one line) replaced by text, or None when the range
        spans lines."""
        (line, begin), (end_line, stop) = start, end
        if line != end_line:
            return None
        original = self.lines[line - 1]
        return line, original[:begin] + text + original[stop:]


def protected_ranges(tree):
    """Nodes whose insides are never mutated: f-strings, raise arguments, annotations,
    docstrings."""
    protected = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            protected.append(node)
        elif isinstance(node, ast.Raise) and node.exc is not None:
            protected.append(node.exc)
        elif isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
            protected.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns:
            protected.append(node.returns)
    return protected


def inside(node, ranges):
    position = (node.lineno, node.col_offset)
    return any((r.lineno, r.col_offset) <= position and
               (node.end_lineno, node.end_col_offset) <= (r.end_lineno, r.end_col_offset)
               for r in ranges)


def is_docstring(node):
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and \
        isinstance(node.value.value, str)


def mutants_of(path, text):
    """Every mutant of the file's text, in line order."""
    tree, source = ast.parse(text), Source(text)
    protected = protected_ranges(tree)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    scopes = {}

    def name_scopes(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                scopes.update((line, name) for line in range(child.lineno, child.end_lineno + 1))
                name_scopes(child, name + ".")
            else:
                name_scopes(child, prefix)

    name_scopes(tree, "")

    def in_reshape_size(node):  # the 1 of a -1 passed to reshape
        minus, call = parents.get(node), parents.get(parents.get(node))
        return isinstance(minus, ast.UnaryOp) and isinstance(minus.op, ast.USub) and \
            isinstance(call, ast.Call) and ast.unparse(call.func).endswith("reshape")
    found = []

    def add(kind, change):
        if change is not None:
            line, mutated = change
            original = source.lines[line - 1]
            if mutated != original and "pragma: no mutate" not in original:
                found.append(Mutant(path, line, original, mutated, kind, scopes.get(line, "")))

    def swap_token(kind, token, text):
        if token is not None:
            add(kind, source.replace(token.start, token.end, text))

    for node in ast.walk(tree):
        if not hasattr(node, "lineno") or inside(node, protected):
            continue
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            symbol, replacement = BINARY[type(node.op)]
            token = source.operator_between(source.end(node.left), source.start(node.right),
                                            {symbol})
            swap_token("operator", token, replacement)
        elif isinstance(node, ast.AugAssign) and type(node.op) in AUGMENTED:
            symbol, replacement = AUGMENTED[type(node.op)]
            token = source.operator_between(source.end(node.target), source.start(node.value),
                                            {symbol})
            swap_token("augmented", token, replacement)
            swap_token("augmented", token, "=")
        elif isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                if type(op) in COMPARISON:
                    symbol, replacement = COMPARISON[type(op)]
                    first = symbol.split()[0]
                    token = source.operator_between(source.end(left), source.start(right),
                                                    {first})
                    if token is not None and " " in symbol:  # "is not", "not in": two tokens
                        last = source.operator_between(token.end, source.start(right),
                                                       {symbol.split()[1]})
                        if last is not None:
                            add("comparison", source.replace(token.start, last.end, replacement))
                    elif token is not None:
                        swap_token("comparison", token, replacement)
                left = right
        elif isinstance(node, ast.BoolOp):
            symbol, replacement = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
            for left, right in zip(node.values, node.values[1:], strict=False):
                token = source.operator_between(source.end(left), source.start(right), {symbol})
                swap_token("boolean", token, replacement)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            add("boolean" if isinstance(node.op, ast.Not) else "operator",
                source.replace(source.start(node), source.start(node.operand), ""))
        elif isinstance(node, ast.IfExp):
            body = ast.get_source_segment(text, node.body)
            orelse = ast.get_source_segment(text, node.orelse)
            test = ast.get_source_segment(text, node.test)
            if body != orelse:
                add("boolean", source.replace(source.start(node), source.end(node),
                                              f"{orelse} if {test} else {body}"))
        elif isinstance(node, ast.Constant) and type(node.value) is bool:
            keyword = parents.get(node)
            if not (node.value is False and isinstance(keyword, ast.keyword)
                    and keyword.arg == "copy"):
                add("boolean", source.replace(source.start(node), source.end(node),
                                              str(not node.value)))
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            written = ast.get_source_segment(text, node)
            if written.isdigit():  # not hex, not 1 << 20 (its parts are mutated)
                for changed in (node.value + 1, node.value - 1):
                    if changed >= 0 and not (changed == 2 and in_reshape_size(node)):
                        add("constant", source.replace(source.start(node), source.end(node),
                                                       str(changed)))
        elif isinstance(node, ast.Call) and len(node.args) >= 2 and \
                not any(isinstance(a, ast.Starred) for a in node.args[:2]) and \
                ast.unparse(node.func) not in COMMUTATIVE:
            first, second = node.args[0], node.args[1]
            first_text = ast.get_source_segment(text, first)
            second_text = ast.get_source_segment(text, second)
            if first.lineno == second.end_lineno and first_text != second_text:
                add("arguments", source.replace(
                    source.start(first), source.end(second),
                    second_text + source.lines[first.lineno - 1][
                        source.end(first)[1] : source.start(second)[1]] + first_text))
        if isinstance(node, DROPPABLE) and not is_docstring(node) and \
                node.lineno == node.end_lineno:
            line = source.lines[node.lineno - 1]
            start, end = source.start(node), source.end(node)
            before, after = line[: start[1]], line[end[1] :].strip()
            if before.strip() == "" and (after == "" or after.startswith("#")):
                add("statement", (node.lineno, before + "pass\n"))
    unique = {}
    for mutant in sorted(found, key=lambda m: (m.line, m.kind, m.mutated)):
        if _compiles(mutant, text):
            unique.setdefault((mutant.line, mutant.mutated), mutant)
    return list(unique.values())


def _compiles(mutant, text):
    lines = text.splitlines(keepends=True)
    lines[mutant.line - 1] = mutant.mutated
    try:
        compile("".join(lines), mutant.path, "exec")
    except SyntaxError:
        return False
    return True


# ----- running them ---------------------------------------------------------------------------
def copy_tree(destination):
    for name in ("src", "tests"):
        shutil.copytree(ROOT / name, destination / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy2(ROOT / "pyproject.toml", destination / "pyproject.toml")


def start_tests(tree, tests, timeout):
    """Start the test files in the copy `tree` in a child process; returns its pid.

    The child is a fork of this process, which has imported pytest and the tests' heavy
    dependencies (torch, ...) but not cnnlab or the tests: it imports those fresh from the
    copy, and no run pays torch's import again. A timeout ends it by SIGALRM.
    """
    child = os.fork()
    if child == 0:
        status = 3
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.alarm(max(1, int(timeout)))
            os.chdir(tree)
            os.environ["PYTHONPATH"] = str(tree / "src")  # for subprocesses of the tests
            sys.path[:0] = [str(tree / "src")]
            sink = os.open(os.devnull, os.O_WRONLY)
            os.dup2(sink, 1)
            os.dup2(sink, 2)
            status = pytest.main(["-x", "-q", "--no-header", "-p", "no:cacheprovider", *tests])
        finally:
            os._exit(int(status))
    return child


def outcome(status):
    """'passed', 'failed' or 'timeout' from a child's wait status."""
    if os.WIFSIGNALED(status):
        return "timeout" if os.WTERMSIG(status) == signal.SIGALRM else "failed"
    return "passed" if os.WEXITSTATUS(status) == 0 else "failed"


def run_tests(tree, tests, timeout):
    return outcome(os.waitpid(start_tests(tree, tests, timeout), 0)[1])


class Slots:
    """`jobs` copies of the tree, each running one mutant's tests at a time."""

    def __init__(self, temporary, jobs):
        self.trees = [Path(temporary) / f"tree{k}" for k in range(jobs)]
        for tree in self.trees:
            copy_tree(tree)
        self.free = list(range(jobs))
        self.running = {}  # pid -> (slot, mutant, original text)

    def start(self, mutant, text, timeout):
        slot = self.free.pop()
        lines = text.splitlines(keepends=True)
        lines[mutant.line - 1] = mutant.mutated
        target = self.trees[slot] / mutant.path
        target.write_text("".join(lines))
        self.running[start_tests(self.trees[slot], TESTS[mutant.path], timeout)] = (
            slot, mutant, text)

    def wait(self):
        """Wait for any running mutant; restore its file; return (mutant, outcome)."""
        pid, status = os.wait()
        slot, mutant, text = self.running.pop(pid)
        (self.trees[slot] / mutant.path).write_text(text)
        self.free.append(slot)
        return mutant, outcome(status)

    def stop(self):
        for pid in self.running:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        self.running.clear()


def import_test_dependencies():
    """Import what the tests import, except cnnlab, so that every forked run starts warm."""
    import hypothesis  # noqa: F401
    import numpy  # noqa: F401
    import skimage.feature  # noqa: F401
    import torch  # noqa: F401
    import torch.nn.functional  # noqa: F401


def survivors_in(log):
    """The keys of the mutants a previous run's log reports as surviving (or timed out)."""
    keys = set()
    for line in Path(log).read_text().splitlines():
        for prefix in ("SURVIVED ", "KILLED (timeout) "):
            if line.startswith(prefix):
                path, rest = line.removeprefix(prefix).split(":", 1)
                body = rest.split(": ", 1)[1].split("] ", 1)[1]
                original, mutated = body.split("  ->  ")
                keys.add((path, original.strip(), mutated.strip()))
    return keys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="target files (default: every file in TESTS)")
    parser.add_argument("--match", help="only mutants of lines containing this text")
    parser.add_argument("--rerun", help="only the mutants an earlier --log reports surviving "
                        "(or killed by a timeout)")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--log", help="also write every result line to this file")
    parser.add_argument("--jobs", type=int, default=1, help="mutants tested at once (default 1)")
    args = parser.parse_args(argv)
    files = [str(Path(f).resolve().relative_to(ROOT)) for f in args.files] or list(TESTS)
    unknown = [f for f in files if f not in TESTS]
    if unknown:
        parser.error(f"no tests mapped for {', '.join(unknown)} (see TESTS in {__file__})")
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    equivalent = Equivalent(EQUIVALENT)
    wanted = survivors_in(args.rerun) if args.rerun else None
    log = open(args.log, "w") if args.log else None  # noqa: SIM115

    def report(text):
        print(text, flush=True)
        if log:
            log.write(text + "\n")
            log.flush()

    # Every mutant of the files, those chosen, and the EQUIVALENT entries' checks.
    texts = {path: (ROOT / path).read_text() for path in files}
    chosen = {}
    for path in files:
        every = mutants_of(path, texts[path])
        equivalent.check(every)
        chosen[path] = [m for m in every if (args.match is None or args.match in m.original)
                        and (wanted is None or m.key in wanted)]
    for problem in equivalent.problems(files):
        report(problem)
    if args.list:
        for mutant in (m for path in files for m in chosen[path]):
            print(mutant.describe())
        return 0

    counts = {"killed": 0, "survived": 0, "equivalent": 0}
    survivors = []
    sys.dont_write_bytecode = True  # a mutant and the original may share an mtime and size
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import_test_dependencies()
    with tempfile.TemporaryDirectory(prefix="cnnlab-mutation-") as temporary:
        slots = Slots(temporary, args.jobs)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the finally below runs
        try:
            queue = []
            for path in files:
                to_run = []
                for mutant in chosen[path]:
                    reason = equivalent.reason(mutant)
                    if reason:
                        counts["equivalent"] += 1
                        report(f"EQUIVALENT {mutant.describe()}  ({reason})")
                    else:
                        to_run.append(mutant)
                if not to_run:
                    continue
                started = time.monotonic()
                if run_tests(slots.trees[0], TESTS[path], timeout=1800) != "passed":
                    report(f"ERROR {path}: its tests fail without any mutant; fix them first")
                    return 2
                # Generous: on a shared machine a slow run is load, not an endless loop.
                timeout = 10 * (time.monotonic() - started) + 60
                report(f"# {path}: {len(to_run)} mutants, tests {' '.join(TESTS[path])}")
                queue += [(mutant, timeout) for mutant in to_run]
            queue.reverse()  # pop() from the end: in file and line order
            while queue or slots.running:
                while queue and slots.free:
                    mutant, timeout = queue.pop()
                    slots.start(mutant, texts[mutant.path], timeout)
                mutant, result = slots.wait()
                if result == "passed":
                    counts["survived"] += 1
                    survivors.append(mutant)
                    report(f"SURVIVED {mutant.describe()}")
                else:
                    counts["killed"] += 1
                    report(f"KILLED ({result}) {mutant.describe()}")
        finally:
            slots.stop()
    scored = counts["killed"] + counts["survived"]
    score = counts["killed"] / scored if scored else 1.0
    report(f"\n{len(survivors)} surviving mutants:")
    for mutant in sorted(survivors, key=lambda m: (m.path, m.line)):
        report(f"  {mutant.describe()}")
    report(f"score {score:.1%}: {counts['killed']} killed, {counts['survived']} survived, "
           f"{counts['equivalent']} equivalent (not run)")
    return 0 if not survivors else 1


class Equivalent:
    """The EQUIVALENT list, looked up by mutant, and checked against the mutants it names."""

    def __init__(self, entries):
        # (file, line, mutated line or "*") -> (why, the scopes it is limited to, or None)
        self.entries = {}
        for path, line, mutated, why, *scope in entries:
            scopes = None if not scope else (scope[0],) if isinstance(scope[0], str) else scope[0]
            self.entries[(path, line.strip(), mutated.strip())] = (why, scopes)
        self.matched, self.scopes_seen = set(), {}

    def reason(self, mutant):
        """Why the mutant is equivalent, or None."""
        for key in (mutant.key, mutant.key[:2] + ("*",)):
            why, scopes = self.entries.get(key, (None, None))
            if why and (scopes is None or mutant.scope in scopes):
                self.scopes_seen.setdefault(key, set()).add(mutant.scope)
                return why
        return None

    def check(self, mutants):
        for mutant in mutants:
            self.matched |= {mutant.key, mutant.key[:2] + ("*",)}
            self.reason(mutant)

    def problems(self, files):
        """Entries that name no mutant now (their line changed), and unscoped entries that
        cover lines of different functions that read alike."""
        for key, (_, scopes) in self.entries.items():
            if key[0] in files and key not in self.matched:
                yield f"STALE EQUIVALENT entry, no such mutant now: {' :: '.join(key)}"
            if scopes is None and len(self.scopes_seen.get(key, ())) > 1:
                yield (f"AMBIGUOUS EQUIVALENT entry, the line is in "
                       f"{sorted(self.scopes_seen[key])}: give it its scope: "
                       f"{' :: '.join(key)}")


if __name__ == "__main__":
    sys.exit(main())
