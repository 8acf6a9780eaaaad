"""A config's text read as data: the config an mmengine Runner saves in every checkpoint.

mmengine's inferencers given ``weights=`` and no ``model=`` rebuild the model from the config text the
checkpoint holds (``message_hub.runtime_info['cfg']``, else ``meta['cfg']``) with
``Config.fromstring(text, '.py')``: Python executed from a file that is otherwise read as data (and the
modules its ``custom_imports`` names imported). What ``Config.pretty_text`` writes is assignments of
literals and ``dict(...)`` calls; :func:`config_from_text` reads exactly that with :mod:`ast`, executing
nothing, and refuses anything else naming the line.

Data still acts once built: mmengine's registries resolve a ``type`` they do not hold by its dotted
name (``type='os.system'`` is ``os.system(**kwargs)``) and import ``<scope>.registry`` for any scope a
config names, some config strings are evaluated as Python (mmcv's ``batched_nms`` evaluates its
``type``, mmdet's ``CameraMotionCompensation`` its ``warp_mode``, mmpretrain a dtype name), and a
visualizer's backends write or send results where the config says. :func:`checked_inferencer_config`
therefore lets a config from a checkpoint name only types registered in the registries (or mmcv's NMS
functions) and scopes of OpenMMLab packages, hold no string that could call anything when evaluated
(no ``(``, no ``__``), and drops its visualizer's backends and save_dir.
"""
import ast

from .checkpoint_errors import UnsafeCheckpointError
from .checkpoint_scan import HASH_MODULUS


def config_from_text(text: str, source: str) -> dict:
    """The ``name = value`` assignments of a dumped config, as a dict; anything that is not a literal,
    a list / tuple / dict / set of them or ``dict(key=value, ...)`` raises UnsafeCheckpointError."""
    if not isinstance(text, str):
        raise UnsafeCheckpointError(f'the config saved in {source} is a {type(text).__name__}, not config text')
    if len(text) > MAX_TEXT:
        raise UnsafeCheckpointError(f'the config saved in {source} is {len(text)} characters long (a dumped config '
                                    f'is some 20,000; at most {MAX_TEXT} are read)')
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


MAX_TEXT = 256 * 1024  # mmdet's and this repository's largest dumped configs: ~24,000 characters


