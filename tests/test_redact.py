from __future__ import annotations

import pytest

from rankigi._redact import (
    DEFAULT_REDACTOR,
    DEFAULT_SECRET_KEYS,
    NO_REDACTION,
    REDACTED,
    Redactor,
    step_paths,
)


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "PASSWORD",
        "db_password",
        "DBPASSWORD",
        "userPassword",
        "passwd",
        "pwd",
        "user_pwd",
        "secret",
        "client_secret",
        "clientSecret",
        "aws_secret_access_key",
        "token",
        "access_token",
        "accessToken",
        "x_auth_token",
        "X-Auth-Token",
        "oauth2_token",
        "refresh_token",
        "auth",
        "x-auth",
        "Authorization",
        "HTTP_AUTHORIZATION",
        "Proxy-Authorization",
        "bearer",
        "api_key",
        "API-Key",
        "apiKey",
        "APIKey",
        "apikey",
        "Api Key",
        "x-api-key",
        "openai_api_key",
        "private_key",
        "privateKey",
        "cookie",
        "Set-Cookie",
        "session",
        "session_id",
        "credentials",
        "csrf_token",
        "jwt",
        "otp_code",
    ],
)
def test_default_keys_match_secret(key: str) -> None:
    assert DEFAULT_REDACTOR.is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "author",
        "authors",
        "authority",
        "oauth_provider",
        "max_tokens",
        "prompt_tokens",
        "completion_tokens",
        "tokenizer",
        "charge_id",
        "amount",
        "key",
        "primary_key",
        "cache_key",
        "name",
        "",
        "passenger",
        "spwd",
    ],
)
def test_default_keys_leave_ordinary(key: str) -> None:
    assert not DEFAULT_REDACTOR.is_secret_key(key)


def test_default_redactor_uses_default_keys() -> None:
    assert DEFAULT_REDACTOR.keys == DEFAULT_SECRET_KEYS
    assert DEFAULT_REDACTOR.paths == ()
    assert DEFAULT_REDACTOR.replacement == REDACTED


def test_short_pattern_matches_whole_words() -> None:
    redactor = Redactor(keys=["pin"])

    assert redactor.is_secret_key("pin")
    assert redactor.is_secret_key("PIN")
    assert redactor.is_secret_key("card_pin")
    assert redactor.is_secret_key("cardPin")
    assert not redactor.is_secret_key("spinner")
    assert not redactor.is_secret_key("pinned")


def test_long_pattern_matches_inside_words() -> None:
    redactor = Redactor(keys=["routing_number"])

    assert redactor.is_secret_key("bankroutingnumber")
    assert redactor.is_secret_key("RoutingNumber")
    assert not redactor.is_secret_key("routing")


def test_multiword_short_pattern_needs_consecutive_words() -> None:
    redactor = Redactor(keys=["ip_addr"])

    assert redactor.is_secret_key("client_ip_addr")
    assert redactor.is_secret_key("clientIpAddr")
    assert not redactor.is_secret_key("ip_mail_addr")


def test_pattern_spellings_keep_their_words() -> None:
    redactor = Redactor(keys=["a_b", "ab"])

    assert redactor.is_secret_key("x_a_b")
    assert redactor.is_secret_key("x_ab")
    assert not redactor.is_secret_key("xab")


def test_non_string_key_is_not_secret() -> None:
    assert not DEFAULT_REDACTOR.is_secret_key(1)  # type: ignore[arg-type]
    assert not DEFAULT_REDACTOR.is_secret_key(None)  # type: ignore[arg-type]


def test_is_secret_key_repeats_answer() -> None:
    redactor = Redactor()

    first = [redactor.is_secret_key(key) for key in ("password", "name")]
    second = [redactor.is_secret_key(key) for key in ("password", "name")]

    assert first == [True, False]
    assert second == first


def test_key_cache_stays_bounded() -> None:
    redactor = Redactor()

    for number in range(10_000):
        redactor.is_secret_key(f"field_{number}")

    assert len(redactor._cache) <= 4096
    assert redactor.is_secret_key("password")
    assert not redactor.is_secret_key("field_1")


