"""The mutants of scripts/mutate.py that cannot change any result, each with the reason.

Each entry: (file, line, mutated line or "*", why[, scope]). "*" stands for every operator,
comparison, boolean and constant mutant of the line; a dropped statement (`pass`) or swapped
arguments must be named by its mutated line, since those change what runs, not a value. scope,
the enclosing "Class.function" (or a tuple of them), is given where lines elsewhere in the file
read alike. Lines are matched by their text (stripped), so the list survives edits elsewhere in
a file; a line that changes drops out of it (mutate.py reports the entry as stale) and its
mutants run again. "Equivalent" is meant strictly: no test could tell the mutant from the
original, because every result is the same (speed or memory may differ: that is for
benchmarks/, not tests).
"""

CONV, POOL, HOG = "src/cnnlab/ops/conv.py", "src/cnnlab/ops/pool.py", "src/cnnlab/features/hog.py"
ELEMENTWISE = "src/cnnlab/ops/elementwise.py"
SCHEDULER, TENSOR = "src/cnnlab/optim/lr_scheduler.py", "src/cnnlab/tensor.py"
TENSOR_INDEX = "NumPy reads a Tensor used as an index through __array__, the same as its .data"
PRIORITY = "any __array_priority__ above ndarray's 0 makes NumPy defer to Tensor the same way"
CLOSED_FORM = "closed forms are only evaluated at epoch 0 (SequentialLR's milestones), where " \
              "the exponent is 0 either way"
SPECIAL, ATTENTION = "src/cnnlab/ops/special.py", "src/cnnlab/ops/attention.py"
LEADING_ONE = "the shortcut for a leading coefficient 1 only skips t * 1.0, which is t exactly; " \
              "no coefficient list starts with 0 or 2 or has 1 second"
CODY_EDGE = "at |z| = 0.46875 or 4 exactly the neighbouring range serves: each of Cody's " \
            "ranges is exact to rounding there too (the mutants that leave the edge to no " \
            "range are killed)"
SWAP_LAST = "swapaxes(-2, -1) and swapaxes(-1, 2) of a 4-D array swap the same two last axes"
LOSS = "src/cnnlab/ops/loss.py"
ROW_BLOCKS = "it only moves where softmax's blocks of rows end, which decides no more than " \
             "SHIFT does"
SHIFT = "speed only: the shift is skipped in fewer blocks (at +-40 exactly, or never); shifted " \
        "or not the softmax is the same to rounding, and the blocks that must be shifted are " \
        "tested (test_softmax_shifts_the_blocks_that_need_it)"
LAYER_NORM_BLOCKS = "a tuning constant: layer norm's rows are independent, so where its " \
                    "blocks of rows end changes no number"
SPLIT = "speed only: decides whether the work is split over threads, and split or not the " \
        "results agree (test_threads)"

ROWWISE = "return a.ndim {} and dim % a.ndim == a.ndim - 1 and a.flags.c_contiguous"

