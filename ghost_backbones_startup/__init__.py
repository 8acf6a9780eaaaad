"""What ghost_backbones must do in a Python process before any OpenMMLab config is read.

``ghost_backbones_startup.pth`` (installed into site-packages with the wheel and the editable
install) calls :func:`install` at interpreter start. It imports only the standard library and
changes nothing until the modules concerned are imported:

* ``mmcv._ext``: with mmcv-lite (mmcv without compiled ops), the ops module is provided on
  torch / torchvision (:mod:`.mmcv_ext`); a compiled mmcv is used as it is.
* ``mmengine.config.utils``: mmengine 0.10.x resolves ``_base_ = '<package>::...'`` only for the
  package names in its ``MODULE2PACKAGE`` table, and reads ``_base_`` before a config's
  ``custom_imports``; ``ghost_backbones`` is added there, so that configs inherit ours with
  ``ghost_backbones::`` as they inherit mmdet's with ``mmdet::``.
* ``mmengine.config.utils`` under OneDL (the maintained fork: onedl-mmengine, onedl-mmsegmentation,
  ...; same module names, other distribution names): the table maps ``mmseg`` to the distribution
  ``mmsegmentation``, which OneDL does not install, so ``mmseg::`` bases would not resolve; the entry
  names the module instead (:func:`resolve_onedl_distributions`).
* ``mmengine.config.config``: mmengine 0.10.x finds a package's ``.mim`` folder as
  ``<distribution location>/<package>``; for an editable install made by pip >= 21.3 (PEP 660)
  the distribution's location is site-packages while the package stays in the source tree, so
  ``ghost_backbones::`` configs would not be found. For ``ghost_backbones`` only, the path is taken
  from the imported package's spec (where Python imports it from); other packages are untouched.
  ``mmengine.hub.hub`` imports its own reference to that function (``get_config`` reads the model
  index through it) and gets the same answer.
* ``mmengine.config.config``: mmengine 0.10.x tags every typed dict of a ``<package>::`` base with
  ``_scope_='<package>'``; built in that scope, mmdet's / mmseg's / mmpretrain's types of our
  configs are not found. A ``ghost_backbones::`` base is tagged with its own ``default_scope``
  instead (:func:`scope_bases_by_default_scope`).
* ``mim.utils.utils``, ``mim.commands.list`` (openmim 0.3.x): mim finds a package as
  ``<distribution location>/<package>`` too; for the editable install ``mim search`` / ``train`` /
  ``test ghost_backbones`` get the imported package's folder, and ``mim list`` lists the package
  (:func:`locate_mim_package`, :func:`listing_editable_install`).
* ``mmengine.infer.infer``: mmengine's inferencers (mmdet's ``DetInferencer``, mmseg's
  ``MMSegInferencer``) look a model name up in the model index of the package named by their
  ``scope``, which is also the default registry scope: our names were found only with
  ``scope='ghost_backbones'``, where mmdet's / mmseg's transforms are not registered. A name that the
  scope's own index lacks is looked up in ours, for the configs of that scope
  (:func:`find_our_model_names`).
* ``mmpretrain.apis.model``: mmpretrain's ``get_model`` / ``ImageClassificationInferencer`` /
  ``list_models`` read the names of ``ModelHub``, which holds mmpretrain's own index; our
  classification entries are added to it (:func:`register_our_classifiers`).

Set ``GHOST_BACKBONES_STARTUP=0`` to turn them all off.
"""
import os

from . import mmcv_ext
from .post_import import when_imported

SWITCH = 'GHOST_BACKBONES_STARTUP'
PATCHED = '_ghost_backbones_patch'  # marks our replacements (``__wrapped__`` alone may be a decorator's)
PACKAGE = 'ghost_backbones'
ONEDL_PREFIX = 'onedl-'  # OneDL's distribution names: onedl-mmengine, onedl-mmsegmentation, ...


def register_config_scope(config_utils) -> None:
    """Let mmengine resolve ``ghost_backbones::<path>`` (``ghost_backbones/.mim/configs/<path>``)."""
    config_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)


