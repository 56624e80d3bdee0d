"""Decoration-time validation, signature preservation and pickling."""

from __future__ import annotations

import datetime
import inspect
import pickle

import pytest
from django.core.cache import InvalidCacheBackendError

from cachedcall import InvalidOption
from cachedcall import cached


@cached(timeout=30)
def documented(club: str, weekday: int | None = None) -> list[str]:
    """Return the classes of a club."""
    return [club]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"timeout": -5},
            r"cached\(timeout=-5\) on tests\.test_options\.[\w.<>]+function: timeout must be None or a number >= 0",
        ),
        ({"timeout": True}, r"timeout must be None, a number.*not True \(bool\)"),
        ({"timeout": "60"}, r"not '60' \(str\)"),
        ({"timeout": datetime.timedelta(seconds=-1)}, r"timeout must be None or a number >= 0"),
        ({"cache": ""}, r"cache must name an alias"),
        ({"key": "club"}, r"key must be a callable .* or a list of parameter names"),
        ({"key": ["clb"]}, r"'clb' is not a parameter; the parameters are club, weekday"),
        ({"prefix": ""}, r"prefix must be a non-empty string"),
        ({"version": 1.5}, r"version must be an int or a string"),
        ({"unless": 3}, r"unless must be a callable"),
        ({"depends_on": "testapp.Club"}, r"depends_on must be a list"),
    ],
)
def test_bad_options_raise_at_decoration_naming_function_and_option(options, message):
    with pytest.raises(InvalidOption, match=message):

        @cached(**options)
        def function(club, weekday=None):
            return club


def test_unknown_options_are_named_with_a_suggestion():
    with pytest.raises(InvalidOption, match=r"unknown option\(s\) 'timout'.*did you mean 'timeout'\?"):
        cached(timout=5)
    with pytest.raises(InvalidOption, match="at most one positional"):
        cached(1, 2)
    with pytest.raises(InvalidOption, match="decorates functions"):
        cached(timeout=1)(int)


def test_unknown_cache_alias_fails_clearly_on_first_call():
    @cached(timeout=5, cache="nope")
    def function(x):
        return x

    with pytest.raises(InvalidCacheBackendError, match=r"no cache alias 'nope' in settings\.CACHES.*default"):
        function(1)


def test_signature_name_doc_module_are_preserved():
    assert documented.__name__ == "documented"
    assert documented.__doc__ == "Return the classes of a club."
    assert documented.__module__ == __name__
    assert str(inspect.signature(documented)) == "(club: 'str', weekday: 'int | None' = None) -> 'list[str]'"
    assert documented.__wrapped__("x") == ["x"]
    assert inspect.unwrap(documented) is documented.__wrapped__


def test_module_level_functions_pickle_by_reference():
    assert pickle.loads(pickle.dumps(documented)) is documented


def test_three_forms():
    @cached
    def bare(x):
        return x

    @cached(5)
    def positional(x):
        return x

    @cached(timeout=5)
    def keyword(x):
        return x

    assert bare(1) == positional(1) == keyword(1) == 1
    assert positional._self_function_cache.timeout == 5 == keyword._self_function_cache.timeout
    assert bare._self_function_cache.timeout_given is False


def _overload_keywords(module, name):
    # The typed @overload signatures, read from the source (typing.get_overloads needs 3.11).
    import ast

    tree = ast.parse(inspect.getsource(module))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name and node.args.kwonlyargs:
            return [node.args.args[0].arg] + [arg.arg for arg in node.args.kwonlyargs]
    raise AssertionError(f"no options overload of {name}")


def test_the_typed_overloads_list_every_option_in_the_order_of_options_py():
    from cachedcall import decorators
    from cachedcall import options
    from cachedcall import views

    assert _overload_keywords(decorators, "cached") == list(options.FUNCTION)
    assert _overload_keywords(views, "cached_view") == list(options.VIEW)


def test_docstrings_and_the_docs_option_tables_are_rendered_from_options_py():
    from pathlib import Path

    from cachedcall import cached_view
    from cachedcall import options

    for name in options.FUNCTION:
        assert f":param {name}:" in cached.__doc__
    for name in options.VIEW:
        assert f":param {name}:" in cached_view.__doc__
    page = Path(__file__).resolve().parent.parent / "docs" / "reference" / "decorators.rst"
    tables = page.read_text()
    assert options.table(options.FUNCTION) in tables
    assert options.table([n for n in options.VIEW if n not in options.FUNCTION]) in tables


def test_generator_functions_are_refused_at_decoration_naming_the_fix():
    with pytest.raises(InvalidOption, match=r"generator function .*Return a list instead"):

        @cached(timeout=5)
        def rows():
            yield 1

    with pytest.raises(InvalidOption, match=r"generator function"):

        @cached(timeout=5)
        async def arows():
            yield 1


def test_a_missing_app_fails_the_first_call_rather_than_serving_stale_data(settings):
    from django.core.exceptions import ImproperlyConfigured

    @cached(timeout=5)
    def plain(x):
        return x

    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "cachedcall"]
    with pytest.raises(ImproperlyConfigured, match=r"'cachedcall' is not in INSTALLED_APPS"):
        plain(1)
