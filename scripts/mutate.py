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
                 commutative functions in mutants.COMMUTATIVE: the same program)
    statement    an expression, assignment, assert, del or raise replaced by `pass`

Nothing inside a docstring, an f-string or the arguments of a `raise` (error messages) is
mutated, nor a line marked `# pragma: no mutate`. Each mutant is written into one temporary
copy of the tree (src/, tests/ and pyproject.toml; never the working tree) and the module's test
files run there with -x, without bytecode caches. A test failure, an error or a timeout kills
the mutant; if every test passes it survives. Mutants listed in EQUIVALENT (each with the reason
it cannot change a result; scripts/mutation_equivalents.py) are not run. Prints each survivor,
then the score: killed / (killed + survived). The mutants are made in scripts/mutants.py.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mutants import mutants_of
from mutation_equivalents import EQUIVALENT

ROOT = Path(__file__).resolve().parent.parent

# Each module and the tests that cover it, the quickest to fail first (-x stops at the first
# failure, so a killed mutant costs little more than the test that kills it).
# test_transformer.py: concatenation, batched products, softmax and layer norm are the
# transformer's ops, tested beside its modules
OPS_TESTS = ["tests/test_tensor.py", "tests/test_functional.py", "tests/test_transformer.py"]
CONV_TESTS = ["tests/test_conv_pool_branches.py", "tests/test_ops_conv_paths.py",
              "tests/test_ops_conv_pool.py", "tests/test_threads.py", "tests/test_functional.py"]
NN_TESTS = ["tests/test_nn.py", "tests/test_nn_module.py", "tests/test_functional.py"]
TESTS = {
    "src/cnnlab/shapes.py": ["tests/test_shapes.py", "tests/test_ops_conv_pool.py",
                             "tests/test_functional.py", "tests/test_nn.py"],
    "src/cnnlab/ops/function.py": OPS_TESTS,
    "src/cnnlab/ops/elementwise.py": OPS_TESTS,
    "src/cnnlab/ops/reduce.py": OPS_TESTS,
    "src/cnnlab/ops/movement.py": OPS_TESTS,
    "src/cnnlab/ops/matmul.py": OPS_TESTS + ["tests/test_threads.py"],
    "src/cnnlab/ops/loss.py": ["tests/test_functional.py", "tests/test_losses.py",
                               "tests/test_transformer.py", "tests/test_tensor.py"],
    "src/cnnlab/ops/norm.py": ["tests/test_nn.py", "tests/test_threads.py",
                               "tests/test_transformer.py"],
    "src/cnnlab/ops/conv.py": CONV_TESTS,
    "src/cnnlab/ops/pool.py": CONV_TESTS,
    "src/cnnlab/tensor.py": ["tests/test_tensor.py", "tests/test_functional.py",
                             "tests/test_nn_module.py", "tests/test_nn.py",
                             "tests/test_transformer.py"],  # cat
    "src/cnnlab/nn/layers.py": NN_TESTS,
    "src/cnnlab/nn/losses.py": ["tests/test_losses.py", "tests/test_functional.py"],
    "src/cnnlab/optim/optimizer.py": ["tests/test_optim.py"],
    "src/cnnlab/optim/sgd.py": ["tests/test_optim.py"],
    "src/cnnlab/optim/adam.py": ["tests/test_optim.py"],
    "src/cnnlab/optim/rmsprop.py": ["tests/test_optim.py"],
    "src/cnnlab/optim/lr_scheduler.py": ["tests/test_lr_scheduler.py"],
    "src/cnnlab/features/hog.py": ["tests/test_features_hog.py"],
    "src/cnnlab/features/color.py": ["tests/test_features_color.py"],
    "src/cnnlab/ops/special.py": ["tests/test_transformer.py"],
    "src/cnnlab/ops/attention.py": ["tests/test_transformer.py"],
    "src/cnnlab/nn/transformer.py": ["tests/test_transformer_checks.py",  # fast ones first
                                     "tests/test_transformer.py"],
    "src/cnnlab/autograd.py": ["tests/test_autograd_checks.py", "tests/test_tensor.py",
                               "tests/test_functional.py"],
    "src/cnnlab/nn/module.py": ["tests/test_module_checks.py", "tests/test_nn_module.py",
                                "tests/test_nn.py"],
    "src/cnnlab/checkpoint.py": ["tests/test_checkpoint_checks.py", "tests/test_checkpoint.py"],
    # training resume: the trainer's checkpoint, interrupt and schedule code
    "src/cnnlab/training/trainer.py": ["tests/test_trainer_checks.py", "tests/test_train_resume.py",
                                       "tests/test_train.py"],
}


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
        for key in self._keys(mutant):
            why, scopes = self.entries.get(key, (None, None))
            if why and (scopes is None or mutant.scope in scopes):
                self.scopes_seen.setdefault(key, set()).add(mutant.scope)
                return why
        return None

    @staticmethod
    def _keys(mutant):
        """The entries that may name a mutant: its own, and "*" (a line's value mutants: a
        dropped statement or swapped arguments changes what runs, and is named explicitly)."""
        if mutant.kind in ("statement", "arguments"):
            return (mutant.key,)
        return (mutant.key, mutant.key[:2] + ("*",))

    def check(self, mutants):
        for mutant in mutants:
            self.matched |= set(self._keys(mutant))
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
