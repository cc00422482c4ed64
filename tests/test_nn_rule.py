"""The rule of the framework, audited by parsing the source of every file under scratchnn/nn/.

Allowed: Tensor methods, ``torch.empty``, ``torch.cat``, ``torch.arange``, ``torch.Tensor`` (for
isinstance checks), ``torch.nn.functional.fold``/``unfold``, relative imports inside the package
and the Python standard library (``math``, ``operator``, ``numbers``, ...). Forbidden: autograd,
any other part of torch, numpy, and the escape hatches that would let code reach them without
naming them.
"""
import ast
import sys
from pathlib import Path

import pytest
import torch

import scratchnn
from scratchnn import MSE, SGD, Conv2d, build_network

NN_DIR = Path(scratchnn.__file__).parent / "nn"

ALLOWED_TORCH_CHAINS = {"torch.empty", "torch.cat", "torch.arange", "torch.Tensor",
                        "torch.nn.functional.fold", "torch.nn.functional.unfold"}
ALLOWED_FROM_IMPORTS = {"torch.nn.functional": {"fold", "unfold"}}
AUTOGRAD_NAMES = {"requires_grad", "requires_grad_", "autograd", "grad_fn", "enable_grad",
                  "no_grad", "retain_grad", "inference_mode", "set_grad_enabled"}
FORBIDDEN_NAMES = AUTOGRAD_NAMES | {"numpy", "getattr", "__import__", "importlib", "eval", "exec",
                                   "globals", "compile", "__builtins__", "__getattribute__",
                                   "__subclasses__"}
STDLIB = set(sys.stdlib_module_names) - {"importlib", "ctypes", "builtins"}


def attribute_chain(node):
    """``torch.nn.functional.fold`` -> ["torch", "nn", "functional", "fold"].

    None if the chain does not start at a name.
    """
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def violations(source, filename="<string>"):
    """Every breach of the rule in ``source``, as readable strings (empty: the source obeys it)."""
    tree = ast.parse(source, filename)
    found = []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def report(node, message):
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {message}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if alias.name == "torch":
                    if alias.asname not in (None, "torch"):
                        report(node, f"'import torch as {alias.asname}' "
                                     f"(aliases hide what is used)")
                elif top not in STDLIB:
                    report(node, f"import of '{alias.name}'")
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:
                continue   # relative import inside the package
            module = node.module or ""
            names = {alias.name for alias in node.names}
            if module in ALLOWED_FROM_IMPORTS:
                extra = names - ALLOWED_FROM_IMPORTS[module]
                if extra:
                    report(node, f"'from {module} import {', '.join(sorted(extra))}'")
                aliased = [alias for alias in node.names if alias.asname not in (None, alias.name)]
                if aliased:
                    report(node, f"aliased import from {module}")
            elif module.split(".")[0] not in STDLIB:
                report(node, f"'from {module} import ...'")
        elif isinstance(node, ast.Name):
            if node.id in FORBIDDEN_NAMES:
                report(node, f"name '{node.id}'")
            if node.id == "torch":
                chain = attribute_chain(_outermost_attribute(node, parents))
                dotted = ".".join(chain)
                if dotted not in ALLOWED_TORCH_CHAINS:
                    report(node, f"'{dotted}'" if len(chain) > 1
                           else "bare use of the name 'torch'")
        elif isinstance(node, ast.Attribute):
            if node.attr in FORBIDDEN_NAMES:
                report(node, f"attribute '.{node.attr}'")
        elif isinstance(node, ast.Call):
            if (isinstance(node.func, ast.Attribute) and node.func.attr == "backward"
                    and not node.args and not node.keywords):
                report(node, "zero-argument '.backward()' "
                             "(autograd's; our modules take the gradient)")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.arg, ast.alias)):
            name = getattr(node, "name", None) or getattr(node, "arg", None)
            aliased = isinstance(node, ast.alias) and node.asname in FORBIDDEN_NAMES
            if name in FORBIDDEN_NAMES or aliased:
                report(node, f"definition of forbidden name '{name}'")
    return found


def _outermost_attribute(node, parents):
    """Climb from a Name through the Attributes that extend it: torch -> torch.nn -> torch.nn.x."""
    while isinstance(parents.get(node), ast.Attribute) and parents[node].value is node:
        node = parents[node]
    return node


def nn_sources():
    """Every Python file under scratchnn/nn/, in sub-folders too (the fast machinery in fast/)."""
    files = sorted(NN_DIR.rglob("*.py"))
    names = {relative_name(path) for path in files}
    assert names >= {"__init__.py", "module.py", "conv.py", "activation.py", "optim.py",
                     "fast/__init__.py", "fast/shifted_rows.py", "fast/patches.py",
                     "fast/fused_upsampling.py"}
    return files


def relative_name(path):
    return path.relative_to(NN_DIR).as_posix()


@pytest.mark.parametrize("path", nn_sources(), ids=relative_name)
def test_framework_source_obeys_the_rule(path):
    name = str(path.relative_to(NN_DIR.parent.parent))
    problems = violations(path.read_text(encoding="utf-8"), name)
    assert not problems, "the rule of the framework is broken:\n" + "\n".join(problems)