def test_no_redaction_matches_nothing() -> None:
    assert not NO_REDACTION.is_secret_key("password")
    assert NO_REDACTION.path_root is None


def test_redactors_are_truthy() -> None:
    # Callers write ``redactor or fallback``, so an empty redactor must not
    # read as false.
    assert bool(NO_REDACTION)
    assert bool(Redactor(keys=()))


def test_with_extra_adds_rules() -> None:
    base = Redactor(keys=["password"], replacement="***")

    extended = base.with_extra(keys=["ssn"], paths=["card.number"])

    assert extended is not base
    assert extended.keys == ("password", "ssn")
    assert extended.paths == ("card.number",)
    assert extended.replacement == "***"
    assert extended.is_secret_key("ssn")
    assert extended.is_secret_key("password")


def test_with_extra_leaves_original() -> None:
    base = Redactor(keys=["password"])

    base.with_extra(keys=["ssn"], paths=["card.number"])

    assert base.keys == ("password",)
    assert base.paths == ()
    assert not base.is_secret_key("ssn")


def test_with_extra_rejects_single_string() -> None:
    with pytest.raises(ValueError, match=r"\['ssn'\]"):
        DEFAULT_REDACTOR.with_extra(keys="ssn")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keys": "password"}, r"invalid keys 'password'.*\['password'\]"),
        ({"keys": None}, r"invalid keys None: pass a list of strings"),
        ({"keys": [1]}, r"invalid entry 1 in keys"),
        ({"keys": ["--"]}, r"invalid secret key pattern '--': pass a name with"),
        ({"keys": [""]}, r"invalid secret key pattern ''"),
        ({"paths": "card.number"}, r"invalid paths 'card.number'"),
        ({"paths": [None]}, r"invalid entry None in paths"),
        ({"paths": [""]}, r"invalid redaction path ''.*'card.number'"),
        ({"paths": ["card..number"]}, r"invalid redaction path 'card..number'"),
        ({"paths": [".card"]}, r"invalid redaction path '.card'"),
        ({"paths": ["items.a*"]}, r"invalid redaction path 'items.a\*'"),
        ({"replacement": None}, r"invalid replacement None"),
    ],
)
def test_constructor_rejects_invalid(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Redactor(**kwargs)  # type: ignore[arg-type]


def test_keys_accept_any_iterable() -> None:
    redactor = Redactor(keys=(key for key in ["ssn"]))

    assert redactor.keys == ("ssn",)
    assert redactor.is_secret_key("ssn")


def test_step_paths_follows_segments() -> None:
    root = Redactor(keys=(), paths=["card.number"]).path_root
    assert root is not None

    redacted, below = step_paths((root,), "card")
    assert not redacted
    assert below is not None

    redacted, _ = step_paths(below, "number")
    assert redacted

    assert step_paths((root,), "number") == (False, None)


def test_step_paths_wildcard_matches_any_segment() -> None:
    root = Redactor(keys=(), paths=["items.*.ssn"]).path_root
    assert root is not None

    _, items = step_paths((root,), "items")
    assert items is not None
    for segment in ("0", "17", "anything"):
        redacted, item = step_paths(items, segment)
        assert not redacted
        assert item is not None
        assert step_paths(item, "ssn")[0]
        assert not step_paths(item, "name")[0]


def test_step_paths_combines_literal_and_wildcard() -> None:
    root = Redactor(keys=(), paths=["a.*.x", "a.b.y"]).path_root
    assert root is not None

    _, below_a = step_paths((root,), "a")
    assert below_a is not None
    _, below_b = step_paths(below_a, "b")
    assert below_b is not None

    assert step_paths(below_b, "x")[0]
    assert step_paths(below_b, "y")[0]
    assert not step_paths(below_b, "z")[0]


def test_repr_lists_rules() -> None:
    text = repr(Redactor(keys=["ssn"], paths=["card.number"]))

    assert (
        text
        == "Redactor(keys=('ssn',), paths=('card.number',), replacement='[REDACTED]')"
    )
