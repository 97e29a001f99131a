"""The single-line mutants of a Python file, for scripts/mutate.py.

Each kind of mutant is one small function from an AST node to changed lines. Every mutant
changes one line and compiles; positions come from the AST, the operators' own positions from
the tokens between their operands.
"""

import ast
import dataclasses
import io
import tokenize

# Calls whose first two arguments commute: swapping them gives the same program.
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
    path: str  # relative to the repository root
    line: int  # 1-based
    original: str  # the line as written
    mutated: str  # the line with the bug
    kind: str
    scope: str = ""  # the enclosing class and function, e.g. "SequentialLR.__init__"

    @property
    def key(self):
        return (self.path, self.original.strip(), self.mutated.strip())

    def describe(self):
        return (f"{self.path}:{self.line}: [{self.kind}] {self.original.strip()}  ->  "
                f"{self.mutated.strip()}")


class Source:
    """A file's text, lines, tokens and AST, with AST byte offsets as character columns."""

    def __init__(self, text):
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
        self.tree = ast.parse(text)
        self.parents = {child: node for node in ast.walk(self.tree)
                        for child in ast.iter_child_nodes(node)}

    def start(self, node):
        return node.lineno, self._column(node.lineno, node.col_offset)

    def end(self, node):
        return node.end_lineno, self._column(node.end_lineno, node.end_col_offset)

    def _column(self, line, byte_offset):
        return len(self.lines[line - 1].encode()[:byte_offset].decode())

    def segment(self, node):
        return ast.get_source_segment(self.text, node)

    def token_between(self, after, before, word):
        """The first operator or keyword token `word` within [after, before] ((line, column)
        positions), or None."""
        for token in self.tokens:
            if token.type in (tokenize.OP, tokenize.NAME) and token.string == word and \
                    after <= token.start and token.end <= before:
                return token
        return None

    def replace(self, start, end, text):
        """(line, the line with [start, end) replaced by text), or None if the range spans
        lines."""
        (line, begin), (end_line, stop) = start, end
        if line != end_line:
            return None
        original = self.lines[line - 1]
        return line, original[:begin] + text + original[stop:]


# ----- one function per kind: node -> [(kind, (line, mutated line) or None)] --------------------
def operator_mutants(node, source):
    symbol, replacement = BINARY[type(node.op)]
    token = source.token_between(source.end(node.left), source.start(node.right), symbol)
    return [("operator", token and source.replace(token.start, token.end, replacement))]


def augmented_mutants(node, source):
    symbol, replacement = AUGMENTED[type(node.op)]
    token = source.token_between(source.end(node.target), source.start(node.value), symbol)
    if token is None:
        return []
    return [("augmented", source.replace(token.start, token.end, text))
            for text in (replacement, "=")]


def comparison_mutants(node, source):
    found, left = [], node.left
    for op, right in zip(node.ops, node.comparators, strict=True):
        if type(op) in COMPARISON:
            words, replacement = COMPARISON[type(op)][0].split(), COMPARISON[type(op)][1]
            first = source.token_between(source.end(left), source.start(right), words[0])
            last = first
            if first is not None and len(words) == 2:  # "is not" and "not in": two tokens
                last = source.token_between(first.end, source.start(right), words[1])
            if last is not None:
                found.append(("comparison", source.replace(first.start, last.end, replacement)))
        left = right
    return found


def boolean_mutants(node, source):
    symbol, replacement = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
    found = []
    for left, right in zip(node.values, node.values[1:], strict=False):
        token = source.token_between(source.end(left), source.start(right), symbol)
        found.append(("boolean", token and source.replace(token.start, token.end, replacement)))
    return found


def unary_mutants(node, source):
    kind = "boolean" if isinstance(node.op, ast.Not) else "operator"
    return [(kind, source.replace(source.start(node), source.start(node.operand), ""))]


def conditional_mutants(node, source):
    body, test, orelse = (source.segment(n) for n in (node.body, node.test, node.orelse))
    if body == orelse:
        return []
    return [("boolean", source.replace(source.start(node), source.end(node),
                                       f"{orelse} if {test} else {body}"))]