def test_the_teachable_core_reads_in_one_sitting():
    """Everything in nn/ but nn/fast/ stays about a thousand lines, and reaches the fast machinery
    only through the ``fast`` package, one hand-over per layer (``fast.conv2d_forward`` ...)."""
    teachable = sorted(NN_DIR.glob("*.py"))
    lines = sum(len(path.read_text(encoding="utf-8").splitlines()) for path in teachable)
    assert lines <= 1100, f"the teachable core has grown to {lines} lines"
    stated = f"{lines:,}"  # the README and the landing page quote the count: keep them true
    root = NN_DIR.parent.parent
    for page in ("README.md", "book/intro.md"):
        assert f"{stated} lines" in (root / page).read_text() or \
            f"{stated} with every input check" in (root / page).read_text(), \
            f"{page} should state the teachable core's {stated} lines"
    for path in teachable:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                assert not node.module.startswith("fast"), f"{path.name}: from .{node.module}"


BAD_SOURCES = {
    "numpy import": "import numpy",
    "numpy from-import": "from numpy import zeros",
    "numpy alias": "import numpy as np\nnp.zeros(3)",
    "tensor.numpy()": "def f(x):\n    return x.numpy()",
    "torch.zeros": "import torch\ntorch.zeros(3)",
    "torch.where": "import torch\ntorch.where(x > 0, x, 0)",
    "torch.nn.Conv2d": "import torch\nlayer = torch.nn.Conv2d(1, 1, 1)",
    "torch.nn.functional.conv2d": "import torch\ntorch.nn.functional.conv2d(x, w)",
    "torch.autograd": "import torch\ntorch.autograd.grad(y, x)",
    "torch.float64": "import torch\nx.to(torch.float64)",
    "torch alias": "import torch as t",
    "torch passed around": "import torch\nT = torch\nT.zeros(3)",
    "import torch.nn as nn": "import torch.nn as nn",
    "import torch.nn": "import torch.nn",
    "from torch import nn": "from torch import nn",
    "from torch import zeros": "from torch import zeros",
    "from functional import conv2d": "from torch.nn.functional import fold, conv2d",
    "from functional import *": "from torch.nn.functional import *",
    "fold aliased": "from torch.nn.functional import fold as f",
    "absolute package import": "from scratchnn.reference import Net",
    "third-party import": "import scipy",
    "requires_grad_()": "x.requires_grad_()",
    "requires_grad attribute": "x.requires_grad = True",
    "grad_fn": "print(y.grad_fn)",
    "retain_grad": "y.retain_grad()",
    "no_grad": "with no_grad():\n    pass",
    "loss.backward()": "loss.backward()",
    "getattr": "getattr(torch, 'zer' + 'os')(3)",
    "__import__": "__import__('numpy')",
    "importlib": "import importlib\nimportlib.import_module('numpy')",
    "eval": "eval('1 + 1')",
    "exec": "exec('import numpy')",
    "globals": "globals()['x'] = 1",
}

GOOD_SOURCE = '''
"""Docstrings may mention torch.zeros, requires_grad and numpy: only code counts."""
import math
import operator
import torch
from torch.nn.functional import fold, unfold

from .module import Module


class Scale(Module):
    def forward(self, x):
        if not isinstance(x, torch.Tensor):
            raise ValueError("expected a tensor")
        size = operator.index(self.size)   # the standard library is allowed
        grid = torch.arange(size).reshape(2, 2) + torch.empty(2, 2).fill_(math.pi)
        both = torch.cat([x, x.new_zeros(x.shape)])
        return unfold(both, 1), fold, grid

    def backward(self, grad):
        return self.inner.backward(grad) * 2
'''


@pytest.mark.parametrize("source", BAD_SOURCES.values(), ids=BAD_SOURCES.keys())
def test_checker_catches_a_breach(source):
    assert violations(source), f"the audit missed a breach:\n{source}"


def test_checker_accepts_allowed_code():
    assert violations(GOOD_SOURCE) == []


# --------------------------------------------------------------------------------------------
# At run time: the course's whole network trains with autograd switched off.
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("backward_form", ["fold", "convolution"])
def test_whole_network_trains_with_autograd_off(backward_form):
    torch.manual_seed(0)
    model = build_network("seed000", channels=8)   # the course's network, 8 channels wide
    for module in model.modules:
        if isinstance(module, Conv2d):
            module.backward_form = backward_form
    criterion, optimizer = MSE(), SGD(model.param(), lr=1.0, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    noisy_a = torch.rand(4, 3, 16, 16, generator=generator)
    noisy_b = torch.rand(4, 3, 16, 16, generator=generator)
    before = [parameter.clone() for parameter, _ in model.param()]
    with torch.set_grad_enabled(False):
        for _ in range(2):
            output = model.forward(noisy_a)
            loss = criterion.forward(output, noisy_b)
            optimizer.zero_grad()
            grad_input = model.backward(criterion.backward())
            optimizer.step()
    assert output.shape == noisy_a.shape and grad_input.shape == noisy_a.shape
    assert torch.isfinite(loss) and torch.isfinite(grad_input).all()
    tensors = [output, loss, grad_input] + [tensor for pair in model.param() for tensor in pair]
    assert not any(tensor.requires_grad for tensor in tensors)
    assert all(tensor.grad_fn is None for tensor in tensors)
    assert any(not torch.equal(old, new) for old, (new, _) in zip(before, model.param()))
