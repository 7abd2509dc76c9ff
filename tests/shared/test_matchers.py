"""shared/matchers.py against Alertmanager's own test cases (pkg/labels/parse_test.go and matcher_test.go), so a
matcher means in Vigil what it means in Alertmanager."""

from __future__ import annotations

import pytest

from shared.matchers import MatcherError, MatchType, matches_all, new_matcher, parse_matcher, parse_matchers

EQ, NE, RE, NRE = MatchType.equal, MatchType.not_equal, MatchType.regexp, MatchType.not_regexp

# (input, [(type, name, value), ...]) from Alertmanager's TestMatchers.
PARSED = [
    ('{foo="bar"}', [(EQ, "foo", "bar")]),
    ('{foo=~"bar.*"}', [(RE, "foo", "bar.*")]),
    ('{foo!="bar"}', [(NE, "foo", "bar")]),
    ('{foo!~"bar.*"}', [(NRE, "foo", "bar.*")]),
    ('{foo="bar", baz!="quux"}', [(EQ, "foo", "bar"), (NE, "baz", "quux")]),
    ('{foo="bar", baz!~"quux.*"}', [(EQ, "foo", "bar"), (NRE, "baz", "quux.*")]),
    ('{foo="bar",baz!~".*quux", derp="wat"}', [(EQ, "foo", "bar"), (NRE, "baz", ".*quux"), (EQ, "derp", "wat")]),
    ('{foo="bar", baz!="quux", derp="wat"}', [(EQ, "foo", "bar"), (NE, "baz", "quux"), (EQ, "derp", "wat")]),
    ('{foo="bar", baz!~".*quux.*", derp="wat"}', [(EQ, "foo", "bar"), (NRE, "baz", ".*quux.*"), (EQ, "derp", "wat")]),
    ('{foo="bar", instance=~"some-api.*"}', [(EQ, "foo", "bar"), (RE, "instance", "some-api.*")]),
    ('{foo=""}', [(EQ, "foo", "")]),
    ('{foo="bar,quux", job="job1"}', [(EQ, "foo", "bar,quux"), (EQ, "job", "job1")]),
    ('{foo = "bar", dings != "bums", }', [(EQ, "foo", "bar"), (NE, "dings", "bums")]),
    ("foo=bar,dings!=bums", [(EQ, "foo", "bar"), (NE, "dings", "bums")]),
    (
        '{quote="She said: \\"Hi, ladies! That\'s gender-neutral…\\""}',
        [(EQ, "quote", 'She said: "Hi, ladies! That\'s gender-neutral…"')],
    ),
    ('statuscode=~"5.."', [(RE, "statuscode", "5..")]),
    ("tricky=~~~", [(RE, "tricky", "~~")]),
    ('trickier==\\\\=\\=\\"', [(EQ, "trickier", '=\\=\\="')]),
    (
        'contains_quote != "\\"" , contains_comma !~ "foo,bar" , ',
        [(NE, "contains_quote", '"'), (NRE, "contains_comma", "foo,bar")],
    ),
]

# (input, the error Alertmanager gives) from TestMatchers.
REFUSED = [
    ("job=", "matcher value is not present: job="),
    ('job="value', 'matcher value contains unescaped double quote: "value'),
    ('job=value"', 'matcher value contains unescaped double quote: value"'),
    ('trickier==\\\\=\\=\\""', 'matcher value contains unescaped double quote: =\\\\=\\=\\""'),
    ('contains_unescaped_quote = foo"bar', 'matcher value contains unescaped double quote: foo"bar'),
    ('{invalid-name = "valid label"}', 'bad matcher format: invalid-name = "valid label"'),
    ('{foo=~"invalid[regexp"}', "error parsing regexp"),
    ('"{foo=\\"bar"}', 'bad matcher format: "{foo=\\"bar"'),
    ('"foo=\\"bar"', 'bad matcher format: "foo=\\"bar"'),
    ('"foo=\\"bar\\""', 'bad matcher format: "foo=\\"bar\\""'),
    ('"foo=\\"bar\\"', 'bad matcher format: "foo=\\"bar\\"'),
    ('"{foo=\\"bar\\"}"', 'bad matcher format: "{foo=\\"bar\\"}"'),
    ('"foo="bar""', 'bad matcher format: "foo="bar""'),
]

