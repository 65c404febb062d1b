"""Sphinx configuration for the gearman_ev documentation (``make docs``).

The API reference is generated from the docstrings of the package as built in
the source tree (the extension must be compiled: ``make docs`` sees to it).
Three checks run with the build and fail it (``-W``) when the reference falls
behind the code:

- every name in ``gearman_ev.__all__`` and ``gearman_ev.ev.__all__``, and every
  public method and property of their classes, has an entry;
- every parameter of ``Gearman(...)`` is described somewhere in the docs;
- every err string the package defines as a constant appears in errors.rst.
"""
from __future__ import annotations

import inspect
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import gearman_ev  # noqa: E402
from gearman_ev import ev  # noqa: E402

# gearman_ev._gearman imports ssl for its annotations only when type
# checking (at run time TLS is loaded by those who use it); give autodoc the
# name so Gearman's signature resolves.
import ssl as _ssl  # noqa: E402
import gearman_ev._gearman  # noqa: E402
import gearman_ev._pool  # noqa: E402
import gearman_ev.blocking  # noqa: E402

for _module in (gearman_ev._gearman, gearman_ev._pool, gearman_ev.blocking):
    _module._ssl = _ssl  # type: ignore[attr-defined]

project = "gearman_ev"
author = "the gearman_ev developers"
copyright = "2026, the gearman_ev developers"
release = version = gearman_ev.__version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]

exclude_patterns = ["_build"]
default_role = "literal"
nitpicky = True
# Annotations may name private helper types and typing constructs that have
# no page here; those are not broken links in the user's sense.
nitpick_ignore_regex = [
    ("py:class", r"gearman_ev\._.*"),
    ("py:class", r"(typing|typing_extensions|collections\.abc|_cffi_backend|cffi)\..*"),
    ("py:class", r"(Callable|Optional|Union|Any|Buffer|ReadableBuffer|CData)"),
    ("py:class", r"ssl\..*"),  # the standard library's ssl types: no page here
    ("py:(class|exc)", r"asyncio\..*"),  # asyncio's types and exceptions: no page here either
    ("py:obj", r"(typing|typing_extensions|collections\.abc)\..*"),
    # From the standard library and typeshed (no intersphinx here), and type
    # variables such as call_soon_threadsafe's _Ts.
    ("py:class", r"os\.PathLike|FileDescriptorLike|subprocess\.Popen|_\w+"),
    ("py:class", r"concurrent\.futures\..*"),
]

autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": True}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
# Docstrings use Google-style sections (Args, Returns, Raises) plus these.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_custom_sections = ["Callback", "Callbacks", "Events", "Properties"]

html_theme = "furo"
html_title = f"gearman_ev {release}"
html_show_sourcelink = False


# ===== Checks: the reference covers the code =====

def _public_members(cls):
    """(name, defining class) for every public attribute of cls."""
    seen = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name in vars(klass):
            if not name.startswith("_") and name not in seen:
                seen.add(name)
                yield name, klass


def _expected_entries():
    """Dotted names the reference must hold. A member defined on a public
    base class is documented there (ev.Watcher.start covers ev.Io.start);
    one that comes from a private base (Gearman's from its mixins) must
    appear on the public class itself."""
    for module in (gearman_ev, ev):
        public = {getattr(module, n): f"{module.__name__}.{n}" for n in module.__all__
                  if inspect.isclass(getattr(module, n))}
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                continue  # documented as a module (gearman_ev.ev)
            full = f"{module.__name__}.{name}"
            yield full
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                for member, owner in _public_members(obj):
                    yield f"{public.get(owner, full)}.{member}"


def _check_reference(app, env):
    from sphinx.util import logging
    log = logging.getLogger("gearman_ev.docs")
    documented = set(env.get_domain("py").objects)
    missing = [name for name in _expected_entries() if name not in documented]
    for name in missing:
        log.warning("public name without an entry in the API reference: %s", name)
    modules = set(env.get_domain("py").modules)
    for module in ("gearman_ev", "gearman_ev.ev"):
        if module not in modules:
            log.warning("module %s has no page in the API reference", module)


def _read_sources():
    text = []
    for name in sorted(os.listdir(HERE)):
        if name.endswith(".rst"):
            with open(os.path.join(HERE, name), encoding="utf-8") as f:
                text.append(f.read())
    return "\n".join(text)


def _err_constants():
    """The err strings the package defines once, as module constants."""
    try:
        from gearman_ev import errors as module  # the public name, once it exists
    except ImportError:
        from gearman_ev import _errors as module
    for name, value in vars(module).items():
        if name.isupper() and isinstance(value, str):
            yield name, value


def _check_texts(app):
    from sphinx.util import logging
    log = logging.getLogger("gearman_ev.docs")
    sources = _read_sources()
    for param in inspect.signature(gearman_ev.Gearman).parameters:
        if f"``{param}``" not in sources and f"`{param}`" not in sources:
            log.warning("Gearman(...) argument %r is not described in the docs", param)
    with open(os.path.join(HERE, "errors.rst"), encoding="utf-8") as f:
        errors_page = f.read()
    for name, value in _err_constants():
        if not any(form in errors_page for form in (f'"{value}"', f"``{value}``")):
            log.warning("err string %r (%s) is missing from errors.rst", value, name)


def _drop_type_docstrings(app, what, name, obj, options, lines):
    """A constant with no doc comment of its own would show the docstring of
    its type (int's, str's): drop that, the page says what the constant is."""
    if what in ("data", "attribute") and not inspect.isclass(obj):
        from sphinx.util.docstrings import prepare_docstring
        type_doc = type(obj).__doc__
        # A __slots__ attribute's type (member_descriptor) has no str __doc__.
        if isinstance(type_doc, str) and lines and lines == prepare_docstring(type_doc):
            lines.clear()


def setup(app):
    # Before napoleon (priority 500) reworks the lines.
    app.connect("autodoc-process-docstring", _drop_type_docstrings, priority=100)
    app.connect("builder-inited", _check_texts)
    app.connect("env-check-consistency", _check_reference)
    return {"parallel_read_safe": True}
