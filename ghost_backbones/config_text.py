"""A config's text read as data: the config an mmengine Runner saves in every checkpoint.

mmengine's inferencers given ``weights=`` and no ``model=`` rebuild the model from the config text the
checkpoint holds (``message_hub.runtime_info['cfg']``, else ``meta['cfg']``) with
``Config.fromstring(text, '.py')``: Python executed from a file that is otherwise read as data (and the
modules its ``custom_imports`` names imported). What ``Config.pretty_text`` writes is assignments of
literals and ``dict(...)`` calls; :func:`config_from_text` reads exactly that with :mod:`ast`, executing
nothing, and refuses anything else naming the line.
"""
import ast

from .checkpoint_errors import UnsafeCheckpointError


def config_from_text(text: str, source: str) -> dict:
    """The ``name = value`` assignments of a dumped config, as a dict; anything that is not a literal,
    a list / tuple / dict / set of them or ``dict(key=value, ...)`` raises UnsafeCheckpointError."""
    if not isinstance(text, str):
        raise UnsafeCheckpointError(f'the config saved in {source} is a {type(text).__name__}, not config text')
    try:
        tree = ast.parse(text, mode='exec')
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        raise UnsafeCheckpointError(f'the config saved in {source} is not readable config text: '
                                    f'{type(error).__name__}: {error}') from None
    config = {}
    for statement in tree.body:
        if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            raise refusal(source, statement, 'a statement other than `name = value`')
        try:
            config[statement.targets[0].id] = literal(statement.value, source)
        except (TypeError, RecursionError) as error:  # an unhashable key or set item; nesting past the stack
            raise refusal(source, statement, f'a value Python cannot build ({type(error).__name__}: {error})') from None
    return config


def literal(node: ast.AST, source: str):
    """The value of a literal node (see :func:`config_from_text`)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)) \
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float, complex):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, ast.List):
        return [literal(item, source) for item in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(literal(item, source) for item in node.elts)
    if isinstance(node, ast.Set):
        return {literal(item, source) for item in node.elts}
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {literal(key, source): literal(value, source) for key, value in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict' and not node.args \
            and all(keyword.arg is not None for keyword in node.keywords):
        return {keyword.arg: literal(keyword.value, source) for keyword in node.keywords}
    raise refusal(source, node, f'the expression {ast.unparse(node)[:80]!r}')


def refusal(source: str, node: ast.AST, what: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f'the config saved in {source} holds, at line {getattr(node, "lineno", "?")}, {what}, which is not plain '
        'data (mmengine would run it as Python). Give the inferencer the config file as well: model=<config.py>')