def constant_mutants(node, source):
    parent = source.parents.get(node)
    if type(node.value) is bool:
        if node.value is False and isinstance(parent, ast.keyword) and parent.arg == "copy":
            return []  # copy=False -> True: a copy instead of a view
        return [("boolean", source.replace(source.start(node), source.end(node),
                                           str(not node.value)))]
    if type(node.value) is not int or not source.segment(node).isdigit():  # not 0x10, 1e3
        return []
    call = source.parents.get(parent)
    reshape_size = isinstance(parent, ast.UnaryOp) and isinstance(parent.op, ast.USub) and \
        isinstance(call, ast.Call) and ast.unparse(call.func).endswith("reshape")
    changes = [value for value in (node.value + 1, node.value - 1) if value >= 0]
    if reshape_size:
        changes = [value for value in changes if value != 2]  # -2: NumPy infers it, like -1
    return [("constant", source.replace(source.start(node), source.end(node), str(value)))
            for value in changes]


def argument_mutants(node, source):
    if len(node.args) < 2 or any(isinstance(a, ast.Starred) for a in node.args[:2]) or \
            ast.unparse(node.func) in COMMUTATIVE:
        return []
    first, second = node.args[:2]
    first_text, second_text = source.segment(first), source.segment(second)
    if first.lineno != second.end_lineno or first_text == second_text:
        return []
    between = source.lines[first.lineno - 1][source.end(first)[1] : source.start(second)[1]]
    return [("arguments", source.replace(source.start(first), source.end(second),
                                         second_text + between + first_text))]


def statement_mutants(node, source):
    is_docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and \
        isinstance(node.value.value, str)
    if is_docstring or node.lineno != node.end_lineno:
        return []
    line = source.lines[node.lineno - 1]
    before, after = line[: source.start(node)[1]], line[source.end(node)[1] :].strip()
    if before.strip() or (after and not after.startswith("#")):
        return []  # not alone on its line
    return [("statement", (node.lineno, before + "pass\n"))]


MAKERS = [
    ((ast.BinOp,), operator_mutants, lambda node: type(node.op) in BINARY),
    ((ast.AugAssign,), augmented_mutants, lambda node: type(node.op) in AUGMENTED),
    ((ast.Compare,), comparison_mutants, None),
    ((ast.BoolOp,), boolean_mutants, None),
    ((ast.UnaryOp,), unary_mutants, lambda node: isinstance(node.op, (ast.Not, ast.USub))),
    ((ast.IfExp,), conditional_mutants, None),
    ((ast.Constant,), constant_mutants, None),
    ((ast.Call,), argument_mutants, None),
    (DROPPABLE, statement_mutants, None),
]


# ----- the file's mutants ----------------------------------------------------------------------
def protected_nodes(tree):
    """Nodes whose insides are never mutated: f-strings, raise arguments (error messages),
    annotations."""
    protected = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            protected.append(node)
        elif isinstance(node, ast.Raise) and node.exc is not None:
            protected.append(node.exc)
        elif isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            protected.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            protected.append(node.returns)
    return protected


def inside(node, nodes):
    return any((other.lineno, other.col_offset) <= (node.lineno, node.col_offset) and
               (node.end_lineno, node.end_col_offset) <= (other.end_lineno, other.end_col_offset)
               for other in nodes)


def scopes_of(tree):
    """line -> the innermost enclosing "Class.function" of that line."""
    scopes = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = prefix + child.name
                scopes.update((line, name) for line in range(child.lineno, child.end_lineno + 1))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return scopes


def mutants_of(path, text):
    """Every mutant of the file's text that compiles, one per distinct changed line, in line
    order. Lines marked `# pragma: no mutate` are left alone."""
    source = Source(text)
    protected, scopes = protected_nodes(source.tree), scopes_of(source.tree)
    found = {}
    for node in ast.walk(source.tree):
        if not hasattr(node, "lineno") or inside(node, protected):
            continue
        for types, make, applies in MAKERS:
            if not isinstance(node, types) or (applies and not applies(node)):
                continue
            for kind, change in make(node, source):
                if change is None:
                    continue
                line, mutated = change
                original = source.lines[line - 1]
                if mutated != original and "pragma: no mutate" not in original:
                    mutant = Mutant(path, line, original, mutated, kind, scopes.get(line, ""))
                    found.setdefault((line, mutated), mutant)
    ordered = sorted(found.values(), key=lambda m: (m.line, m.kind, m.mutated))
    return [mutant for mutant in ordered if _compiles(mutant, source.lines)]


def _compiles(mutant, lines):
    lines = list(lines)
    lines[mutant.line - 1] = mutant.mutated
    try:
        compile("".join(lines), mutant.path, "exec")
    except SyntaxError:
        return False
    return True
