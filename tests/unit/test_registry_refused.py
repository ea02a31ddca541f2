"""A registry that refuses the login with an empty body (as Apicurio answers 401): one line."""

from __future__ import annotations

import httpx
import pytest
import respx
from pydantic import SecretStr

from pipeline.errors import ConfigError
from pipeline.serde import HttpRegistryClient, RegistryConfig

URL = "http://registry.test/apis/ccompat/v7"
SCHEMA = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "string"}]}


@respx.mock
def test_an_empty_401_names_the_registry_password_and_not_the_secret() -> None:
    respx.route(host="registry.test").mock(return_value=httpx.Response(401, content=b""))
    client = HttpRegistryClient(RegistryConfig(URL, "someone", SecretStr("s3cret-value")))
    with pytest.raises(ConfigError) as caught:
        client.register("ardary.pipeline.v1.R", SCHEMA)
    message = str(caught.value)
    assert message.startswith("SCHEMA_REGISTRY_PASSWORD: the registry at ")
    assert "s3cret-value" not in message