def distribution_installed(name: str) -> bool:
    import importlib.metadata
    try:
        importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def resolve_onedl_distributions(config_utils) -> None:
    """Let ``mmseg::`` bases resolve under OneDL (onedl-mmengine 0.10.8 to 0.10.12, the latest release;
    not needed upstream, whose distribution names the table holds).

    mmengine's ``MODULE2PACKAGE`` (mmengine/config/utils.py) maps a config scope to the distribution
    that provides it: ``mmseg`` to ``mmsegmentation``. OneDL installs ``onedl-mmsegmentation``, so
    ``Config._get_cfg_path`` raised ``ModuleNotFoundError: mmsegmentation is not installed`` for every
    ``_base_ = 'mmseg::...'``. (``mmdet`` and ``mmpretrain`` resolve: their table entries are module names,
    found by import spec.) An entry whose distribution is missing while its ``onedl-`` namesake is installed
    names the module instead, which OneDL's ``is_installed`` / ``get_installed_path`` find by import spec
    (``<site-packages>/mmseg``, where its ``.mim`` folder is). Runs only on OneDL's mmengine 0.10.x."""
    from mmengine.utils import digit_version  # imported by mmengine.config before this runs
    from mmengine.version import __version__
    if not (digit_version('0.10.8') <= digit_version(__version__) < digit_version('0.11.0')
            and distribution_installed(ONEDL_PREFIX + 'mmengine')):
        return
    table = config_utils.MODULE2PACKAGE
    for module, distribution in list(table.items()):
        if (module != distribution and not distribution_installed(distribution)
                and distribution_installed(ONEDL_PREFIX + distribution)):
            table[module] = module


def find_package_folder(get_installed_path):
    """``get_installed_path`` that answers ``ghost_backbones`` with the folder Python imports it from."""
    def get_installed_path_of(package: str) -> str:
        if package.replace('-', '_') != PACKAGE:
            return get_installed_path(package)
        folder = package_folder()
        return get_installed_path(package) if folder is None else folder
    get_installed_path_of.__wrapped__ = get_installed_path
    setattr(get_installed_path_of, PATCHED, True)
    return get_installed_path_of


def locate_config_package(module) -> None:
    """Let ``ghost_backbones::`` configs resolve under an editable (PEP 660) install: ``module`` is
    mmengine.config.config or mmengine.hub.hub, each holding its own reference to mmengine's
    ``get_installed_path`` (mmengine 0.10.7: config.py line 29, hub/hub.py line 11)."""
    original = module.get_installed_path
    if not getattr(original, PATCHED, False):
        module.get_installed_path = find_package_folder(original)


def scope_bases_by_default_scope(config_module) -> None:
    """Tag the typed dicts of a ``ghost_backbones::`` base with the base's ``default_scope``, not ours.

    mmengine 0.10.x (0.10.7 the latest; no upstream report found): ``Config._get_cfg_path``
    (mmengine/config/config.py, line 1247) returns the package of ``<package>::<path>`` as the base's
    scope, and ``Config._dict_to_config_dict`` (line 1148) writes it as ``_scope_`` into each outermost
    dict with a ``type``. ``build_from_cfg`` then builds it inside
    ``Registry.switch_scope_and_registry('ghost_backbones')`` (mmengine/registry/registry.py, line 225),
    which finds our model registry (GhostNet only) or none and falls back to mmengine's root: a
    ``ghost_backbones::`` base of an mmdet config fails with ``'CocoDataset is not in the
    mmengine::dataset registry'``, of an mmpretrain config with ``'ImageClassifier is not in the
    ghost_backbones::model registry'``. mmengine's rule fits packages whose configs use their own
    registry (``mmdet::``); ours are mmdet / mmseg / mmpretrain configs, and each says which in its
    ``default_scope``: that is the scope the base's dicts get (none if it has none: the inheriting
    config's default scope applies). Other packages' bases are untouched."""
    from mmengine.utils import digit_version  # imported by mmengine.config before this runs
    from mmengine.version import __version__  # (mmengine/__init__.py sets its own after importing config)
    if not digit_version('0.10.0') <= digit_version(__version__) < digit_version('0.11.0'):
        return
    config_class = config_module.Config
    original = config_class.__dict__.get('_dict_to_config_dict')
    if not isinstance(original, staticmethod) or getattr(original.__func__, PATCHED, False):
        return
    to_config_dict = original.__func__

    def _dict_to_config_dict(cfg, scope=None, has_scope=True):
        if scope == PACKAGE:  # only the call on a whole base; the recursive calls get the new scope
            scope = cfg.get('default_scope') if isinstance(cfg, dict) else None
        return to_config_dict(cfg, scope, has_scope)
    _dict_to_config_dict.__wrapped__ = to_config_dict
    setattr(_dict_to_config_dict, PATCHED, True)
    config_class._dict_to_config_dict = staticmethod(_dict_to_config_dict)


