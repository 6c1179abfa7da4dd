"""The canonical text form of a graph: `str(graph)` prints it and `parse_text` reads it back.

    graph(%Q, %K, %V) -> (%flash_output) {
      %flash_q_split = reshape "bsd->bsh64" (%Q)
      %s = einsum "bhqd,bhkd->bhqk" (%q, %k) [acc=float32]
      %acc, %m = loop "loop(carry=2)" (%lo, %hi, %q, %acc0, %m0) {
        graph(%j, %q, %acc, %m) -> (%acc1, %m1) {
          ...
        }
      }
      %o, %lse = custom_vjp "custom_vjp" (%q, %k, %v) {
        graph(...) -> (...) { ... }
      } grad {
        graph(...) -> (...) { ... }
      }
    }

One line per node: results, kind, the quoted spec, operands, sorted attributes in brackets, and
optionally `: [shape], ...`. Loop bodies are graphs of their own, indented, with their own names.
Printing is deterministic and never shows object ids; `str(parse_text(str(g))) == str(g)`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tlir.errors import GraphError, TlirError
from tlir.graph import EinsumGraph, EinsumNode

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


def tensor_refs(graph: EinsumGraph) -> list[str]:
    """The printed reference of every tensor: `%name`, quoted if needed, `#n` for repeats."""
    seen: dict[str, int] = {}
    refs = []
    for name in graph.tensors:
        base = name if _IDENT.fullmatch(name) else json.dumps(name)
        count = seen.get(name, 0)
        seen[name] = count + 1
        refs.append(f"%{base}" + (f"#{count}" if count else ""))
    return refs


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(s) for s in shape) + "]"


def format_node(
    graph: EinsumGraph,
    node: EinsumNode,
    shapes: Mapping[int, Sequence[int]] | None = None,
    indent: str = "  ",
    refs: list[str] | None = None,
) -> str:
    refs = refs if refs is not None else tensor_refs(graph)
    results = ", ".join(refs[t] for t in node.outputs)
    operands = ", ".join(refs[t] for t in node.inputs)
    line = f"{indent}{results} = {node.kind} {json.dumps(node.spec)} ({operands})"
    if node.attrs:
        line += " [" + ", ".join(f"{k}={v}" for k, v in node.attrs) + "]"
    if shapes is not None and all(t in shapes for t in node.outputs):
        line += " : " + ", ".join(_shape_text(shapes[t]) for t in node.outputs)
    if node.body is not None:
        body = format_graph(node.body, indent=indent + "  ")
        line += " {\n" + body + "\n" + indent + "}"
    if node.grad_body is not None:
        grad = format_graph(node.grad_body, indent=indent + "  ")
        line += " grad {\n" + grad + "\n" + indent + "}"
    return line


def format_graph(
    graph: EinsumGraph,
    shapes: Mapping[int, Sequence[int]] | None = None,
    indent: str = "",
    marked: int | None = None,
) -> str:
    """The text form; `shapes` adds result types, `marked` flags one node (for error messages)."""
    refs = tensor_refs(graph)

    def typed(t: int) -> str:
        if shapes is not None and t in shapes:
            return f"{refs[t]}: {_shape_text(shapes[t])}"
        return refs[t]

    inputs = ", ".join(typed(t) for t in graph.inputs)
    outputs = ", ".join(refs[t] for t in graph.outputs)
    lines = [f"{indent}graph({inputs}) -> ({outputs}) {{"]
    for index, node in enumerate(graph.nodes):
        line = format_node(graph, node, shapes, indent + "  ", refs)
        if index == marked:
            line += "  <-- here"
        lines.append(line)
    lines.append(f"{indent}}}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- parsing

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r]+|\n)
  | (?P<ref>%(?:[A-Za-z_][A-Za-z0-9_.]*|"(?:[^"\\]|\\.)*")(?:\#[0-9]+)?)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<arrow>->)
  | (?P<punct>[(){}\[\],=:])
  | (?P<word>[A-Za-z0-9_.+-]+)
    """,
    re.VERBOSE,
)


@dataclass
class _Token:
    kind: str
    text: str
    line: int