EQUIVALENT = [
    # ----- ops/elementwise.py --------------------------------------------------------------------
    (ELEMENTWISE, "self.out = np.where(a >= 0, 1 / (1 + exp_neg_abs), exp_neg_abs / (1 + "
     "exp_neg_abs))", "self.out = np.where(a > 0, 1 / (1 + exp_neg_abs), exp_neg_abs / (1 + "
     "exp_neg_abs))", "at a = 0 both formulas give 1 / (1 + 1) = 0.5 exactly"),
    (ELEMENTWISE, "self.out = self.out.astype(a.dtype, copy=False)", "pass",
     "np.where of two arrays of a's float dtype has that dtype already (float32 stays "
     "float32: the 1 in 1 / (1 + e) is a Python int)"),
    # ----- ops/reduce.py -------------------------------------------------------------------------
    ("src/cnnlab/ops/reduce.py", "def forward(self, a, *, axis=None, keepdims=False):", "*",
     "a default no caller uses: Tensor.sum and Tensor.max always pass keepdims",
     ("Sum.forward", "Max.forward")),
    # ----- ops/movement.py -----------------------------------------------------------------------
    ("src/cnnlab/ops/movement.py", "return all(item is None or item is Ellipsis or "
     "isinstance(item, int | slice) for item in items)", "*",
     "a basic index taken for an advanced one goes through np.add.at, which handles None, "
     "Ellipsis, ints and slices the same (only slower); the reverse mistakes are killed"),
    ("src/cnnlab/ops/movement.py", "for part, need in zip(parts, self.needs_input_grad, "
     "strict=True))", "for part, need in zip(parts, self.needs_input_grad, strict=False))",
     "np.split at the inputs' len - 1 boundaries returns one part per input, so the lengths "
     "always agree and strict never fires"),
    # ----- ops/matmul.py -------------------------------------------------------------------------
    ("src/cnnlab/ops/matmul.py", "nbytes = a.nbytes + b.nbytes", "*", SPLIT,
     ("product", "add_product")),
    ("src/cnnlab/ops/matmul.py", "work = a.nbytes + b.nbytes + out.nbytes", "*", SPLIT),
    ("src/cnnlab/ops/matmul.py",
     "if a.ndim > 2 and a.ndim == b.ndim and a.shape[:-2] == b.shape[:-2]:", "*",
     "speed only: the batched path and NumPy's a @ b compute the same products. Every mutant "
     "of the condition only turns the path off for some stacks (3-D ones, or all: then the "
     "two sides' batch shapes have different lengths and never compare equal) or reads it "
     "the same for 4-D ones (a.shape[:2] is a.shape[:-2]); none admits a pair NumPy would "
     "broadcast"),
    ("src/cnnlab/ops/matmul.py", "if a.shape[0] >= b.shape[1]:",
     "if a.shape[0] > b.shape[1]:", "when the two sides are equal either split is right",
     ("product", "add_product")),
    # ----- ops/loss.py ---------------------------------------------------------------------------
    *[(LOSS, "BLOCK = 65536  # values per block of rows: a block and its results stay in cache "
       "(L2)", f"BLOCK = {size}  # values per block of rows: a block and its results stay in "
       "cache (L2)", ROW_BLOCKS) for size in (65535, 65537)],
    *[(LOSS, "return max(1, BLOCK // max(1, rows.shape[1]))", mutated, ROW_BLOCKS)
      for mutated in ("return max(1, BLOCK // max(1, rows.shape[0]))",
                      "return max(1, BLOCK // max(2, rows.shape[1]))",
                      "return max(2, BLOCK // max(1, rows.shape[1]))")],
    (LOSS, "return max(1, BLOCK // max(1, rows.shape[1]))",
     "return max(1, BLOCK // max(0, rows.shape[1]))", "only rows of 0 values differ, and a "
     "softmax over an empty axis fails either way (NumPy's zero-size min, or this division)"),
    *[(LOSS, "if values.min() >= -SHIFT_FREE and values.max() <= SHIFT_FREE:", mutated, SHIFT)
      for mutated in ("if values.min() > -SHIFT_FREE and values.max() <= SHIFT_FREE:",
                      "if values.min() >= -SHIFT_FREE and values.max() < SHIFT_FREE:",
                      "if values.min() >= SHIFT_FREE and values.max() <= SHIFT_FREE:")],
    *[(LOSS, ROWWISE.format(">= 1"), ROWWISE.format(changed),
       "speed only: a 1-D softmax then takes the general path, which computes the same numbers")
      for changed in ("> 1", ">= 2")],
    (LOSS, ROWWISE.format(">= 1"), ROWWISE.format(">= 0"),
     "only 0-d input differs, and a softmax of a 0-d array fails either way (NumPy's axis "
     "error on the general path, or this modulo)"),
    # ----- ops/norm.py ---------------------------------------------------------------------------
    *[("src/cnnlab/ops/norm.py", "BLOCK = 65536  # values per block of layer norm's rows: a "
       "block and its results stay in cache", f"BLOCK = {size}  # values per block of layer "
       "norm's rows: a block and its results stay in cache", LAYER_NORM_BLOCKS)
      for size in (65535, 65537)],
    *[("src/cnnlab/ops/norm.py", f"in_blocks({name}, len(rows), max(1, BLOCK // features))",
       f"in_blocks({name}, len(rows), max(2, BLOCK // features))", LAYER_NORM_BLOCKS)
      for name in ("normalise", "grad_block")],
    ("src/cnnlab/ops/norm.py", "count = grad_output.size // grad_output.shape[1]",
     "count = grad_output.size / grad_output.shape[1]",
     "an exact quotient: dividing by the int or by the same float gives the same floats"),
    # ----- ops/special.py ------------------------------------------------------------------------
    *[(SPECIAL, "BLOCK = 65536  # values per block of the float32 path: its few temporaries "
       "stay in cache (L2)", f"BLOCK = {size}  # values per block of the float32 path: its few "
       "temporaries stay in cache (L2)", "a tuning constant: every float32 pass is elementwise, "
       "so any blocking gives the same numbers") for size in (65535, 65537)],
    (SPECIAL, "if not u.max() <= LAST_NORMAL:", "if not u.max() < LAST_NORMAL:",
     "capping a block whose largest |x| equals LAST_NORMAL changes nothing"),
    (SPECIAL, "if coefficients[0] == 1:", "if coefficients[0] == 2:", LEADING_ONE),
    (SPECIAL, "if coefficients[0] == 1:", "if coefficients[0] == 0:", LEADING_ONE),
    (SPECIAL, "if coefficients[0] == 1:", "if coefficients[1] == 1:", LEADING_ONE),
    (SPECIAL, "small = y <= SMALL", "small = y < SMALL", CODY_EDGE),
    (SPECIAL, "middle = (y > SMALL) & (y <= LARGE)", "middle = (y >= SMALL) & (y <= LARGE)",
     CODY_EDGE),
    (SPECIAL, "large = y > LARGE", "large = y >= LARGE", CODY_EDGE),
    (SPECIAL, "negative = ~small & (z < 0)", "negative = ~small & (z <= 0)",
     "z = 0 is small (|z| <= 0.46875), so ~small leaves it out either way"),
    # ----- ops/attention.py ----------------------------------------------------------------------
    *[(ATTENTION, line, line.replace("swapaxes(-1, -2)", swapped), SWAP_LAST)
      for line in ("scores = product(query, key.swapaxes(-1, -2))  # (N, h, L, L)",
                   "product(dropped.swapaxes(-1, -2), upstream, out=grad_parts[2])",
                   "grad_weights = product(upstream, value.swapaxes(-1, -2))",
                   "product(grad_scores.swapaxes(-1, -2), query, out=grad_parts[1])")
      for swapped in ("swapaxes(-2, -1)", "swapaxes(-1, 2)")],
    # ----- ops/conv.py ---------------------------------------------------------------------------
    (CONV, "BLOCK_BYTES = 5 << 19  # 2.5 MB", "*",
     "a tuning constant: only the size of the cache blocks changes, and every blocking (one "
     "image, two, a whole share) is tested"),
    (CONV, "per_image = windows[:1].size * windows.itemsize", "*", SPLIT),
    (CONV, "if bias is not None and BLAS.small_rows(*weight_t.shape) is None:",
     "if bias is not None and BLAS.small_rows(*weight_t.shape) is not None:",
     "speed only: the bias is added once either way, as the GEMM's starting output (beta = "
     "1) or after the stack of small products; the same sums up to the order of rounding"),
    (CONV, "per_image * len(windows))", "*", SPLIT),
    (CONV, "parallel_for(sum_share, n, windows[:1].size * n * dtype.itemsize)",
     "parallel_for(sum_share, n, windows[:0].size * n * dtype.itemsize)", SPLIT),
    (CONV, "parallel_for(sum_share, n, windows[:1].size * n * dtype.itemsize)",
     "parallel_for(sum_share, n, windows[:2].size * n * dtype.itemsize)", SPLIT),
    (CONV, "parallel_for(sum_share, n, windows[:1].size * n * dtype.itemsize)",
     "parallel_for(sum_share, n, windows[:1].size * n / dtype.itemsize)", SPLIT),
    (CONV, "parallel_for(sum_share, n, windows[:1].size * n * dtype.itemsize)",
     "parallel_for(sum_share, n, windows[:1].size / n * dtype.itemsize)", SPLIT),
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
    (CONV, "grad_rows = grad_rows.astype(self.weight.dtype, copy=False)", "pass",
     "the upstream gradient comes in the output's dtype (Tensor.backward casts it), which is "
     "the compute dtype the weight was cast to: the cast never changes anything"),
    # ----- ops/pool.py ---------------------------------------------------------------------------
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
    # ----- tensor.py -----------------------------------------------------------------------------
    (TENSOR, "__array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected "
     "operator", "__array_priority__ = 999  # ndarray (op) Tensor defers to Tensor's reflected "
     "operator", PRIORITY),
    (TENSOR, "__array_priority__ = 1000  # ndarray (op) Tensor defers to Tensor's reflected "
     "operator", "__array_priority__ = 1001  # ndarray (op) Tensor defers to Tensor's reflected "
     "operator", PRIORITY),
    (TENSOR, "self._retains_grad = False", "pass",
     "a leaf's flag, and backward reads the flag of non-leaves only (leaves always keep .grad; "
     "op outputs get theirs in _make)", "Tensor.__init__"),
    (TENSOR, "function = function_class(needs if record else [False] * len(needs))",
     "function = function_class(needs if record else [True] * len(needs))",
     "memory only: the primitive keeps what a backward would need, and no backward follows"),
    (TENSOR, "return self * -1", "return self / -1",
     "x / -1 equals x * -1 exactly, and so does its gradient"),
    (TENSOR, "index = index.data", "pass", TENSOR_INDEX),
    (TENSOR, "tensors = [item if isinstance(item, Tensor) else Tensor(item) for item in tensors]",
     "pass", "Tensor._make takes ndarrays among its inputs as constants itself, and an "
     "ndarray's ndim and shape are read the same"),
    (TENSOR, "for item, other in zip(tensors, others, strict=True):",
     "for item, other in zip(tensors, others, strict=False):",
     "others is made from tensors, one entry each: the lengths always agree"),
    (TENSOR, "index = tuple(item.data if isinstance(item, Tensor) else item for item in index)",
     "pass", TENSOR_INDEX),
    # ----- nn/layers.py --------------------------------------------------------------------------
    ("src/cnnlab/nn/layers.py", "x = x if isinstance(x, Tensor) else Tensor(x)", "pass",
     "F.batch_norm makes a tensor of an array itself, and the check before reads only ndim "
     "and shape, which an array has too"),
    ("src/cnnlab/nn/layers.py", "_input_ranks = ()", "pass",
     "the private base class's default, which BatchNorm1d and BatchNorm2d both override"),
    # ----- nn/module.py --------------------------------------------------------------------------
    ("src/cnnlab/nn/module.py", "return bool(np.array_equal(array.astype(dtype), array))",
     "return bool(np.array_equal(array, array.astype(dtype)))", "np.array_equal is symmetric"),
    # ----- checkpoint.py --------------------------------------------------------------------------
    ("src/cnnlab/checkpoint.py", "metadata[\"dtype\"] = str(parameters[0].dtype) if parameters "
     "else \"float32\"", "*",
     "every model build_model makes has two or more parameters, all of one dtype (Module.to "
     "converts them together), so the first and the second name the same dtype"),
    # ----- nn/transformer.py ---------------------------------------------------------------------
    ("src/cnnlab/nn/transformer.py",
     "F.gelu(Tensor(np.zeros(1)), approximate)  # validate now", "*",
     "the call only checks approximate and its output is dropped: zeros of any length are "
     "checked the same (dropping the call is killed: test_gelu_checks_approximate_when_built)"),
    ("src/cnnlab/nn/transformer.py", "class_tokens = self.class_token.expand(len(x), -1, -1)",
     "class_tokens = self.class_token.expand(len(x), 1, -1)",
     "class_token is (1, 1, D) (load_state_dict keeps the shape): -1 keeps its size 1, as 1 does"),
    # ----- autograd.py ---------------------------------------------------------------------------
    ("src/cnnlab/autograd.py", "grad = grad.sum(axis=axes, keepdims=True) if axes else grad",
     "grad = grad.sum(axis=axes, keepdims=False) if axes else grad",
     "keepdims only keeps the summed axes as size 1, which reshape(shape) on the next line "
     "restores: the same values in the same order, a fresh C-contiguous array either way"),
    # ----- nn/losses.py --------------------------------------------------------------------------
    ("src/cnnlab/nn/losses.py", "return bool(np.all(array >= 0) and np.allclose(array.sum("
     "axis=1), 1.0, rtol=0, atol=atol))", "return bool(np.all(array >= 0) and np.allclose(1.0, "
     "array.sum(axis=1), rtol=0, atol=atol))", "with rtol=0 np.allclose is symmetric"),
    # ----- optim/optimizer.py --------------------------------------------------------------------
    ("src/cnnlab/optim/optimizer.py", "for group, saved in zip(self.param_groups, groups, "
     "strict=True):", "*", "the group sizes were compared just above, so the lengths agree"),
    # ----- optim/lr_scheduler.py -----------------------------------------------------------------
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
    # ----- features/hog.py -----------------------------------------------------------------------
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
    (HOG, "array = array.reshape(batch, cells_h, cell_h, cells_w, cell_w)",
     "array = array.reshape(cells_h, batch, cell_h, cells_w, cell_w)",
     "N and cells_h are flattened together in the same order right after, so swapping their "
     "sizes relabels nothing"),
]