def package_folder():
    """The folder Python imports ghost_backbones from, or None."""
    import importlib.util
    spec = importlib.util.find_spec(PACKAGE)
    return None if spec is None or spec.origin is None else os.path.dirname(spec.origin)


def is_openmim_03():
    from mim.version import __version__
    return __version__.startswith('0.3.')


def locate_mim_package(mim_utils) -> None:
    """openmim 0.3.x (0.3.9 the latest; mim/utils/utils.py line 308): ``get_installed_path`` answers
    ``<distribution location>/<package>``, site-packages for a PEP 660 editable install, where
    ``mim search ghost_backbones`` looked for ``model-index.yml`` and ``mim train`` / ``test`` for
    ``.mim/tools``. Replaced before ``mim.utils`` hands it on, for ghost_backbones only."""
    if is_openmim_03():
        locate_config_package(mim_utils)


def listing_editable_install(list_package):
    """openmim 0.3.x (mim/commands/list.py line 31): ``list_package`` shows the packages with a
    ``.mim/model-index.yml`` under ``<distribution location>/<package>``: an editable install of ours
    is left out. This one adds it as mim lists it from a wheel (name, version, home page)."""
    if getattr(list_package, PATCHED, False):
        return list_package

    def list_package_and_ours(all: bool = False):
        rows = list_package(all=all)
        folder = package_folder()
        if all or folder is None or not os.path.isfile(os.path.join(folder, '.mim', 'model-index.yml')):
            return rows
        import pkg_resources  # what mim reads the installed distributions with (imported by mim already)
        try:
            distribution = pkg_resources.get_distribution(PACKAGE)
        except pkg_resources.DistributionNotFound:
            return rows
        if any(row[0] == distribution.project_name for row in rows):
            return rows
        home_page = None
        if distribution.has_metadata('METADATA'):
            from email.parser import Parser
            home_page = Parser().parsestr(distribution.get_metadata('METADATA')).get('home-page')
        rows.append((distribution.project_name, distribution.version, home_page))
        rows.sort(key=lambda row: row[0])
        return rows
    list_package_and_ours.__wrapped__ = list_package
    setattr(list_package_and_ours, PATCHED, True)
    return list_package_and_ours


def list_editable_install(mim_list) -> None:
    """``mim.list_package`` (the API) lists our editable install."""
    if is_openmim_03():
        mim_list.list_package = listing_editable_install(mim_list.list_package)


def list_editable_install_in_cli(mim_cli) -> None:
    """``mim list`` (the command) lists our editable install. openmim 0.3.x's command line does not
    import its command modules: ``MIM.get_command`` (mim/cli.py line 41) evaluates each file's source
    in a namespace of its own, so the ``list_package`` the command calls is replaced there."""
    if not is_openmim_03() or getattr(mim_cli.MIM.get_command, PATCHED, False):
        return
    get_command = mim_cli.MIM.get_command

    def get_command_listing_ours(self, ctx, name):
        command = get_command(self, ctx, name)
        namespace = getattr(getattr(command, 'callback', None), '__globals__', {})
        if 'list_package' in namespace and namespace.get('__name__') != 'mim.commands.list':
            namespace['list_package'] = listing_editable_install(namespace['list_package'])
        return command
    get_command_listing_ours.__wrapped__ = get_command
    setattr(get_command_listing_ours, PATCHED, True)
    mim_cli.MIM.get_command = get_command_listing_ours


def our_index_folder():
    """The folder holding our model-index.yml and configs/, as mmengine's ``_get_repo_or_mim_dir`` finds
    a package's (the repository root for a source checkout, else ``<package>/.mim``), without importing
    the package; None when it is not installed."""
    folder = package_folder()
    if folder is None:
        return None
    for candidate in (os.path.dirname(folder), os.path.join(folder, '.mim')):
        if os.path.isfile(os.path.join(candidate, 'model-index.yml')) and \
                os.path.isdir(os.path.join(candidate, 'configs')):
            return candidate
    return None


