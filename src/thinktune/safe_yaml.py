"""The one YAML loader for every file thinktune reads: recipes and their overrides, experiment files, a run
directory's ``recipe.yaml``, and accelerate configs (checked here before accelerate parses them).

PyYAML's ``SafeLoader`` builds no Python objects beyond plain data, but it still lets a small file do a lot of
damage: 1 KB of nested aliases ("billion laughs") expands to 10^9 nodes the moment anything walks the result
(hashing a recipe took > 60 s, then MemoryError), 5,000 levels of nesting overflow its recursive composer, and a
key given twice silently keeps the last value. This loader adds, on top of ``SafeLoader``:

1. a nesting limit (:data:`MAX_DEPTH`), checked while composing, before Python's recursion limit is near;
2. a limit on the size of the document *with every alias expanded* (:data:`MAX_NODES` nodes, :data:`MAX_DEPTH`
   levels), computed on the composed node graph in time linear in the file; a recursive alias is refused;
3. duplicate keys in one mapping are an error (merge keys ``<<`` excepted);
4. files larger than :data:`MAX_BYTES` are refused unread.

Every problem is a :class:`YamlError` (a :class:`~thinktune.errors.RecipeError`) with ``source:line:column``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from thinktune.errors import RecipeError

MAX_DEPTH = 64  # a recipe is ~4 levels deep; a task / reasoning-gym config a few more
MAX_NODES = 100_000  # expanded; a full recipe is ~200 nodes
MAX_BYTES = 4_000_000

_MERGE = "tag:yaml.org,2002:merge"


class YamlError(RecipeError):
    """A YAML file (or override) that is malformed or over a limit, located as ``source:line:column``."""


class _Limit(yaml.MarkedYAMLError):
    pass


class _Loader(yaml.SafeLoader):
    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: D102 - PyYAML hook
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Limit(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML hook
        if isinstance(node, MappingNode):
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicate = key in seen
                except TypeError:  # unhashable key: SafeConstructor reports it
                    continue
                if duplicate:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice in this mapping", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root: Node) -> None:
    """Expanded node count and depth of the node graph (aliases share nodes), iteratively and memoised."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > MAX_NODES:
                raise _Limit(problem=f"expands to more than {MAX_NODES:,} values (aliases repeat their anchor's "
                                     f"content; too many or too deeply nested)", problem_mark=node.start_mark)
            if depth[key] > MAX_DEPTH:
                raise _Limit(problem=f"nested deeper than {MAX_DEPTH} levels once aliases are expanded",
                             problem_mark=node.start_mark)
            continue
        if key in size:
            continue
        if key in on_path:
            raise _Limit(problem="an alias refers to a node that contains it (recursive alias)",
                         problem_mark=node.start_mark)
        on_path.add(key)
        stack.append((node, True))
        for kid in _children(node):
            if id(kid) in on_path:
                raise _Limit(problem="an alias refers to a node that contains it (recursive alias)",
                             problem_mark=kid.start_mark)
            if id(kid) not in size:
                stack.append((kid, False))


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [x for pair in node.value for x in pair]
    return []


def _located(source: str, e: yaml.YAMLError) -> YamlError:
    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "invalid YAML"
        if e.context and e.problem:
            problem = f"{e.problem} ({e.context})"
        if mark is not None:
            return YamlError(f"{source}:{mark.line + 1}:{mark.column + 1}: not valid YAML: {problem}")
        return YamlError(f"{source}: not valid YAML: {problem}")
    return YamlError(f"{source}: not valid YAML: {e}")


def load_yaml(text: str, source: str = "<yaml>") -> Any:
    """Parse one YAML document with the limits above; ``source`` names it in errors."""
    if len(text) > MAX_BYTES:
        raise YamlError(f"{source}: {len(text):,} characters, over the {MAX_BYTES:,} limit for a YAML file")
    loader = None
    try:
        loader = _Loader(text)  # the reader rejects control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise _located(source, e) from None
    except RecursionError:  # defensive: the limits above keep far below Python's recursion limit
        raise YamlError(f"{source}: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(path: str | os.PathLike, what: str = "file") -> Any:
    """Read and parse a YAML file: missing, over-size, non-UTF-8 and malformed files are :class:`YamlError`."""
    p = Path(path)
    if not p.is_file():
        raise YamlError(f"{p}: {what} not found" if not p.exists() else f"{p}: {what} is not a regular file")
    size = p.stat().st_size
    if size > MAX_BYTES:
        raise YamlError(f"{p}: {size:,} bytes, over the {MAX_BYTES:,}-byte limit for a YAML {what}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise YamlError(f"{p}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise YamlError(f"{p}: cannot read ({e.strerror})") from None
    return load_yaml(text, str(p))
