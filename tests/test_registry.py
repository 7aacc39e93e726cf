"""st_tf.registry: the one names -> objects mechanism."""
import pytest

from st_tf import registry


def test_register_as_decorator_and_directly():
  things = registry.Registry('thing')

  @things.register('b')
  def b():
    return 'B'

  assert b() == 'B'  # the decorator returns the object itself
  assert things.register('a', 1) == 1
  assert things.get('b') is b
  assert things.get('a') == 1
  assert things['a'] == 1
  assert things.names() == ['a', 'b']  # sorted
  assert list(things) == ['b', 'a']  # registration order
  assert list(things.values()) == [b, 1]
  assert 'a' in things and 'c' not in things
  assert len(things) == 2


def test_entries_registered_in_order():
  things = registry.Registry('thing', {'z': 26, 'y': 25})
  assert list(things) == ['z', 'y']
  assert things.names() == ['y', 'z']
  assert set(things) == {'y', 'z'}


def test_duplicate_registration_refused():
  things = registry.Registry('thing', {'a': 1})
  with pytest.raises(ValueError) as error:
    things.register('a', 2)
  assert str(error.value) == "thing 'a' is already registered"
  with pytest.raises(ValueError, match="'a' is already registered"):
    things.register('a')(lambda: None)
  assert things.get('a') == 1


def test_unknown_name_names_the_known_ones():
  things = registry.Registry('thing', {'b': 2, 'a': 1})
  with pytest.raises(ValueError) as error:
    things.get('c')
  assert str(error.value) == ("unknown thing 'c'; expected one of "
                              "['a', 'b']")


def test_unknown_name_names_the_binding():
  things = registry.Registry('thing', {'a': 1}, binding='make.name')
  with pytest.raises(ValueError) as error:
    things.get('c')
  assert str(error.value) == ("unknown thing 'c'; expected one of ['a']; "
                              'fix make.name')
  with pytest.raises(ValueError) as error:
    things.get('c', binding='other.name')
  assert str(error.value).endswith('; fix other.name')


def test_empty_registry_and_default():
  things = registry.Registry('thing')
  assert things.names() == [] and len(things) == 0
  assert things.get('a', None) is None
  with pytest.raises(ValueError, match=r"unknown thing 'a'; expected one "
                                       r'of \[\]'):
    things.get('a')
  with pytest.raises(KeyError):
    things['a']  # pylint: disable=pointless-statement


def test_setitem_replaces_like_monkeypatch(monkeypatch):
  things = registry.Registry('thing', {'a': 1})
  monkeypatch.setitem(things, 'a', 10)
  monkeypatch.setitem(things, 'new', 3)
  assert things.get('a') == 10 and things.get('new') == 3
  monkeypatch.undo()
  assert things.get('a') == 1 and 'new' not in things