def find_our_model_names(infer_module) -> None:
    """``DetInferencer(model='<name in our model index>')`` (scope ``mmdet``, its default) and
    ``MMSegInferencer(model=...)`` (``mmseg``) find our configs by name.

    mmengine 0.10.x (0.10.7 the latest; mmengine/infer/infer.py, ``BaseInferencer.__init__`` line 160,
    ``_load_model_from_metafile`` line 359, ``_get_repo_or_mim_dir`` line 396) reads the model index
    only of the package whose module is named by the inferencer's ``scope``: mmdet's own
    (``mmdet/.mim/model-index.yml``) for a ``DetInferencer``, and offers no way to register another.
    The same ``scope`` is the default registry scope the inferencer sets (``init_default_scope``) and
    builds its pipeline in: ``scope='ghost_backbones'`` found our names and then failed with
    ``PackDetInputs is not in the mmengine::transform registry``. A name the scope's index lacks is now
    looked up in ours; it is used when its config's ``default_scope`` is the inferencer's scope (an mmseg
    config asked of a ``DetInferencer`` is refused, naming the scope it needs). Names in mmdet's / mmseg's
    own index are found first, as before."""
    base = infer_module.BaseInferencer
    original = base.__dict__.get('_load_model_from_metafile')
    if original is None or getattr(original, PATCHED, False):
        return

    def _load_model_from_metafile(self, model):
        try:
            return original(self, model)
        except ValueError as error:  # 'Cannot find model: <name> in <scope>'
            folder = our_index_folder()
            if folder is None or self.scope == PACKAGE:
                raise
            name = model.lower()
            for entry in base._get_models_from_metafile(folder):
                aliases = entry.get('Alias') or []
                aliases = [aliases] if isinstance(aliases, str) else aliases
                if name != entry['Name'].lower() and name not in [alias.lower() for alias in aliases]:
                    continue
                cfg = infer_module.Config.fromfile(os.path.join(folder, entry['Config']))
                scope = cfg.get('default_scope')
                if self.scope is not None and scope != self.scope:
                    raise ValueError(f'{model} is a {scope} config of {PACKAGE} ({entry["Config"]}), not a '
                                     f'{self.scope} one: use an inferencer of {scope}') from error
                weights = entry.get('Weights')
                return cfg, weights[0] if isinstance(weights, list) else weights
            raise
    _load_model_from_metafile.__wrapped__ = original
    setattr(_load_model_from_metafile, PATCHED, True)
    base._load_model_from_metafile = _load_model_from_metafile


def register_our_classifiers(model_module) -> None:
    """mmpretrain 1.x (1.2.0 the latest; mmpretrain/apis/model.py line 81): ``ModelHub`` registers
    mmpretrain's own model index the first time a name is asked for, and ``register_model_index`` takes
    a whole index (ours also lists detectors and segmenters, which mmpretrain cannot build). After
    mmpretrain's, the entries of our index whose results are ``Image Classification`` are added, under
    their names, unless mmpretrain has the name already."""
    hub = model_module.ModelHub
    original = hub.__dict__.get('_register_mmpretrain_models')
    if not isinstance(original, classmethod) or getattr(original.__func__, PATCHED, False):
        return
    register_mmpretrain_models = original.__func__
    done = []

    def _register_mmpretrain_models(cls):
        register_mmpretrain_models(cls)
        folder = our_index_folder()
        if done or folder is None:
            return
        done.append(True)
        index = model_module.load(os.path.join(folder, 'model-index.yml'))
        index.build_models_with_collections()
        for metainfo in index.models:
            if not any(result.task == 'Image Classification' for result in metainfo.results or []):
                continue
            if metainfo.name.lower() not in cls._models_dict:
                metainfo.config = cls._expand_config_path(metainfo, folder)
                cls._models_dict[metainfo.name.lower()] = metainfo
    _register_mmpretrain_models.__wrapped__ = register_mmpretrain_models
    setattr(_register_mmpretrain_models, PATCHED, True)
    hub._register_mmpretrain_models = classmethod(_register_mmpretrain_models)


def install() -> None:
    """Install the hooks (idempotent)."""
    if os.environ.get(SWITCH, '1') == '0':
        return
    mmcv_ext.install()
    when_imported('mmengine.config.utils', register_config_scope)
    when_imported('mmengine.config.utils', resolve_onedl_distributions)
    when_imported('mmengine.config.config', locate_config_package)
    when_imported('mmengine.config.config', scope_bases_by_default_scope)
    when_imported('mmengine.hub.hub', locate_config_package)
    when_imported('mim.utils.utils', locate_mim_package)
    when_imported('mim.commands.list', list_editable_install)
    when_imported('mim.cli', list_editable_install_in_cli)
    when_imported('mmengine.infer.infer', find_our_model_names)
    when_imported('mmpretrain.apis.model', register_our_classifiers)