def _tokenize(text: str) -> list[_Token]:
    tokens = []
    line = 1
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise GraphError(f"text IR line {line}: unexpected character {text[position]!r}")
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), line))
        line += match.group().count("\n")
        position = match.end()
    tokens.append(_Token("end", "", line))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.position = 0

    def peek(self) -> _Token:
        return self.tokens[self.position]

    def take(self, kind: str, text: str | None = None) -> _Token:
        token = self.peek()
        if token.kind != kind or (text is not None and token.text != text):
            wanted = repr(text) if text is not None else kind
            found = repr(token.text) if token.text else "the end of the text"
            raise GraphError(f"text IR line {token.line}: expected {wanted}, found {found}")
        self.position += 1
        return token

    def at(self, text: str) -> bool:
        return self.peek().text == text and self.peek().kind in ("punct", "arrow")

    def refs(self, closing: str) -> list[str]:
        names = []
        while not self.at(closing):
            names.append(self.take("ref").text)
            if self.at(":"):  # a type annotation, as `tlir show` prints it
                self.take("punct", ":")
                self.shape()
            if not self.at(closing):
                self.take("punct", ",")
        self.take("punct", closing)
        return names

    def shape(self) -> None:
        self.take("punct", "[")
        while not self.at("]"):
            self.take("word")
            if not self.at("]"):
                self.take("punct", ",")
        self.take("punct", "]")

    def graph(self) -> EinsumGraph:
        graph = EinsumGraph()
        ids: dict[str, int] = {}

        def tensor(ref: str) -> int:
            # `%x#2` is the third tensor named x: number them in that order, as printing does
            base, repeat = _split_ref(ref)
            for n in range(repeat + 1):
                key = base + (f"#{n}" if n else "")
                if key not in ids:
                    ids[key] = graph.add_tensor(_ref_name(base))
            return ids[key]

        self.take("word", "graph")
        self.take("punct", "(")
        inputs = [tensor(r) for r in self.refs(")")]
        self.take("arrow")
        self.take("punct", "(")
        output_refs = self.refs(")")
        self.take("punct", "{")
        while not self.at("}"):
            self.node(graph, tensor)
        self.take("punct", "}")
        for t in inputs:
            graph.add_input(t)
        for ref in output_refs:
            if ref not in ids:
                raise GraphError(f"text IR: output {ref} is not defined in the graph")
            graph.add_output(ids[ref])
        return graph

    def node(self, graph: EinsumGraph, tensor) -> None:  # type: ignore[no-untyped-def]
        line = self.peek().line
        results = [self.take("ref").text]
        while self.at(","):
            self.take("punct", ",")
            results.append(self.take("ref").text)
        self.take("punct", "=")
        kind = self.take("word").text
        spec = _string(self.take("string").text, f"text IR line {line}")
        self.take("punct", "(")
        operands = [tensor(r) for r in self.refs(")")]
        attrs = []
        if self.at("["):
            self.take("punct", "[")
            while not self.at("]"):
                key = self.take("word").text
                self.take("punct", "=")
                attrs.append((key, self.take("word").text))
                if not self.at("]"):
                    self.take("punct", ",")
            self.take("punct", "]")
        if self.at(":"):
            self.take("punct", ":")
            self.shape()
            while self.at(","):
                self.take("punct", ",")
                self.shape()
        body = grad_body = None
        if self.at("{"):
            self.take("punct", "{")
            body = self.graph()
            self.take("punct", "}")
        if self.peek().kind == "word" and self.peek().text == "grad":
            self.take("word", "grad")
            self.take("punct", "{")
            grad_body = self.graph()
            self.take("punct", "}")
        outputs = [tensor(r) for r in results]
        try:
            node = EinsumNode(
                spec, operands, outputs, kind=kind, attrs=attrs, body=body, grad_body=grad_body
            )
        except TlirError as error:
            raise type(error)(f"text IR line {line}: {error}") from None
        graph.add_node(node)


def _string(quoted: str, where: str) -> str:
    try:
        return json.loads(quoted)
    except ValueError as error:
        raise GraphError(f"{where}: {quoted} is not a valid JSON string ({error})") from None


def _split_ref(ref: str) -> tuple[str, int]:
    """`%x#2` -> (`%x`, 2); the `#` of a quoted name is part of the name."""
    base, hash_sign, repeat = ref.rpartition("#")
    if hash_sign and repeat.isdigit() and (base.endswith('"') or not base.startswith('%"')):
        return base, int(repeat)
    return ref, 0


def _ref_name(ref: str) -> str:
    body = ref[1:]
    if body.startswith('"'):
        end = body.rindex('"')
        return _string(body[: end + 1], f"text IR: tensor {ref}")
    return body.split("#")[0]


def parse_text(text: str) -> EinsumGraph:
    """Read the text form back into a graph. Malformed text raises `GraphError` with its line."""
    if not isinstance(text, str):
        raise GraphError(f"parse_text expects a string, found {type(text).__name__}")
    parser = _Parser(text)
    try:
        graph = parser.graph()
    except RecursionError:
        raise GraphError("text IR: loop bodies are nested too deeply to read") from None
    parser.take("end")
    return graph