# (type, value, label value, matches?) from Alertmanager's TestMatcher.
MATCHES = [
    (EQ, "bar", "bar", True),
    (EQ, "bar", "foo-bar", False),
    (NE, "bar", "bar", False),
    (NE, "bar", "foo-bar", True),
    (RE, "bar", "bar", True),
    (RE, "bar", "foo-bar", False),
    (RE, ".*bar", "foo-bar", True),
    (NRE, "bar", "bar", False),
    (NRE, "bar", "foo-bar", True),
    (NRE, ".*bar", "foo-bar", False),
    (RE, "foo.bar", "foo-bar", True),
    (RE, "foo\\.bar", "foo-bar", False),
    (RE, "foo\\.bar", "foo.bar", True),
    (EQ, "foo\nbar", "foo\nbar", True),
    (RE, "foo.bar", "foo\nbar", False),
    (RE, "(?s)foo.bar", "foo\nbar", True),
    (EQ, '~!="', '~!="', True),
]

# (name, type, value, written) from TestMatcherString.
WRITTEN = [
    ("foo", EQ, "bar", 'foo="bar"'),
    ("foo", NE, "bar", 'foo!="bar"'),
    ("foo", RE, "bar", 'foo=~"bar"'),
    ("foo", NRE, "bar", 'foo!~"bar"'),
    ("foo", EQ, "back\\slash", 'foo="back\\\\slash"'),
    ("foo", EQ, 'double"quote', 'foo="double\\"quote"'),
    ("foo", EQ, "new\nline", 'foo="new\\nline"'),
    ("foo", EQ, "tab\tstop", 'foo="tab\tstop"'),
    ("foo", EQ, "🙂", 'foo="🙂"'),
    ("foo!", NE, "bar", '"foo!"!="bar"'),
    ("foo🙂", EQ, "bar", 'foo🙂="bar"'),
    ("foo bar", EQ, "baz", '"foo bar"="baz"'),
]


@pytest.mark.parametrize(("text", "want"), PARSED, ids=[p[0] for p in PARSED])
def test_parses_as_alertmanager_does(text: str, want: list[tuple[MatchType, str, str]]) -> None:
    assert [(m.type, m.name, m.value) for m in parse_matchers(text)] == want


@pytest.mark.parametrize(("text", "error"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refuses_what_alertmanager_refuses(text: str, error: str) -> None:
    with pytest.raises(MatcherError) as refused:
        parse_matchers(text)
    assert str(refused.value).startswith(error)


@pytest.mark.parametrize(("kind", "value", "label", "want"), MATCHES)
def test_matches_as_alertmanager_does(kind: MatchType, value: str, label: str, want: bool) -> None:
    assert new_matcher(kind, "", value).matches(label) is want


@pytest.mark.parametrize(("name", "kind", "value", "written"), WRITTEN)
def test_writes_a_matcher_as_alertmanager_does(name: str, kind: MatchType, value: str, written: str) -> None:
    assert str(new_matcher(kind, name, value)) == written


def test_a_digit_class_in_a_quoted_regex_stays_a_digit_class() -> None:
    # The correlator's old parser read `\d` as `d`: db12 did not match, dbdd did.
    (matcher,) = parse_matchers('instance=~"db\\d+"')
    assert matcher.value == "db\\d+"
    assert matcher.matches("db12") and not matcher.matches("dbdd")


def test_an_absent_label_matches_as_the_empty_string() -> None:
    labels = {"alertname": "HostDown"}
    assert matches_all(parse_matchers('job=""'), labels)
    assert not matches_all(parse_matchers('job=~".+"'), labels)
    assert matches_all(parse_matchers('job!="node"'), labels)


@pytest.mark.parametrize("regex", ["(?=x)a", "(?!x)a", "(?<=x)a", "(a)\\1", "a++", "(?P=name)"])
def test_regex_features_alertmanager_lacks_are_refused(regex: str) -> None:
    with pytest.raises(MatcherError, match="RE2"):
        parse_matcher(f'foo=~"{regex}"')


def test_a_written_matcher_parses_back_to_itself() -> None:
    for name, kind, value, _ in WRITTEN:
        if name.isidentifier():
            (again,) = parse_matchers(str(new_matcher(kind, name, value)))
            assert (again.name, again.type, again.value) == (name, kind, value)