def hashable_key(value, node: ast.AST, source: str):
    """A dictionary key or set item: a string, bool, None or int of identity hash (as the checkpoint scan's
    rule: hash-colliding numbers take minutes to insert)."""
    if value is None or isinstance(value, (str, bool)) or type(value) is int and abs(value) < HASH_MODULUS:
        return value
    raise refusal(source, node, f'the dictionary key or set item {str(value)[:40]!r}')


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
        return {hashable_key(literal(item, source), item, source) for item in node.elts}
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {hashable_key(literal(key, source), key, source): literal(value, source)
                for key, value in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == 'dict' \
            and (not node.args or len(node.args) == 1 and isinstance(node.args[0], ast.Dict)) \
            and all(keyword.arg is not None for keyword in node.keywords):
        # dict(key=value, ...), and dict({'not.an.identifier': value, ...}) for keys that are not names
        items = literal(node.args[0], source) if node.args else {}
        items.update((keyword.arg, literal(keyword.value, source)) for keyword in node.keywords)
        return items
    raise refusal(source, node, f'the expression {ast.unparse(node)[:80]!r}')


def refusal(source: str, node: ast.AST, what: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f'the config saved in {source} holds, at line {getattr(node, "lineno", "?")}, {what}, which is not plain '
        'data (mmengine would run it as Python). Give the inferencer the config file as well: model=<config.py>')


NMS_TYPES = ('nms', 'soft_nms')  # what mmcv's batched_nms evaluates as its ``type`` (its own functions)


def op_names() -> set:
    """Type names that are not in a registry but name mmcv's ops: its NMS functions (``batched_nms``
    evaluates the name) and its op classes (mmdet's RoI extractors take ``getattr(mmcv.ops, type)``)."""
    try:
        import mmcv.ops as ops
    except ImportError:
        return set(NMS_TYPES)
    return set(NMS_TYPES) | {name for name in getattr(ops, '__all__', ()) if isinstance(getattr(ops, name, None), type)}


def registered_names() -> dict:
    """scope -> every name registered in a registry of that scope (each registry's own modules imported,
    as mmengine's ``Registry.get`` does): mmengine's registry tree, and the registries of the imported
    ``<package>.registry`` modules of OpenMMLab packages (some have no parent, e.g. mmpretrain's
    BATCH_AUGMENTS)."""
    import sys

    from mmengine.config.utils import MODULE2PACKAGE
    from mmengine.registry import Registry
    names = {}

    def visit(registry):
        registry.import_from_location()
        names.setdefault(registry.scope, set()).update(registry._module_dict)
        for child in list(registry._children.values()):
            visit(child)

    modules = ['mmengine.registry.root'] + [f'{package}.registry' for package in MODULE2PACKAGE]
    for module in (sys.modules.get(name) for name in modules):
        for value in list(vars(module).values()) if module is not None else ():
            if isinstance(value, Registry):
                visit(value)
    return names


def openmmlab_scope(scope, registered: dict) -> bool:
    """Whether ``scope`` is one of the registry tree's, or an installed OpenMMLab package's (mmengine's
    MODULE2PACKAGE table), whose registry is then imported as mmengine would."""
    from importlib import import_module

    from mmengine.config.utils import MODULE2PACKAGE
    if scope in registered:
        return True
    if not isinstance(scope, str) or scope not in MODULE2PACKAGE:
        return False
    try:
        import_module(f'{scope}.registry')
    except ImportError:
        return False
    registered.clear()
    registered.update(registered_names())
    return scope in registered


def checked_inferencer_config(config: dict, source: str) -> dict:
    """``config`` (from :func:`config_from_text`) if every ``type`` it names is registered and every
    scope is an OpenMMLab package's; its visualizer without backends or save_dir."""
    registered = registered_names()

    def check(value, where):
        if isinstance(value, str) and ('(' in value or '__' in value):
            raise UnsafeCheckpointError(f'the config saved in {source} holds the string {value[:60]!r} at {where}, '
                                        'which mmcv or mmdet could evaluate as Python: give the inferencer '
                                        'model=<config.py>')
        if isinstance(value, dict):
            for key, item in value.items():
                check(key, f'{where} (a key)')
                check(item, f'{where}.{key}')
            if 'type' in value:
                check_type(value['type'], where)
            if '_scope_' in value and not openmmlab_scope(value['_scope_'], registered):
                raise UnsafeCheckpointError(f'the config saved in {source} names the scope {value["_scope_"]!r} at '
                                            f'{where}, no OpenMMLab package\'s: give the inferencer model=<config.py>')
        elif isinstance(value, (list, tuple, set)):
            for index, item in enumerate(value):
                check(item, f'{where}[{index}]')

    def check_type(name, where):
        scope, _, real = name.rpartition('.') if isinstance(name, str) else ('', '', None)
        known = (real in registered.get(scope, ()) if scope and openmmlab_scope(scope, registered)
                 else real in op_names() or any(real in names for names in registered.values()) if not scope and real
                 else False)
        if not known:
            raise UnsafeCheckpointError(
                f'the config saved in {source} names the type {name!r} at {where}, which no registry holds (mmengine '
                'would import it by its dotted name and call it): give the inferencer model=<config.py>')

    default_scope = config.get('default_scope')
    if default_scope is not None and not openmmlab_scope(default_scope, registered):
        raise UnsafeCheckpointError(f'the config saved in {source} has the default_scope {default_scope!r}, no '
                                    'OpenMMLab package\'s: give the inferencer model=<config.py>')
    check(config, 'cfg')
    if isinstance(config.get('visualizer'), dict):  # where results are written or sent is the caller's choice
        config['visualizer'].pop('vis_backends', None)
        config['visualizer'].pop('save_dir', None)
    return config
